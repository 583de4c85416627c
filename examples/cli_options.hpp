#pragma once
// The command-line options both tools take, defined once: where the broker is and how to log in, named like
// mosquitto_sub and mosquitto_pub. Used by mqtt-presence-sensor and mqtt-presence-scanner.

#include <mqtt_presence/broker_options.hpp>
#include <mqtt_presence/error.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdlib>
#include <string>

namespace cli {

/// What the shared options write besides mqtt_presence::broker_options itself.
struct broker_flags {
    std::string host;
    int port = 0;
    std::string pw_env;
    int keepalive = 30;
};

/// Adds the "Broker" option group. The app's help flag must be --help alone (-h is the host, as in mosquitto_sub).
inline void add_broker_options(CLI::App& app, mqtt_presence::broker_options& b, broker_flags& f) {
    auto* g = app.add_option_group("Broker", "Where the broker is and how to log in");
    auto* uri = g->add_option("-b,--broker", b.server_uri, "Broker URI: tcp://, ssl://, ws://, wss://")
                    ->capture_default_str();
    auto* host = g->add_option("-h,--host", f.host, "Broker host (builds tcp://HOST:PORT; ssl:// with --cafile)");
    auto* port = g->add_option("-p,--port", f.port, "Broker port (default 1883, 8883 with --cafile)")
                     ->check(CLI::Range(1, 65535));
    uri->excludes(host)->excludes(port);
    g->add_option("-i,--id,--client-id", b.client_id, "MQTT client id");
    g->add_option("-V,--mqtt-version", b.mqtt_version, "3 (3.1.1) or 5")
        ->transform(CLI::IsMember({3, 4, 5}))->capture_default_str();
    g->add_option("-k,--keepalive", f.keepalive, "Keepalive in seconds: a dead connection is noticed after ~1.5x")
        ->check(CLI::Range(1, 65535))->capture_default_str();
    g->add_option("-u,--username", b.username, "User name");
    g->add_option("--pw-env", f.pw_env, "Name of the environment variable that holds the password");
    g->add_option("--cafile", b.cafile, "CA certificate file (TLS)");
    auto* cert = g->add_option("--cert", b.certfile, "Client certificate file (TLS)");
    g->add_option("--key", b.keyfile, "Client private key file (TLS)")->needs(cert);
    g->add_flag("--insecure", b.insecure, "Do not verify the server certificate");
}

/// After parsing: the URI from -h/-p, the password from --pw-env, version 3 as 4. Throws mqtt_presence::error.
inline void finish_broker_options(mqtt_presence::broker_options& b, const broker_flags& f) {
    if (b.mqtt_version == 3) b.mqtt_version = 4;
    b.keepalive = std::chrono::seconds(f.keepalive);
    if (!f.host.empty() || f.port != 0) {
        const bool tls = !b.cafile.empty();
        b.server_uri = std::string(tls ? "ssl://" : "tcp://") + (f.host.empty() ? "localhost" : f.host) + ":" +
                       std::to_string(f.port != 0 ? f.port : tls ? 8883 : 1883);
    }
    if (!f.pw_env.empty()) {
        const char* pw = std::getenv(f.pw_env.c_str());
        if (pw == nullptr) throw mqtt_presence::error("--pw-env " + f.pw_env + ": that environment variable is not set");
        b.password = pw;
    }
}

}  // namespace cli
