#include "scanner_cli.hpp"

#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/client_groups.hpp>
#include <mqtt_presence/expectation.hpp>
#include <mqtt_presence/topic_scheme.hpp>
#include <mqtt_presence/service/history_store.hpp>
#ifdef MQTT_PRESENCE_HAS_SPARKPLUG
#include <mqtt_presence/sparkplug/node_payload.hpp>
#endif

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <sstream>

#include "cli_options.hpp"
#include "exit_codes.hpp"
#include "help_formatter.hpp"

namespace scanner_cli {
namespace {

using mqtt_presence::error;

constexpr const char* tool = "mqtt-presence-scanner";

// The help's footers: each subcommand's examples, then what its exit codes mean.
constexpr const char* top_footer = R"(Each subcommand has its own options and examples: SUBCOMMAND --help.
The broker, status and output options above go before or after it.

Examples:
  mqtt-presence-scanner                        # live table: sensors/connected/+
  mqtt-presence-scanner once                   # snapshot, then exit
  mqtt-presence-scanner once --require gw-1,gw-2 || alert   # 3: not connected
  mqtt-presence-scanner once --format prometheus > mqtt.prom
  mqtt-presence-scanner --convention homie --convention tasmota
  mqtt-presence-scanner --convention all       # every convention docs/ lists
  mqtt-presence-scanner -t '$CONNECTED/{client}' -t 'sensors/{client}/connected'
  mqtt-presence-scanner events                 # NDJSON stream of changes
  mqtt-presence-scanner purge --older-than 7d --dry-run
  mqtt-presence-scanner -h broker.lan -p 8883 --cafile ca.crt -u monitor \
      --pw-env MQTT_PASSWORD
  mqtt-presence-scanner serve --notary         # history, dashboard, alerts
  mqtt-presence-scanner history kitchen --since 2d

Durations: 500ms, 5s, 10m, 2h, 7d. The old flags --once, --events,
--purge-older-than and --purge-all-disconnected still choose their mode.
Exit codes: 0 ok, 1 runtime failure, 2 bad options, 3 a required client is
not connected, 4 broker unreachable or lost during once, 5 once: sync not
known complete, 6 serve: held by another instance.)";

constexpr const char* watch_footer = R"(Examples:
  mqtt-presence-scanner watch                  # the same as no subcommand
  mqtt-presence-scanner watch --sort name      # by name, not problems first
  mqtt-presence-scanner watch --format ndjson | tee changes.ndjson
  mqtt-presence-scanner watch --db ~/.local/state/mqtt-presence/history.db
  mqtt-presence-scanner watch --broker lab=tcp://h1:1883 \
      --broker prod=tcp://h2:1883

Several brokers: one table with a BROKER column; a broker that cannot be
heard is said in the title and its rows are "unknown" since it was last heard
(never alive, never dead); one unreachable at the start is tried again.

Exit codes: 0 stopped by SIGINT/SIGTERM, 2 bad options, 4 broker unreachable
(of several: every one).)";

constexpr const char* once_footer = R"(Examples:
  mqtt-presence-scanner once
  mqtt-presence-scanner once -F json | jq '.clients[] | select(.stale)'
  mqtt-presence-scanner once --require gw-1,gw-2 || alert
  mqtt-presence-scanner once --format prometheus > mqtt.prom.tmp
  mqtt-presence-scanner once --db ~/.local/state/mqtt-presence/history.db
  mqtt-presence-scanner once --timeout 2m      # a large fleet on a slow link
  mqtt-presence-scanner once --broker a=tcp://h1:1883 --broker b=tcp://h2:1883

Exit codes: 0 the table, complete; 2 bad options; 3 a --require'd client is
not connected (or stale, or unconfirmed); 4 broker unreachable or lost during
the sync (of several: every one); 5 the sync is not known complete, or some
of several brokers could not be read: no table unless --allow-partial.)";

constexpr const char* events_footer = R"(Examples:
  mqtt-presence-scanner events                 # NDJSON, one change a line
  mqtt-presence-scanner events --format table  # human lines
  mqtt-presence-scanner events | jq -c 'select(.state=="disconnected")'
  mqtt-presence-scanner events --broker a=tcp://h1:1883 --broker b=tcp://h2:1883

Exit codes: 0 stopped by SIGINT/SIGTERM, 2 bad options, 4 broker unreachable
(of several: every one).)";

constexpr const char* purge_footer = R"(Examples:
  mqtt-presence-scanner purge --older-than 7d --dry-run  # what would go
  mqtt-presence-scanner purge --older-than 7d
  mqtt-presence-scanner purge --all-disconnected --format json

Exit codes: 0 cleared, 1 the broker refused some (listed on stderr),
2 bad options, 4 broker unreachable.)";

