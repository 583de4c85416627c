#include "uri.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include <mqtt_presence/error.hpp>

#include "text_util.hpp"

namespace mqtt_presence::detail {
namespace {

[[noreturn]] void bad_uri(std::string_view uri, const std::string& why) {
    throw error("invalid broker URI \"" + printable(uri) + "\": " + why +
                "; write e.g. tcp://localhost:1883 or ssl://broker.example:8883");
}

}  // namespace

std::string server_uri::for_paho() const {
    const bool v6 = host.find(':') != std::string::npos;
    return scheme + "://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

server_uri parse_server_uri(std::string_view uri) {
    const auto sep = uri.find("://");
    if (sep == std::string_view::npos) bad_uri(uri, "it has no scheme (tcp://, ssl://, ws://, wss://)");
    server_uri out;
    const auto scheme = uri.substr(0, sep);
    if (iequals(scheme, "tcp") || iequals(scheme, "mqtt")) out.scheme = "tcp";
    else if (iequals(scheme, "ssl") || iequals(scheme, "mqtts")) out.scheme = "ssl";
    else if (iequals(scheme, "ws")) out.scheme = "ws";
    else if (iequals(scheme, "wss")) out.scheme = "wss";
    else bad_uri(uri, "unknown scheme \"" + printable(scheme) + "\"");

    auto rest = uri.substr(sep + 3);
    const auto slash = rest.find('/');
    if (slash != std::string_view::npos && out.scheme.front() != 'w')
        bad_uri(uri, "a path is only allowed for ws:// and wss://");
    if (slash != std::string_view::npos) rest = rest.substr(0, slash);
    std::string_view host = rest;
    std::string_view port;
    if (!rest.empty() && rest.front() == '[') {
        const auto close = rest.find(']');
        if (close == std::string_view::npos) bad_uri(uri, "an IPv6 address lacks its closing ']'");
        host = rest.substr(1, close - 1);
        if (close + 1 < rest.size()) {
            if (rest[close + 1] != ':') bad_uri(uri, "expected ':' and a port after ']'");
            port = rest.substr(close + 2);
        }
    } else if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
    }
    if (host.empty()) bad_uri(uri, "the host is missing");
    out.host = std::string(host);
    if (port.empty()) {
        out.port = out.scheme == "tcp" ? 1883 : out.scheme == "ssl" ? 8883 : out.scheme == "ws" ? 80 : 443;
    } else {
        long value = 0;
        for (char c : port) {
            if (c < '0' || c > '9' || value > 65535) bad_uri(uri, "the port \"" + printable(port) + "\" is not a number");
            value = value * 10 + (c - '0');
        }
        if (value < 1 || value > 65535) bad_uri(uri, "the port " + std::string(port) + " is outside 1-65535");
        out.port = static_cast<int>(value);
    }
    return out;
}

void validate_tls(std::string_view uri, const std::string& cafile, const std::string& certfile,
                  const std::string& keyfile, bool insecure) {
    const auto parsed = parse_server_uri(uri);
    const bool any = !cafile.empty() || !certfile.empty() || !keyfile.empty() || insecure;
    if (any && !parsed.tls())
        throw error("TLS options (cafile, certfile, keyfile, insecure) are set but the broker URI \"" + printable(uri) +
                    "\" is not TLS; use ssl://" + parsed.host + ":8883 (or mqtts://, wss://)");
    for (const auto& [what, file] : {std::pair<const char*, const std::string*>{"cafile", &cafile},
                                     {"certfile", &certfile},
                                     {"keyfile", &keyfile}}) {
        if (file->empty()) continue;
        if (std::FILE* f = std::fopen(file->c_str(), "r")) {
            std::fclose(f);
        } else {
            throw error(std::string(what) + " \"" + printable(*file) + "\" cannot be read: " + std::strerror(errno));
        }
    }
    if (!keyfile.empty() && certfile.empty()) throw error("a key file needs its certificate (certfile)");
}

}  // namespace mqtt_presence::detail
