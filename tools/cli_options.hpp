#pragma once
// The command-line options both tools take, defined once: where the broker is and how to log in, named like
// mosquitto_sub and mosquitto_pub. Used by mqtt-presence-sensor and mqtt-presence-scanner.

#include <mqtt_presence/broker_options.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/version.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace cli {

/// What the shared options write besides mqtt_presence::broker_options itself.
struct broker_flags {
    std::vector<std::string> uris;  ///< each --broker as given (the scanner's once and events take several)
    std::string host;
    int port = 0;
    std::string pw_env;
    std::string pw_file;
    int keepalive = 30;
};

/// The configuration file both tools read (CLI11's TOML/INI reader): the keys both share (the broker's) at the
/// top, each tool's own under [scanner] or [sensor]. Every long option is a key, without its dashes; the command
/// line wins over the file. `before_reading` runs once the command line is parsed and before the file's values are
/// applied: the moment to note what the command line itself gave. `route` (optional) may point a key at a subcommand
/// (its `parents`) or drop it (false): a tool whose options live in subcommands keeps one flat section.
/// The file's [brokers.NAME] sections: each named broker's own keys (its login and TLS), as key -> value.
using broker_sections = std::map<std::string, std::map<std::string, std::string>>;

class config_file : public CLI::ConfigTOML {
public:
    using router = std::function<bool(CLI::ConfigItem&)>;

    /// `brokers` (optional) receives the [brokers.NAME] sections; without it they are unknown keys.
    config_file(std::string section, std::function<void()> before_reading, router route,
                std::shared_ptr<broker_sections> brokers = nullptr)
        : section_(std::move(section)), before_reading_(std::move(before_reading)), route_(std::move(route)),
          brokers_(std::move(brokers)) {}

    std::vector<CLI::ConfigItem> from_config(std::istream& in) const override {
        if (before_reading_) before_reading_();
        std::vector<CLI::ConfigItem> kept;
        for (auto& item : CLI::ConfigTOML::from_config(in)) {
            const bool marker = item.name == "++" || item.name == "--";  // a section's start and end
            if (brokers_ && !item.parents.empty() && item.parents.front() == "brokers" &&
                (marker || item.parents.size() == 2)) {
                if (marker) continue;
                std::string value;
                for (const auto& v : item.inputs) value += (value.empty() ? "" : ",") + v;
                (*brokers_)[item.parents.back()][item.name] = value;
            } else if (item.parents.empty()) {
                if (!route_ || route_(item)) kept.push_back(std::move(item));
            } else if (item.parents.front() == section_) {
                if (item.parents.size() == 1 && item.name == "--") continue;  // the section's end marker
                item.parents.erase(item.parents.begin());
                if (!route_ || route_(item)) kept.push_back(std::move(item));
            } else if (item.parents.front() != "scanner" && item.parents.front() != "sensor") {
                kept.push_back(std::move(item));  // an unknown section: reported as an unknown key
            }
        }
        return kept;
    }

private:
    std::string section_;
    std::function<void()> before_reading_;
    router route_;
    std::shared_ptr<broker_sections> brokers_;
};

/// The default configuration file, read when it exists (--config or $MQTT_PRESENCE_CONFIG name another).
inline constexpr const char* default_config = "/etc/mqtt-presence/config.toml";

/// --version, and --config FILE: $MQTT_PRESENCE_CONFIG when set (then the file must exist), else
/// /etc/mqtt-presence/config.toml when it exists. `section` is the tool's own part of the file ("scanner", "sensor").
inline void add_version_and_config(CLI::App& app, const std::string& section,
                                   std::function<void()> before_reading = {}, config_file::router route = {},
                                   std::shared_ptr<broker_sections> brokers = nullptr) {
    app.set_version_flag("--version", app.get_name() + " " + mqtt_presence::version);
    const char* env = std::getenv("MQTT_PRESENCE_CONFIG");
    const bool from_env = env != nullptr && *env != '\0';
    app.set_config("--config", from_env ? env : default_config,
                   "Read options from this TOML file: every long option is a key (host = \"broker.lan\"); the "
                   "scanner's own under [scanner], the sensor's under [sensor]; the command line wins. Default "
                   "$MQTT_PRESENCE_CONFIG, else " + std::string(default_config) + " if it exists",
                   from_env);
    app.config_formatter(
        std::make_shared<config_file>(section, std::move(before_reading), std::move(route), std::move(brokers)));
    app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error, not a silent default
}