constexpr const char* serve_footer = R"(Examples:
  mqtt-presence-scanner serve                  # dashboard on 127.0.0.1:8080
  mqtt-presence-scanner serve --db /var/lib/mqtt-presence/history.db --notary
  mqtt-presence-scanner serve --db postgresql://presence@db.example/presence
                                               # its password from ~/.pgpass
  mqtt-presence-scanner serve --listen 0.0.0.0:8080 --http-user admin \
      --http-pw-file /etc/mqtt-presence/http.pw
  mqtt-presence-scanner serve --alert-webhook https://hooks.example/T0 \
      --alert-template '{"text":"{{title}}: {{message}}"}'
  mqtt-presence-scanner serve --ha-discovery --ha-discovery-exclude tasmota

A broker that is not there yet is retried; SIGHUP re-reads the alert settings.
Two or more serve on one PostgreSQL database: one leads, the others follow
(their own live table and dashboard) and take over when it stops, dies or hangs.
Exit codes: 0 stopped with everything written, 1 stopped with changes it
could not write, 2 bad options or history file, 6 in use (another instance
holds the history file, the port or the notary's template), 7 another serve
took over the database while this one could not reach it.)";

constexpr const char* history_footer = R"(Examples:
  mqtt-presence-scanner history kitchen        # the last 7 days
  mqtt-presence-scanner history kitchen --since 30d --format json

Exit codes: 0 listed (none in the window: said on stderr), 2 no such history.)";

constexpr const char* silence_footer = R"(Examples:
  mqtt-presence-scanner silence boiler --for 2h --reason "firmware update"
  mqtt-presence-scanner silence group:garage --for 1d --reason "renovation"
  mqtt-presence-scanner silence --list
  mqtt-presence-scanner silence --end 3f2a9c0d11e4b7a5

A silence holds the alerts of a client (a name or glob) or group: they are
recorded and counted, not sent. It ends at its time, by --end, or never
later than 90 days. It reaches the running serve at --server (its --listen);
with a login, --http-user and --http-pw-env as serve has them.

Exit codes: 0 done, 2 refused (bad options, unknown id, login), 4 the
service cannot be reached.)";

constexpr const char* uptime_footer = R"(Examples:
  mqtt-presence-scanner uptime                 # the last 24 h, by client
  mqtt-presence-scanner uptime --window 7d --sort uptime --format csv

Exit codes: 0 listed, 2 bad options or no such history.)";

// What the command line gives besides settings.
struct command_line {
    cli::broker_flags broker;
    std::vector<std::string> topics, conventions, activity, expect, groups;
    std::string require_text;
    std::vector<std::pair<mode, CLI::App*>> modes;  // the subcommands
    CLI::Option_group* watch_group = nullptr;          // watch's own options, on the top level
    bool format_given = false;  // --format on the command line (not from the file)
    bool format_noted = false;  // format_given was noted before the configuration file was read
    std::string db_given;       // --db as the command line gave it (a password there is refused)
    std::shared_ptr<cli::broker_sections> broker_sections = std::make_shared<cli::broker_sections>();
};

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

// Broker, Statuses and Output: on the top level, good for every subcommand (they fall through to it).
void define_shared_options(CLI::App& app, settings& s, command_line& c) {
    // A scanner's keepalive bounds how long it can be cut off unawares (one PINGREQ per interval is the cost).
    c.broker.keepalive = 10;
    cli::add_broker_options(app, s.opts.broker, c.broker);
    auto* what = app.add_option_group("Statuses", "Which status topics to read");
    what->add_option("-t,--topic", c.topics, "Status topic template, repeatable (default sensors/connected/{client})");
    std::string presets;
    for (const auto& [name, templ] : mqtt_presence::topic_scheme::presets())
        presets += (presets.empty() ? "" : ", ") + name;
    what->add_option("--convention", c.conventions,
                     "Preset, repeatable: " + presets + "; or all (docs/conventions.md lists their topics)");
    what->add_option("--activity", c.activity,
                     "Activity topic template, repeatable (e.g. tele/{client}/STATE): a live message there is a "
                     "sign of life of that client (LAST-SEEN); the payload is not read. Built into tasmota and "
                     "zigbee2mqtt-devices; none: not even theirs");
    what->add_option("--expect", c.expect,
                     "Expected interval, repeatable: a connected client not heard from (status or activity) for "
                     "longer is overdue. DURATION for all, GLOB=DURATION for names or topics (the first that fits), "
                     "auto or GLOB=auto: learned from each client's own cadence");
    what->add_option("--group", c.groups,
                     "Group, repeatable: NAME=GLOB (names or topics) or NAME=meta.KEY=VALUE (JSON metadata) "
                     "defines one (a client may be in several; --expect group:NAME=DUR); a bare NAME shows only "
                     "that group's clients (the others are counted as excluded)");
    what->add_option("--exclude", s.opts.exclude,
                     "Leave out clients whose name or topic fits this glob, repeatable (e.g. homeassistant under "
                     "--convention esphome; 'zigbee2mqtt/bridge*'); counted as excluded");
    what->add_option("-q,--qos", s.opts.qos, "Subscription QoS (0: full re-sync on reconnect; see docs/tools.md for 1)")
        ->capture_default_str();
    auto* out = app.add_option_group("Output");
    out->add_option("-F,--format", s.format, "table, json, ndjson, csv, prometheus (csv and prometheus: snapshots)")
        ->check(CLI::IsMember({"table", "json", "ndjson", "csv", "prometheus"}))->capture_default_str();
    out->add_flag("--no-color", s.no_color, "No colours in the table");
}

