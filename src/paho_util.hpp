#pragma once
// What presence_client and scanner set up the same way on Paho: the client and the common connect options.
// Private to the library.

#include <memory>
#include <string>

#include <mqtt/async_client.h>
#include <mqtt/connect_options.h>
#include <mqtt/disconnect_options.h>

#include <mqtt_presence/broker_options.hpp>
#include <mqtt_presence/error.hpp>

#include "uri.hpp"

// Paho C++ 1.2 (Debian 12) builds disconnect_options from the version-0 C struct, which has no reason code, so
// set_reason_code() is silently ignored (later Paho versions start from the version-1 struct). The C struct is
// reached through the friend class Paho declares for its own unit tests; nothing else is touched.
namespace mqtt {
class disconnect_options_test {
public:
    static void keep_will(disconnect_options& options) {
        options.opts_.struct_version = 1;
        options.opts_.reasonCode = MQTTREASONCODE_DISCONNECT_WITH_WILL_MESSAGE;
    }
};
}  // namespace mqtt

namespace mqtt_presence::detail {

/// MQTT 5 disconnect options with reason 0x04 (disconnect with will message): the broker publishes the will.
inline mqtt::disconnect_options disconnect_keeping_will() {
    mqtt::disconnect_options options(0);
    mqtt::disconnect_options_test::keep_will(options);
    return options;
}

/// Creates a Paho client for `server_uri` speaking MQTT 3.1.1 (4) or 5; throws mqtt_presence::error.
inline std::unique_ptr<mqtt::async_client> make_client(const std::string& server_uri, const std::string& client_id,
                                                       int mqtt_version) {
    const auto uri = parse_server_uri(server_uri).for_paho();
    try {
        if (mqtt_version == 5)
            return std::make_unique<mqtt::async_client>(uri, client_id, mqtt::create_options(MQTTVERSION_5));
        return std::make_unique<mqtt::async_client>(uri, client_id);
    } catch (const mqtt::exception& e) {
        throw error("cannot create an MQTT client for " + server_uri + ": " + e.what());
    }
}

/// Version, keepalive, timeout, clean start, credentials and TLS. No will, no reconnect policy: those differ
/// between presence_client and scanner.
inline mqtt::connect_options base_connect_options(const broker_options& o) {
    mqtt::connect_options opts;
    opts.set_mqtt_version(o.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    opts.set_keep_alive_interval(o.keepalive);
    opts.set_connect_timeout(o.connect_timeout);
    if (o.mqtt_version == 5) opts.set_clean_start(true);
    else opts.set_clean_session(true);
    if (!o.username.empty()) opts.set_user_name(o.username);
    if (!o.password.empty()) opts.set_password(o.password);
    if (parse_server_uri(o.server_uri).tls()) {
        mqtt::ssl_options ssl;
        if (!o.cafile.empty()) ssl.set_trust_store(o.cafile);
        if (!o.certfile.empty()) ssl.set_key_store(o.certfile);
        if (!o.keyfile.empty()) ssl.set_private_key(o.keyfile);
        ssl.set_verify(!o.insecure);
        ssl.set_enable_server_cert_auth(!o.insecure);
        opts.set_ssl(std::move(ssl));
    }
    return opts;
}

}  // namespace mqtt_presence::detail