/// Every option given a value (on the command line or in the configuration file) that is empty: refused, naming
/// it. An empty client id, user, file or name is never what was meant. Options whose value is optional (--notary)
/// are left alone. Throws mqtt_presence::error.
inline void refuse_empty_values(const CLI::App& app) {
    for (const auto* opt : app.get_options()) {
        if (opt->count() == 0 || opt->get_expected_min() == 0 || opt->get_positional()) continue;
        for (const auto& value : opt->results())
            if (value.empty()) throw mqtt_presence::error(opt->get_name() + " is empty: give a value, or leave it out");
    }
    for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; })) refuse_empty_values(*sub);
}

/// A ConfigError's message for a person: which file and which key, and where a key belongs.
inline std::string config_error_text(const CLI::App& app, const CLI::ConfigError& e) {
    std::string what = e.what();
    const std::string unknown = "INI was not able to parse ";
    const auto section_mark = what.size() > 3 ? what.substr(what.size() - 3) : std::string();
    if (what.rfind(unknown, 0) == 0 && (section_mark == ".++" || section_mark == ".--"))
        what = "no section [" + what.substr(unknown.size(), what.size() - unknown.size() - 3) + "] (the sections "
               "are [scanner] and [sensor])";
    else if (what.rfind(unknown, 0) == 0)
        what = "no option " + what.substr(unknown.size()) + " in " + app.get_name() + " (a key is a long option "
               "without its dashes; the broker's keys at the top, the scanner's under [scanner], the sensor's "
               "under [sensor])";
    std::string file;
    try {
        if (const auto* config = app.get_config_ptr()) file = config->as<std::string>();
    } catch (const CLI::Error&) {  // no name to give
    }
    return "the configuration file" + (file.empty() ? std::string() : " " + file) + ": " + what;
}

/// The first line of a secret file, without its line end: a password kept off the command line and the
/// environment. Throws mqtt_presence::error when it cannot be read.
inline std::string read_secret_file(const std::string& option, const std::string& path) {
    std::ifstream in(path);
    if (!in) throw mqtt_presence::error(option + " " + path + ": cannot read it");
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

/// Adds the "Broker" option group. The app's help flag must be --help alone (-h is the host, as in mosquitto_sub).
inline void add_broker_options(CLI::App& app, mqtt_presence::broker_options& b, broker_flags& f) {
    auto* g = app.add_option_group("Broker", "Where the broker is and how to log in");
    auto* uri = g->add_option("-b,--broker", f.uris, "Broker URI: tcp://, ssl://, ws://, wss:// (default " +
                                                          b.server_uri + ")")
                    ->allow_extra_args(false);
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
    auto* pw_env = g->add_option("--pw-env", f.pw_env, "Name of the environment variable that holds the password");
    g->add_option("--pw-file", f.pw_file, "A file whose first line is the password (e.g. mode 0600)")
        ->excludes(pw_env);
    g->add_option("--cafile", b.cafile, "CA certificate file (TLS)");
    auto* cert = g->add_option("--cert", b.certfile, "Client certificate file (TLS)");
    g->add_option("--key", b.keyfile, "Client private key file (TLS)")->needs(cert);
    g->add_flag("--insecure", b.insecure, "Do not verify the server certificate");
}

/// After parsing: the URI from -h/-p, the password from --pw-env, version 3 as 4. `failover`: several --broker are
/// the nodes of one cluster, tried in that order (broker_options::failover); otherwise refused. Throws
/// mqtt_presence::error.
inline void finish_broker_options(mqtt_presence::broker_options& b, const broker_flags& f, bool failover = false) {
    if (f.uris.size() > 1 && !failover) throw mqtt_presence::error("one --broker: this takes a single broker");
    if (!f.uris.empty()) b.server_uri = f.uris.front();
    if (f.uris.size() > 1) b.failover.assign(f.uris.begin() + 1, f.uris.end());
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
    if (!f.pw_file.empty()) b.password = read_secret_file("--pw-file", f.pw_file);
}

}  // namespace cli