CLI::App* add_mode(CLI::App& app, command_line& c, mode m, const char* name, const char* description,
                   const char* footer) {
    auto* sub = app.add_subcommand(name, description)->fallthrough();
    sub->footer(std::string("The options of mqtt-presence-scanner --help (the broker, the topics,\n--format, "
                            "--config) go with every subcommand.\n\n") + footer);
    c.modes.emplace_back(m, sub);
    return sub;
}

void add_timeout(CLI::App& app, settings& s) {
    app.add_option("--timeout", s.timeout_text, "Bound on the initial sync")->capture_default_str();
}

// Not from the configuration file: its `sort` key is uptime's.
void add_sort(CLI::App& app, settings& s) {
    app.add_option("--sort", s.sort, "The live table's order: state (disconnected, stale, unknown, then connected), "
                                     "name, since (the latest change first)")
        ->check(CLI::IsMember({"state", "name", "since"}))->capture_default_str()->configurable(false);
}

// watch --db: the history's silences beside the live table's rows.
void add_watch_db(CLI::App& app, settings& s) {
    app.add_option("--db", s.service.db, "The history serve writes (a file, or postgresql://USER@HOST/DB): its "
                                         "silences shown beside the rows they cover (the live table)");
}

void define_watch_once_events_purge(CLI::App& app, settings& s, command_line& c) {
    // watch is the default: its option is the top level's too.
    c.watch_group = app.add_option_group("watch (the default)");
    add_timeout(*c.watch_group, s);
    add_sort(*c.watch_group, s);
    add_watch_db(*c.watch_group, s);
    auto* watch = add_mode(app, c, mode::watch, "watch",
                           "Live table on a terminal, changes as lines otherwise (the default)", watch_footer);
    add_timeout(*watch, s);
    add_sort(*watch, s);
    add_watch_db(*watch, s);

    auto* once = add_mode(app, c, mode::once, "once", "Sync, print the table, exit", once_footer);
    once->add_option("--require", c.require_text, "NAME[,NAME...] that must be connected (else exit 3)");
    add_timeout(*once, s);
    once->add_flag("--allow-partial", s.allow_partial,
                   "Print the table even when the sync is not known complete (still exit 5)");
    once->add_option("--db", s.service.db, "History (a file, or postgresql://USER@HOST/DB): since and last_seen as "
                                           "the history knows them");

    add_mode(app, c, mode::events, "events", "Stream changes (NDJSON by default)", events_footer);

    auto* purge = add_mode(app, c, mode::purge, "purge", "Clear retained statuses that say disconnected",
                           purge_footer);
    auto* older = purge->add_option("--older-than,--purge-older-than", s.older_than_text,
                                    "Statuses that say disconnected, time-stamped (a clean stop's ts) longer ago "
                                    "than DUR");
    auto* all = purge->add_flag("--all-disconnected,--purge-all-disconnected", s.all_disconnected,
                                "Every disconnected or unreadable status, dated or not (plain 0, wills)");
    older->excludes(all);
    auto* dry_run = purge->add_flag("--dry-run", s.dry_run, "Only list what would be cleared");
    add_timeout(*purge, s);
    for (auto* o : {older, all, dry_run}) o->configurable(false);  // what to clear is said each time
}

// serve's history, notary, Home Assistant and HTTP options. Returns the subcommand.
CLI::App* define_serve(CLI::App& app, service_cli::settings& svc, command_line& c) {
    auto* serve = add_mode(app, c, mode::serve, "serve", "Keep the table and its history (--db), the dashboard and "
                                                         "alerts, until SIGINT/SIGTERM", serve_footer);
    auto* store = serve->add_option_group("History and notary");
    store->add_option("--db", svc.db, "History: an SQLite file (default $MQTT_PRESENCE_DB, else "
                                      "~/.local/state/mqtt-presence/history.db) or a PostgreSQL database "
                                      "(postgresql://USER@HOST/DB, or libpq's key=value string; the password from "
                                      "PGPASSWORD, PGPASSFILE or the configuration file)");
    store->add_option("--keep", svc.keep, "Prune events older than DUR")->capture_default_str();
    store->add_option("--notary", svc.notary, "Publish a retained record per client on every transition (default "
                                              "template mqtt-presence/clients/{client})")
        ->expected(0, 1);
    store->add_option("--observer", svc.observer, "Who watches, in the history and the notary's records (default "
                                                  "HOST:DB-PATH)");
    auto* ha = serve->add_option_group("Home Assistant");
    ha->add_option("--ha-discovery", svc.ha_prefix, "Every client as a connectivity binary_sensor (MQTT discovery; "
                                                    "default prefix homeassistant)")
        ->expected(0, 1);
    ha->add_option("--ha-discovery-exclude", svc.ha_exclude, "No entity for this convention's clients (Home "
                                                             "Assistant knows them already: tasmota, zigbee2mqtt "
                                                             "...); repeatable");
    ha->add_flag("--ha-discovery-remove", svc.ha_remove, "Clear every client's discovery config and state under the "
                                                         "prefix, then exit")
        ->configurable(false);
    auto* http = serve->add_option_group("Dashboard and API");
    http->add_option("--listen", svc.listen, "HOST:PORT of the dashboard, API and /metrics (port 0: any free one; "
                                             "off: none)")->capture_default_str();
    http->add_option("--http-user", svc.http_user, "Basic auth user");
    auto* http_pw_env = http->add_option("--http-pw-env", svc.http_pw_env,
                                         "The environment variable holding its password");
    http->add_option("--http-pw-file", svc.http_pw_file, "A file whose first line is its password")
        ->excludes(http_pw_env);
    http->add_option("--http-cert", svc.http_cert, "HTTPS certificate file (with --http-key)");
    http->add_option("--http-key", svc.http_key, "HTTPS private key file");
    http->add_option("--http-max-per-address", svc.http_max_per_address,
                     "Open connections from one address; beyond it 503 except /healthz and /metrics (0: no cap, "
                     "e.g. behind a reverse proxy)")
        ->capture_default_str();
    return serve;
}

