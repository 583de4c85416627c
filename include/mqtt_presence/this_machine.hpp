#pragma once
// This machine's name and address: the JSON payload's "host" and "ip", the service's observer name.

#include <string>
#include <string_view>

namespace mqtt_presence {

/// This machine's host name, or "" if unknown.
[[nodiscard]] std::string host_name();
/// The local address this machine uses to reach the broker of `server_uri` (no packet is sent), or "" if unknown.
[[nodiscard]] std::string local_address_for(std::string_view server_uri);

}  // namespace mqtt_presence
