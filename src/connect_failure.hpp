#pragma once
// Why a connect failed, in words a person can act on. A broker that answers the CONNECT with a refusal says why (a
// CONNACK code): that is named, never taken for a broker that is down. A broker that closes the socket at an MQTT 5
// CONNECT (RabbitMQ before 3.13) looks to Paho like a dead broker; a probe connection with MQTT 3.1.1 tells the two
// apart. Private to the library.

#include <optional>
#include <string>

#include <mqtt_presence/broker_options.hpp>

namespace mqtt_presence::detail {

/// A failed connect as Paho reports it: its return code (for a refusal, the CONNACK's code) and its text.
struct connect_failure {
    int rc = 0;
    std::string what;
};

/// The broker's reason when it refused the connection: MQTT 3.1.1's CONNACK return codes 1-5, MQTT 5's reason codes
/// from 0x80 (named by Paho). nullopt when the broker gave no answer (down, socket closed, timeout).
std::optional<std::string> refusal_reason(int rc);

/// A version-5 connect that the broker did not answer (no CONNACK): it may refuse MQTT 5 by closing the socket, or
/// be down. Only then is a probe worth its connection.
bool unanswered_mqtt5(const broker_options& broker, const connect_failure& failure);

/// Whether the broker at `broker` speaks MQTT 3.1.1: it answers a 3.1.1 CONNECT with a CONNACK of any kind. One
/// connection with client id `probe_id`, bounded by the connect timeout; blocks.
bool speaks_mqtt311(broker_options broker, const std::string& probe_id);

/// The same for a process of many clients, without blocking: the last answer for this broker, nullopt until the
/// first. The first call starts a probe on a thread of its own; at most one probe per broker runs, none again once
/// the broker was found to speak 3.1.1, and at most one a minute while it was not (it may have been down).
std::optional<bool> speaks_mqtt311_cached(const broker_options& broker, const std::string& probe_id);

/// The text for a failed connect. A refusal is named ("refused the connection: Not authorized (CONNACK return code
/// 5)"), with a hint when it is about credentials; a broker that does not speak MQTT 5 is said to (`speaks_311`: the
/// probe's answer after a version-5 connect without a CONNACK); anything else is "<generic>: <Paho's text><hint>".
std::string connect_failure_text(const broker_options& broker, const connect_failure& failure,
                                 std::optional<bool> speaks_311, const std::string& generic, const std::string& hint);

}  // namespace mqtt_presence::detail