// serve's alert rules and sinks.
void define_alerts(CLI::App& serve, service_cli::settings& svc) {
    auto* alerts = serve.add_option_group("Alerts", "When a client (or the broker) goes away, tell someone, once");
    alerts->add_option("--alert-config", svc.alert_config, "A JSON file with these settings (keys after, flap_count, "
                                                           "flap_window, outage_percent, only, exclude, on_new, "
                                                           "on_removed, exec, exec_timeout, webhook, template, "
                                                           "cafile, headers, public_url); the command line wins");
    alerts->add_option("--alert-after", svc.alert_after, "A client is down after this long disconnected (default 1m)");
    alerts->add_option("--alert-flap-count", svc.alert_flap_count, "Disconnects within the flap window that make "
                                                                  "one flapping alert (default 5)");
    alerts->add_option("--alert-flap-window", svc.alert_flap_window, "The flap window (default 10m)");
    alerts->add_option("--alert-outage-percent", svc.alert_outage_percent, "One outage alert when more than this "
                                                                          "share of a scheme goes down at once "
                                                                          "(default 20)");
    alerts->add_option("--alert-only", svc.alert_only, "Only these names or globs (repeatable)");
    alerts->add_option("--alert-exclude", svc.alert_exclude, "Never these names or globs (repeatable)");
    alerts->add_option("--silence-every", svc.silence_every,
                       "A weekly maintenance window, repeatable: 'TARGET DAYS HH:MM-HH:MM REASON' in local time, e.g. "
                       "'group:garage Sun 02:00-04:00 backup' (its alerts are held, as by silence)");
    alerts->add_flag("--alert-on-new", svc.alert_on_new, "A client seen for the first time is an alert too");
    alerts->add_flag("--alert-on-removed", svc.alert_on_removed, "A removed (purged) client is an alert too");
    alerts->add_option("--alert-exec", svc.alert_exec, "Run CMD (by /bin/sh -c) with the alert's JSON on stdin and "
                                                       "in MQTT_PRESENCE_* variables");
    alerts->add_option("--alert-exec-timeout", svc.alert_exec_timeout, "Kill CMD after this long (default 10s)");
    alerts->add_option("--alert-webhook", svc.alert_webhook, "POST each alert to this http(s) URL (retried)");
    alerts->add_option("--alert-webhook-for", svc.alert_webhook_for,
                       "GROUP=URL, repeatable: also POST the alerts of a group's clients (and its outages) there");
    alerts->add_option("--alert-template", svc.alert_template, "The webhook's body, e.g. '{\"text\":\"{{title}}: "
                                                               "{{message}}\"}' (default: the alert's JSON; "
                                                               "docs/service.md lists the placeholders)");
    alerts->add_option("--alert-cafile", svc.alert_cafile, "CA file for an https webhook (default: the system's)");
    alerts->add_option("--alert-header", svc.alert_headers, "A header of each webhook POST, 'Name: value' "
                                                           "(repeatable); $VAR in the value from the environment");
    alerts->add_option("--public-url", svc.public_url, "The dashboard as people reach it "
                                                       "(https://presence.lan/): each alert links to its client");
}

