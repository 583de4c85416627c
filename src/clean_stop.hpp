#pragma once
// The end of a clean stop, the same for the one-line helper (status_announcer::disconnect) and presence_client:
// wait for the clean "disconnected", then end the connection so that, if it was not acknowledged, the broker keeps
// the will. Private to the library.

#include <chrono>
#include <string>

#include <mqtt/async_client.h>

namespace mqtt_presence::detail {

/// Waits for `clean_status` (null: it could not be sent) until a moment before `deadline`, then ends the
/// connection: a plain DISCONNECT once it is acknowledged; otherwise one that keeps the will, since nothing else
/// will say the client is gone (MQTT 5: reason 0x04; 3.1.1: no DISCONNECT packet at all, see paho_sockets.hpp). Never throws. Returns whether the status
/// was acknowledged; `problem` says what went wrong, if anything is worth reporting.
bool finish_clean_stop(mqtt::async_client& client, const mqtt::delivery_token_ptr& clean_status, bool mqtt5,
                       std::chrono::steady_clock::time_point deadline, std::string& problem) noexcept;

/// finish_clean_stop() in two halves, for many clients at once: the first waits for the status and starts the end
/// of the connection, returning its token (null when nothing is left to wait for) in `ending`; the second waits for
/// it until `deadline`. All DISCONNECTs of a fleet are then on their way before any is awaited.
bool begin_end_of_connection(mqtt::async_client& client, const mqtt::delivery_token_ptr& clean_status, bool mqtt5,
                             std::chrono::steady_clock::time_point deadline, std::string& problem,
                             mqtt::token_ptr& ending) noexcept;
void wait_end_of_connection(const mqtt::token_ptr& ending, std::chrono::steady_clock::time_point deadline) noexcept;

}  // namespace mqtt_presence::detail
