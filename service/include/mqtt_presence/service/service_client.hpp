#pragma once
// A request to a running service's API (the scanner's `silence` subcommand): one call, bounded (5 s to connect,
// 10 s to answer), Basic login when a user is given, TLS for an https:// URL (the system's CAs, or `cafile`).

#include <string>

namespace mqtt_presence {

struct service_reply {
    int status = 0;
    std::string body;
};

struct service_endpoint {
    std::string url = "http://127.0.0.1:8080";  ///< the dashboard's address (serve --listen)
    std::string user, password;
    std::string cafile;
};

/// Throws mqtt_presence::error saying why when the service cannot be reached (or the URL is not one).
[[nodiscard]] service_reply call_service(const service_endpoint& to, const std::string& method, const std::string& path,
                                         const std::string& json_body = {});

}  // namespace mqtt_presence