// history and uptime read the history file only: no broker.
void define_history_and_uptime(CLI::App& app, service_cli::settings& svc, command_line& c) {
    const char* db_text = "History: a file (default $MQTT_PRESENCE_DB, else ~/.local/state/mqtt-presence/history.db) "
                          "or postgresql://USER@HOST/DB";
    auto* history = add_mode(app, c, mode::history, "history", "A client's transitions from the history, newest "
                                                               "first", history_footer);
    history->add_option("name", svc.client, "The client's name")->required();
    history->add_option("--db", svc.db, db_text);
    history->add_option("--since", svc.since, "How far back")->capture_default_str();
    auto* silence = add_mode(app, c, mode::silence, "silence", "Set, list or end a silence (a maintenance window) "
                                                               "in the running service", silence_footer);
    silence->add_option("target", svc.silence_target, "A client's name (or a glob), or group:NAME");
    silence->add_option("--for", svc.silence_for, "How long")->capture_default_str();
    silence->add_option("--reason", svc.silence_reason, "Why (shown with the silence and in the log)");
    silence->add_flag("--list", svc.silence_list, "The silences running now")->configurable(false);
    silence->add_option("--end", svc.silence_end, "End the silence of this id")->configurable(false);
    silence->add_option("--server", svc.server, "The service's dashboard URL")->capture_default_str();
    silence->add_option("--server-cafile", svc.server_cafile, "CA file for an https:// --server");
    silence->add_option("--http-user", svc.http_user, "Basic auth user");
    silence->add_option("--http-pw-env", svc.http_pw_env, "The environment variable holding its password");
    auto* uptime = add_mode(app, c, mode::uptime, "uptime", "Uptime, disconnects, flaps and outages per client",
                            uptime_footer);
    uptime->add_option("--db", svc.db, db_text);
    uptime->add_option("--window", svc.window, "The window (24h, 7d, 30d)")->capture_default_str();
    uptime->add_option("--flap-interval", svc.flap_interval, "A reconnect this soon after a disconnect is a flap")
        ->capture_default_str();
    uptime->add_option("--by", svc.by, "client, or group (the --group rules, with a client's metadata from the "
                                       "history)")
        ->check(CLI::IsMember({"client", "group"}))->capture_default_str();
    uptime->add_option("--sort", svc.sort, "client, uptime (worst first), disconnects, flaps, outage")
        ->check(CLI::IsMember({"client", "uptime", "disconnects", "flaps", "outage"}))->capture_default_str();
}

// The subcommand on the command line, or null (watch by default).
const CLI::App* running(const CLI::App& app) {
    const auto parsed = app.get_subcommands();
    return parsed.empty() ? nullptr : parsed.front();
}

// The configuration file serves every mode: a key goes to the running subcommand's option, else to a shared one;
// another mode's key is simply not used. False drops the item; a key no mode has stays, to be refused as unknown,
// and so does one that no mode takes from a file.
bool route_config_item(const CLI::App& app, const command_line& c, CLI::ConfigItem& item) {
    if (!item.parents.empty() || item.name == "++" || item.name == "--") return true;
    const std::string name = "--" + item.name;
    // Another mode takes this key from the file: `sort` is uptime's there, never watch's.
    const auto another_takes = [&c, &name](const CLI::App* except) {
        return std::any_of(c.modes.begin(), c.modes.end(), [&](const auto& m) {
            const auto* opt = m.second != except ? m.second->get_option_no_throw(name) : nullptr;
            return opt != nullptr && opt->get_configurable();
        });
    };
    const auto* sub = running(app);
    if (const auto* opt = sub != nullptr ? sub->get_option_no_throw(name) : nullptr) {
        if (!opt->get_configurable() && another_takes(sub)) return false;
        item.parents = {sub->get_name()};
        return true;
    }
    const bool watch_own = c.watch_group->get_option_no_throw(name) != nullptr;
    if (const auto* top = app.get_option_no_throw(name); top != nullptr && (!watch_own || sub == nullptr))
        return top->get_configurable() || !another_takes(nullptr);
    if (another_takes(nullptr)) return false;  // another mode's: not used by this one
    for (const auto& [m, other] : c.modes) {
        if (other->get_option_no_throw(name) == nullptr) continue;
        item.parents = {other->get_name()};  // no mode takes it from a file: refused as such
        return true;
    }
    return !watch_own;
}

// The subcommands that have option `name`, as "once or purge".
std::string modes_with(const command_line& c, const std::string& name) {
    std::vector<std::string> names;
    for (const auto& [m, sub] : c.modes)
        if (sub->get_option_no_throw(name) != nullptr) names.push_back(sub->get_name());
    std::string text;
    for (std::size_t i = 0; i < names.size(); ++i)
        text += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
    return text;
}

// Options of the top level's watch group given with another subcommand that does not take them.
void refuse_watch_options_elsewhere(const CLI::App& app, const command_line& c) {
    const auto* sub = running(app);
    if (sub == nullptr) return;
    for (const auto* opt : c.watch_group->get_options())
        if (opt->count() > 0 && sub->get_option_no_throw(opt->get_name()) == nullptr)
            throw error(opt->get_name() + " goes with " + modes_with(c, opt->get_name()));
}

