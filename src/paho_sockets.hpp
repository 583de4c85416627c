#pragma once
// Which socket Paho C uses for which client id. Paho has no API for it; its protocol trace names both in every
// packet line ("<fd> <client id> -> CONNECT ..."). presence_client needs the socket for one thing only: ending an
// MQTT 3.1.1 connection without a DISCONNECT packet, so that the broker keeps (and sends) the will when the clean
// "disconnected" could not be delivered. Private to the library.
//
// track() installs a process-wide Paho trace callback at protocol level (replacing any other trace callback).

#include <string>

namespace mqtt_presence::detail {

/// Starts learning sockets (idempotent, thread-safe). Call before the client connects.
void track_paho_sockets();
/// The socket of the last CONNECT of `client_id`, or -1 when unknown.
[[nodiscard]] int paho_socket_of(const std::string& client_id);
/// Ends the TCP connection of `client_id` without an MQTT DISCONNECT, if its socket is known and still connected
/// to `port`: the broker sees the connection drop and publishes the will. True if it did.
bool drop_connection(const std::string& client_id, int port) noexcept;

}  // namespace mqtt_presence::detail
