#pragma once
// The end of a clean stop, the same for the one-line helper (status_announcer::disconnect) and presence_client:
// wait for the clean "disconnected", then end the connection so that, if it was not acknowledged, the broker keeps
// the will. Private to the library.

#include <chrono>
#include <string>

#include <mqtt/async_client.h>

namespace mqtt_presence::detail {

/// The topic of end_keeping_will_311's PUBLISH: a wildcard, which no PUBLISH may carry.
constexpr const char* protocol_error_topic = "mqtt-presence/end-keeping-will/#";

/// Ends an MQTT 3.1.1 connection so that the broker publishes the will, which a DISCONNECT would discard and 3.1.1
/// cannot ask to keep: a PUBLISH to a topic with a wildcard is a protocol error [MQTT-3.3.2-2], on which the broker
/// closes the connection [MQTT-4.8.0-1] and, the connection ending without a DISCONNECT, publishes the will
/// [MQTT-3.1.2-8]. Everything goes through Paho's own API and threads: no descriptor of Paho's is touched, so
/// nothing can race with Paho closing or reusing it. Relies on Paho C not checking a PUBLISH topic for wildcards
/// (1.3.12 does not; tests/integration/presence_test.cpp holds it). Waits up to `wait` for the broker to close the
/// connection; false if it is still open (a slow network, or a broker that tolerates the error).
bool end_keeping_will_311(mqtt::async_client& client, std::chrono::milliseconds wait) noexcept;

/// Waits for `clean_status` (null: it could not be sent) until a moment before `deadline`, then ends the
/// connection: a plain DISCONNECT once it is acknowledged; otherwise one that keeps the will, since nothing else
/// will say the client is gone (MQTT 5: reason 0x04; 3.1.1: end_keeping_will_311). Never throws. Returns whether the
/// status was acknowledged; `problem` says what went wrong, if anything is worth reporting.
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