// --format where a mode cannot honour it: refused with the reason, never ignored.
void check_format(const settings& s, bool format_given) {
    const bool stream = s.run == mode::events || (s.run == mode::watch && isatty(STDOUT_FILENO) == 0);
    if (stream && (s.format == "csv" || s.format == "prometheus"))
        throw error("--format " + s.format + " is for snapshots (once, purge); a stream of changes is table "
                    "(human lines), json or ndjson");
    if (s.run == mode::purge && s.format == "prometheus") throw error("--format prometheus is not for a purge");
    if (s.run == mode::silence && s.format != "table" && s.format != "json")
        throw error("silence writes a table or json");
    if (s.run == mode::silence && s.service.silence_list + !s.service.silence_end.empty() +
                                          !s.service.silence_target.empty() != 1)
        throw error("silence takes one of: a target (NAME or group:NAME), --list, --end ID");
    if (s.run == mode::silence && !s.service.silence_target.empty() && s.service.silence_reason.empty())
        throw error("silence needs --reason: who reads the alerts later asks why");
    if ((s.run == mode::history || s.run == mode::uptime) && s.format == "prometheus")
        throw error("--format prometheus is for snapshots of the live table (once)");
    if (s.run == mode::serve && format_given)
        throw error("serve prints no table: it records every change in --db (read it with history and uptime)");
    if (s.run == mode::purge && s.older_than_text.empty() && !s.all_disconnected)
        throw error("purge needs --older-than DUR (--purge-older-than) or --all-disconnected");
}

// --broker NAME=URI: a name for the broker, carried by its rows; repeated (watch, once, events), several brokers in one
// view, each named. `uris` keeps the first URI only (opts.broker's); s.brokers gets them all when several.
void name_brokers(settings& s, std::vector<std::string>& uris) {
    std::vector<named_broker> named;
    for (const auto& text : uris) {
        const auto eq = text.find('=');
        const auto scheme = text.find("://");
        if (eq == std::string::npos || (scheme != std::string::npos && eq > scheme)) named.push_back({"", text, {}});
        else named.push_back({text.substr(0, eq), text.substr(eq + 1), {}});
    }
    for (const auto& b : named) {
        if (b.name.empty() && named.size() > 1)
            throw error("several --broker: name each one, e.g. --broker site-a=tcp://h1:1883 --broker "
                        "site-b=tcp://h2:1883");
        mqtt_presence::check_broker_name(b.name);
        for (const auto& other : named)
            if (&other != &b && other.name == b.name)
                throw error("--broker " + b.name + " is named twice: each broker needs a name of its own");
    }
    if (named.size() > 1 && s.run != mode::once && s.run != mode::events && s.run != mode::watch)
        throw error("several --broker are read together by watch, once and events; purge and serve take one");
    if (named.empty()) return;
    s.opts.broker_name = named.front().name;
    uris = {named.front().uri};
    if (named.size() > 1) s.brokers = std::move(named);
}

// One key of a [brokers.NAME] section into that broker's options: its own login and TLS.
void set_broker_key(mqtt_presence::broker_options& b, const std::string& name, const std::string& key,
                    const std::string& value) {
    const std::string where = "[brokers." + name + "] " + key;
    const auto number = [&where, &value](int low, int high) {
        try {
            std::size_t used = 0;
            const int n = std::stoi(value, &used);
            if (used == value.size() && n >= low && n <= high) return n;
        } catch (const std::exception&) {  // said below
        }
        throw error(where + " = " + value + ": give a number from " + std::to_string(low) + " to " +
                    std::to_string(high));
    };
    if (key == "username") b.username = value;
    else if (key == "pw-file") b.password = cli::read_secret_file(where, value);
    else if (key == "pw-env") {
        const char* pw = std::getenv(value.c_str());
        if (pw == nullptr) throw error(where + " = " + value + ": that environment variable is not set");
        b.password = pw;
    } else if (key == "cafile") b.cafile = value;
    else if (key == "cert") b.certfile = value;
    else if (key == "key") b.keyfile = value;
    else if (key == "client-id") b.client_id = value;
    else if (key == "mqtt-version") b.mqtt_version = number(3, 5) == 5 ? 5 : 4;
    else if (key == "keepalive") b.keepalive = std::chrono::seconds(number(1, 65535));
    else if (key == "insecure" && (value == "true" || value == "false")) b.insecure = value == "true";
    else if (key == "insecure") throw error(where + " = " + value + ": true or false");
    else
        throw error(where + ": not a broker's own key (username, pw-file, pw-env, cafile, cert, key, insecure, "
                            "client-id, mqtt-version, keepalive)");
}

// Each of several brokers' options: the shared ones with its URI (and its name after a shared --client-id: one id
// per connection), then its [brokers.NAME] section of the configuration file. One named broker takes its section
// into the shared options. A section that names no --broker is refused: a login meant for a broker never read.
void apply_broker_sections(settings& s, const cli::broker_sections& sections) {
    for (auto& b : s.brokers) {
        b.broker = s.opts.broker;
        b.broker.server_uri = b.uri;
        if (!b.broker.client_id.empty()) b.broker.client_id += "-" + b.name;
    }
    for (const auto& [name, keys] : sections) {
        mqtt_presence::broker_options* target = s.brokers.empty() && !name.empty() && s.opts.broker_name == name
                                                    ? &s.opts.broker
                                                    : nullptr;
        for (auto& b : s.brokers)
            if (b.name == name) target = &b.broker;
        if (target == nullptr)
            throw error("[brokers." + name + "] in the configuration file: no --broker is named " + name +
                        " (--broker " + name + "=URI)");
        for (const auto& [key, value] : keys) set_broker_key(*target, name, key, value);
    }
    for (const auto& b : s.brokers) {
        try {
            b.broker.validate();
        } catch (const error& e) {
            throw error("--broker " + b.name + ": " + e.what());
        }
    }
}

