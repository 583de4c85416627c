#include <mqtt_presence/broker_options.hpp>

#include <mqtt_presence/error.hpp>

#include "uri.hpp"

namespace mqtt_presence {

void broker_options::validate() const {
    (void)detail::parse_server_uri(server_uri);
    if (mqtt_version != 4 && mqtt_version != 5)
        throw error("mqtt_version " + std::to_string(mqtt_version) + " is not supported; use 4 (3.1.1) or 5");
    if (keepalive.count() < 1 || keepalive.count() > 65535)
        throw error("keepalive " + std::to_string(keepalive.count()) + " s is outside 1-65535 s");
    if (connect_timeout.count() < 1) throw error("connect_timeout must be at least 1 s");
    detail::validate_tls(server_uri, cafile, certfile, keyfile, insecure);
    for (const auto& uri : failover) {
        (void)detail::parse_server_uri(uri);
        detail::validate_tls(uri, cafile, certfile, keyfile, insecure);
    }
}

}  // namespace mqtt_presence
