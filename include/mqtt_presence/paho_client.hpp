#pragma once
// A Paho client set up the way the library's own are, for programs built on the core (the service's notary and
// Home Assistant availability connections): the client, the common connect options, and a wake for Paho's poll.

#include <memory>
#include <string>

#include <mqtt/async_client.h>
#include <mqtt/connect_options.h>

#include <mqtt_presence/broker_options.hpp>

namespace mqtt_presence {

/// Creates a Paho client for `server_uri` (mqtt://, mqtts://, tcp://, ssl://, ws://, wss://) speaking MQTT 3.1.1 (4)
/// or 5; throws mqtt_presence::error.
[[nodiscard]] std::unique_ptr<mqtt::async_client> make_client(const std::string& server_uri,
                                                              const std::string& client_id, int mqtt_version);

/// Version, keepalive, timeout, clean start, credentials and TLS from `o`. No will and no reconnect policy: those
/// differ from one connection to the next.
[[nodiscard]] mqtt::connect_options base_connect_options(const broker_options& o);

/// Paho C 1.3.12's receive thread notices a new connect, or a packet queued from another thread, only when one of
/// its sockets has traffic or its 1 s poll ends. A connected client's round trip (an UNSUBSCRIBE of
/// "mqtt-presence/paho-wake", a filter nobody subscribes to, so that it changes nothing) ends the poll at once.
/// Never blocks, never throws.
void wake_paho(mqtt::async_client& connected_client) noexcept;

}  // namespace mqtt_presence