// After parsing: the mode, the broker, the topics, the durations; then the checks. Throws mqtt_presence::error.
void finish(const CLI::App& app, settings& s, command_line& c) {
    if (const auto* sub = running(app))
        for (const auto& [m, candidate] : c.modes)
            if (candidate == sub) s.run = m;
    if (s.run == mode::events && !c.format_given) s.format = "ndjson";
    name_brokers(s, c.broker.uris);
    cli::finish_broker_options(s.opts.broker, c.broker);
    apply_broker_sections(s, *c.broker_sections);
    for (const auto& name : c.conventions)
        for (auto& templ : mqtt_presence::topic_scheme::convention_templates(name)) c.topics.push_back(std::move(templ));
    if (!c.topics.empty()) s.opts.topics = c.topics;
    const bool no_activity = std::find(c.activity.begin(), c.activity.end(), "none") != c.activity.end();
    if (!no_activity) {
        // A preset's readings speak of its own clients: Tasmota's tele/X/STATE of tele/X/LWT, never of an X of
        // another convention.
        for (const auto& name : c.conventions) {
            std::vector<std::string> presets{name};
            if (name == "all") {
                presets.clear();
                for (const auto& [preset, templ] : mqtt_presence::topic_scheme::presets()) presets.push_back(preset);
            }
            for (const auto& preset : presets)
                for (auto& templ : mqtt_presence::topic_scheme::convention_activity(preset)) {
                    auto& own = s.opts.activity_statuses[templ];
                    for (auto& status : mqtt_presence::topic_scheme::convention_templates(preset)) own.push_back(status);
                    c.activity.push_back(templ);
                }
        }
        for (const auto& templ : c.activity)  // once each: two conventions may share one
            if (std::find(s.opts.activity.begin(), s.opts.activity.end(), templ) == s.opts.activity.end())
                s.opts.activity.push_back(templ);
    }
    for (const auto& text : c.groups) {
        if (text.find('=') == std::string::npos) s.opts.only_groups.push_back(text);
        else s.opts.groups.push_back(mqtt_presence::group_rule::parse(text));
    }
    for (const auto& text : c.expect) s.opts.expect.push_back(mqtt_presence::expectation::parse(text));
    s.timeout = mqtt_presence::parse_duration(s.timeout_text);
    if (!s.older_than_text.empty()) s.older_than = mqtt_presence::parse_duration(s.older_than_text);
    s.required = split(c.require_text);
#ifdef MQTT_PRESENCE_HAS_SPARKPLUG
    s.opts.sparkplug_reader = mqtt_presence::sparkplug::read_node_payload;
#endif
    s.opts.named_clients = s.required;  // asked for by their exact topics: right even where wildcards get no retained
    s.service.format = s.format;
    s.service.groups = s.opts.groups;
    if (s.run == mode::uptime && s.service.by == "group" && s.opts.groups.empty())
        throw error("uptime --by group needs groups: --group NAME=GLOB, or group = [...] in the configuration file");
    for (auto* o : {&s.service.notary, &s.service.ha_prefix}) {  // `notary = true` in the configuration file
        if (*o == "true") o->emplace();
        else if (*o == "false") o->reset();
    }
    for (const auto* d : {&s.service.keep, &s.service.since, &s.service.window, &s.service.flap_interval})
        (void)mqtt_presence::parse_duration(*d);
    if (mqtt_presence::history_location_has_password(c.db_given))
        throw error("--db: a password on the command line can be read by every user of this machine; give it in "
                    "PGPASSWORD, a PGPASSFILE (~/.pgpass) or the configuration file (db = \"postgresql://...\")");
    cli::refuse_empty_values(app);
    refuse_watch_options_elsewhere(app, c);
    check_format(s, c.format_given);
    s.opts.validate();
}

