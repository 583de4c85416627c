#pragma once
// mqtt-presence-scanner's command line: a subcommand per mode, each declaring its own options (CLI11 refuses one
// given to another mode), the broker's, the topics' and the output's options shared by all, the configuration file,
// and the flags that chose a mode before subcommands existed (--once, --events, --purge-...), kept as aliases.

#include <mqtt_presence/scanner.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "scanner_service.hpp"

namespace scanner_cli {

enum class mode { watch, once, events, purge, serve, history, uptime, silence };

/// One of several brokers (--broker NAME=URI).
struct named_broker {
    std::string name, uri;
    /// How to reach it: the shared broker options with its URI, and its own [brokers.NAME] keys of the
    /// configuration file (login, TLS) over them.
    mqtt_presence::broker_options broker;
};

/// Everything the command line (and the configuration file) says, parsed and checked.
struct settings {
    mqtt_presence::scanner_options opts;
    /// once and events over several brokers: each with its name (opts.broker is the first's; the rest of opts
    /// is shared). Empty for one broker.
    std::vector<named_broker> brokers;
    mode run = mode::watch;
    std::string format = "table";
    bool no_color = false;
    // watch
    std::string sort = "state";  ///< the live table's order: state (problems first), name, since
    // once
    std::vector<std::string> required;
    std::string timeout_text = "10s";
    std::chrono::milliseconds timeout{10'000};
    bool allow_partial = false;
    // purge
    std::string older_than_text;
    std::chrono::milliseconds older_than{};
    bool all_disconnected = false;
    bool dry_run = false;
    // serve, history, uptime
    service_cli::settings service;
};

/// Reads the command line into `s`. Returns an exit code when the process should end here: 0 after --help or
/// --version, 2 (exit_codes.hpp) for bad options, said on stderr.
std::optional<int> parse(int argc, char** argv, settings& s);

/// The subcommand nearest to `word` (a typing error away), or "" when none is near.
std::string nearest_subcommand(const std::string& word);

}  // namespace scanner_cli
