#pragma once
// The scanner tool's service commands: serve (the table kept in a history, optionally a death notary), and the
// history's queries, history NAME and uptime, which need no broker.

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include <mqtt_presence/client_groups.hpp>
#include <mqtt_presence/scanner.hpp>

namespace service_cli {

struct settings {
    std::string db;            ///< the history file; empty: default_db_path()
    std::string keep = "30d";  ///< serve: events older than this are pruned
    std::optional<std::string> notary;  ///< serve: the notary's template ("" for the default)
    std::optional<std::string> ha_prefix;  ///< serve: Home Assistant discovery prefix ("" for the default)
    std::vector<std::string> ha_exclude;   ///< serve: conventions left out of the discovery
    bool ha_remove = false;                ///< serve: clear every discovery config and state, then exit
    std::string observer;      ///< serve: who watches (default host:db-path)
    std::string client;        ///< history: the client's name
    std::string since = "7d";  ///< history: how far back
    std::string window = "24h";         ///< uptime: the window
    std::string flap_interval = "1m";   ///< uptime: a reconnect within this long of a disconnect is a flap
    std::string sort = "client";        ///< uptime: client, uptime, disconnects, flaps, outage
    std::string by = "client";          ///< uptime: client or group
    // silence: the running service's API
    std::string silence_target;          ///< a client's name or glob, or group:NAME
    std::string silence_for = "1h";
    std::string silence_reason;
    bool silence_list = false;
    std::string silence_end;             ///< the id of a silence to end
    std::string server = "http://127.0.0.1:8080";
    std::string server_cafile;
    std::vector<mqtt_presence::group_rule> groups;  ///< uptime --by group: the scanner's --group rules
    std::string format = "table";
    std::string listen = "127.0.0.1:8080";  ///< serve: the dashboard and API; "off": none
    std::string http_user, http_pw_env, http_pw_file, http_cert, http_key;
    int http_max_per_address = 64;
    // serve: alerts
    std::string alert_config;  ///< a JSON file with the same settings; the command line wins
    std::string alert_after, alert_flap_window, alert_exec_timeout, alert_flap_count, alert_outage_percent;
    std::vector<std::string> alert_only, alert_exclude;
    bool alert_on_new = false, alert_on_removed = false;
    std::string alert_exec, alert_webhook, alert_template, alert_cafile;
    std::vector<std::string> alert_webhook_for;  ///< "GROUP=URL": a group's own receiver
    std::vector<std::string> alert_headers;  ///< "Name: value"; $VAR and ${VAR} in a value from the environment
    std::string public_url;                  ///< the dashboard as people reach it: alerts link there
    std::vector<std::string> silence_every;  ///< weekly maintenance windows: "TARGET DAYS HH:MM-HH:MM REASON"
};

/// $MQTT_PRESENCE_DB, else $XDG_STATE_HOME/mqtt-presence/history.db, else ~/.local/state/mqtt-presence/history.db.
std::string default_db_path();

/// silence: sets, lists or ends a silence through the running service's API. Exit codes: 0 done, 2 refused (bad
/// options, unknown id, no login), 4 the service cannot be reached.
int run_silence(const settings& s);

/// once --db: puts the history's rows into the scanner before it syncs (read-only), so that the snapshot shows the
/// times of death the history knows. Throws mqtt_presence::error for a missing or bad file.
void restore(mqtt_presence::scanner& scan, const settings& s);

/// Runs until `interrupted`; re-reads the alert settings when `reload` is set (SIGHUP). A broker that cannot be
/// reached is retried. Exit codes: 0 stopped with everything written, 1 stopped with changes it could not write
/// (said on stderr), 2 a bad option or history file, 6 in use (exit_codes.hpp).
int run_serve(const mqtt_presence::scanner_options& opts, const settings& s, const std::atomic<bool>& interrupted,
              std::atomic<bool>& reload);
/// Exit codes: 0 events listed (or none in the window: a line on stderr says so), 2 no such history file.
int run_history(const settings& s);
int run_uptime(const settings& s);

}  // namespace service_cli