// The flags that chose a mode before subcommands existed: each becomes its subcommand in front (the purge flags are
// purge's options too, so they stay). Two that choose different modes exclude each other.
std::vector<std::string> with_old_flags_as_subcommands(int argc, char** argv) {
    struct old_flag {
        const char* flag;
        const char* subcommand;
        bool kept;
    };
    static const old_flag old_flags[] = {{"--once", "once", false},
                                         {"--events", "events", false},
                                         {"--purge-older-than", "purge", true},
                                         {"--purge-all-disconnected", "purge", true}};
    std::vector<std::string> args(argv + 1, argv + argc);
    const old_flag* chosen = nullptr;
    std::vector<std::string> kept;
    for (const auto& arg : args) {
        const auto name = arg.substr(0, arg.find('='));
        const auto* flag = std::find_if(std::begin(old_flags), std::end(old_flags),
                                        [&name](const old_flag& f) { return name == f.flag; });
        if (flag != std::end(old_flags)) {
            if (chosen != nullptr && std::string(chosen->subcommand) != flag->subcommand)
                throw error(std::string(chosen->flag) + " excludes " + flag->flag);
            chosen = flag;
            if (!flag->kept) continue;
        }
        kept.push_back(arg);
    }
    if (chosen != nullptr && std::find(kept.begin(), kept.end(), chosen->subcommand) == kept.end())
        kept.insert(kept.begin(), chosen->subcommand);
    return kept;
}

// CLI11's "not expected" for a word or option another subcommand knows: which subcommand it goes with, or the
// subcommand meant. Empty when there is nothing better to say than CLI11's own message.
std::string misplaced_text(const CLI::App& app, const command_line& c) {
    const auto extras = app.remaining(true);
    if (extras.empty()) return {};
    const auto& first = extras.front();
    if (first.rfind("--", 0) == 0) {
        const auto name = first.substr(0, first.find('='));
        const auto modes = modes_with(c, name);
        if (modes.empty()) return {};
        return name + " goes with " + modes + " (see " + tool + " " + modes.substr(0, modes.find_first_of(" ,")) +
               " --help)";
    }
    if (first.front() == '-' || running(app) != nullptr) return {};
    const auto near = nearest_subcommand(first);
    if (near.empty()) return {};
    return "no subcommand " + first + "; did you mean " + near + "? (see --help)";
}

// Builds the whole command line: the shared options, the subcommands, the configuration file.
void define(CLI::App& app, settings& s, command_line& c) {
    app.set_help_flag("--help", "Print this help message and exit");
    app.formatter(std::make_shared<cli::help_formatter>());  // before the groups and subcommands: they copy it
    app.footer(top_footer);
    app.require_subcommand(0, 1);
    define_shared_options(app, s, c);
    define_watch_once_events_purge(app, s, c);
    define_alerts(*define_serve(app, s.service, c), s.service);
    define_history_and_uptime(app, s.service, c);
    cli::add_version_and_config(
        app, "scanner",
        [&app, &c, &s] {
            c.format_given = app.count("--format") > 0;
            c.format_noted = true;
            c.db_given = s.service.db;
        },
        [&app, &c](CLI::ConfigItem& item) { return route_config_item(app, c, item); }, c.broker_sections);
}

}  // namespace

std::string nearest_subcommand(const std::string& word) {
    // Levenshtein distance, row by row; a subcommand within two edits (and not the whole word) is near.
    const auto distance = [](const std::string& a, const std::string& b) {
        std::vector<std::size_t> row(b.size() + 1);
        for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
        for (std::size_t i = 1; i <= a.size(); ++i) {
            std::size_t diagonal = row[0];
            row[0] = i;
            for (std::size_t j = 1; j <= b.size(); ++j) {
                const auto above = row[j];
                row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
                diagonal = above;
            }
        }
        return row[b.size()];
    };
    std::string best;
    std::size_t best_distance = 3;
    for (const std::string name : {"watch", "once", "events", "purge", "serve", "history", "uptime", "silence"}) {
        if (word.size() >= 2 && name.rfind(word, 0) == 0) return name;  // the start of one
        const auto d = distance(word, name);
        if (d < best_distance && d < name.size()) {
            best = name;
            best_distance = d;
        }
    }
    return best;
}

std::optional<int> parse(int argc, char** argv, settings& s) {
    CLI::App app{"Shows which MQTT clients are connected, since when, and which died, from their retained status "
                 "topics (this project's sensors, Home Assistant/Tasmota online/offline, Homie $state, "
                 "Sparkplug STATE, mqtt-smarthome 0/1/2).",
                 tool};
    command_line c;
    define(app, s, c);
    try {
        auto args = with_old_flags_as_subcommands(argc, argv);
        std::reverse(args.begin(), args.end());  // CLI11 takes a vector last argument first
        app.parse(args);
        if (!c.format_noted) {  // no configuration file was read
            c.format_given = app.count("--format") > 0;
            c.db_given = s.service.db;
        }
        finish(app, s, c);
    } catch (const CLI::ConfigError& e) {
        std::cerr << tool << ": " << cli::config_error_text(app, e) << "\n";
        return exit_code::usage;
    } catch (const CLI::ExtrasError& e) {
        const auto text = misplaced_text(app, c);
        if (text.empty()) return app.exit(e) == 0 ? exit_code::ok : exit_code::usage;
        std::cerr << tool << ": " << text << "\n";
        return exit_code::usage;
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? exit_code::ok : exit_code::usage;
    } catch (const error& e) {
        std::cerr << tool << ": " << e.what() << "\n(see --help)\n";
        return exit_code::usage;
    }
    return std::nullopt;
}

}  // namespace scanner_cli
