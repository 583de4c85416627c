#pragma once
// Which socket Paho C uses for which client id. Paho has no API for it; its protocol trace names both in every
// packet line ("<fd> <client id> -> CONNECT ..."). presence_client needs the socket for one thing only: ending an
// MQTT 3.1.1 connection without a DISCONNECT packet, so that the broker keeps (and sends) the will when the clean
// "disconnected" could not be delivered. Private to the library.
//
// A process-wide Paho trace callback (replacing any other) reads the CONNECT lines. Formatting a line for it costs
// every packet of every client a time stamp and a lock, so the trace is on only while somebody needs it: always,
// once an app's own client uses the one-line helper (the app connects when it likes), and otherwise only while a
// presence_client's connect is in flight.

#include <string>

namespace mqtt_presence::detail {

/// Learns sockets from now on, for good (idempotent, thread-safe). Call before the client connects.
void track_paho_sockets();
/// Learns sockets until the matching end_tracked_connect: call before connecting `client_id` and, once, when that
/// connect succeeded or failed. Forgets the socket `client_id` had.
void begin_tracked_connect(const std::string& client_id);
void end_tracked_connect() noexcept;
/// The socket of the last CONNECT of `client_id`, or -1 when unknown.
[[nodiscard]] int paho_socket_of(const std::string& client_id);
/// Ends the TCP connection of `client_id` without an MQTT DISCONNECT, if its socket is known and still connected
/// to `port`: the broker sees the connection drop and publishes the will. True if it did.
bool drop_connection(const std::string& client_id, int port) noexcept;

}  // namespace mqtt_presence::detail
