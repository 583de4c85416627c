#include <mqtt_presence/paho_client.hpp>

#include <mqtt_presence/error.hpp>

#include "paho/paho_wake.hpp"
#include "uri.hpp"

namespace mqtt_presence {

std::unique_ptr<mqtt::async_client> make_client(const std::string& server_uri, const std::string& client_id,
                                                int mqtt_version) {
    const auto uri = detail::parse_server_uri(server_uri).for_paho();
    try {
        if (mqtt_version == 5)
            return std::make_unique<mqtt::async_client>(uri, client_id, mqtt::create_options(MQTTVERSION_5));
        return std::make_unique<mqtt::async_client>(uri, client_id);
    } catch (const mqtt::exception& e) {
        throw error("cannot create an MQTT client for " + server_uri + ": " + e.what());
    }
}

mqtt::connect_options base_connect_options(const broker_options& o) {
    mqtt::connect_options opts;
    opts.set_mqtt_version(o.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    opts.set_keep_alive_interval(o.keepalive);
    opts.set_connect_timeout(o.connect_timeout);
    if (o.mqtt_version == 5) opts.set_clean_start(true);
    else opts.set_clean_session(true);
    if (!o.username.empty()) opts.set_user_name(o.username);
    if (!o.password.empty()) opts.set_password(o.password);
    if (!o.failover.empty()) {  // each connect walks the list from its start (MQTTAsync_reconnect would not)
        auto servers = std::make_shared<mqtt::string_collection>(o.server_uri);
        for (const auto& uri : o.failover) servers->push_back(uri);
        opts.set_servers(servers);
    }
    if (detail::parse_server_uri(o.server_uri).tls()) {
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

void wake_paho(mqtt::async_client& connected_client) noexcept {
    try {
        if (connected_client.is_connected()) connected_client.unsubscribe(detail::paho_wake::filter);
    } catch (...) {
        // not connected after all: nothing to wake
    }
}

}  // namespace mqtt_presence
