#pragma once
// Broker URIs: validation with errors that show a valid example, and the form Paho accepts.

#include <string>
#include <string_view>

namespace mqtt_presence::detail {

struct server_uri {
    std::string scheme;  ///< tcp, ssl, ws or wss (mqtt:// and mqtts:// are read as tcp and ssl)
    std::string host;
    int port = 0;
    [[nodiscard]] bool tls() const { return scheme == "ssl" || scheme == "wss"; }
    /// The URI as Paho wants it.
    [[nodiscard]] std::string for_paho() const;
};

/// Throws mqtt_presence::error saying what is wrong, e.g. for "localhost" or "tcp://host:99999".
[[nodiscard]] server_uri parse_server_uri(std::string_view uri);

/// TLS files and flags make sense only with a TLS URI, and each named file must be readable: throws
/// mqtt_presence::error naming the option and the file. TLS silently off would send passwords in clear text.
void validate_tls(std::string_view uri, const std::string& cafile, const std::string& certfile,
                  const std::string& keyfile, bool insecure);

}  // namespace mqtt_presence::detail
