// mqtt-presence-scanner: the table of MQTT clients and their connection status.
// Modes (subcommands; the old flags --once, --events, --purge-... still work): watch (default), once, events, purge,
// and the service's: serve, history, uptime (scanner_service.cpp).
// Exit codes: 0 ok, 1 runtime failure, 2 bad options, 3 a --require'd client is not connected,
//             4 broker unreachable (or lost during once), 5 once: sync incomplete, unverified or partial,
//             6 serve: in use (the history, the port or the notary's template is held by another instance).
#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/scanner.hpp>
#ifdef MQTT_PRESENCE_HAS_SPARKPLUG
#include <mqtt_presence/sparkplug/node_payload.hpp>
#endif

#include <CLI/CLI.hpp>

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <thread>
#include <utility>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

#include "cli_options.hpp"
#include "exit_codes.hpp"
#include "help_formatter.hpp"
#include "scanner_service.hpp"

using namespace mqtt_presence;

namespace {

std::atomic<bool> interrupted{false};
void on_signal(int) { interrupted = true; }
std::atomic<bool> reload{false};
void on_reload(int) { reload = true; }

enum class mode { watch, once, events, purge, serve, history, uptime };

// Everything the command line says, parsed and checked.
struct settings {
    scanner_options opts;
    mode run = mode::watch;
    std::string format = "table";
    bool no_color = false;
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

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

// The rows (all of them, or those given), counts, stats and the scanner's own state.
scan_result result_of(const scanner& scan, std::optional<std::vector<client_status>> rows = std::nullopt) {
    scan_result r;
    r.clients = rows ? std::move(*rows) : scan.snapshot();
    r.counts = scan.counts();
    r.stats = scan.stats();
    r.scanner = scan.status();
    return r;
}

snapshot_format machine_format(const std::string& format) {
    if (format == "ndjson") return snapshot_format::ndjson;
    if (format == "csv") return snapshot_format::csv;
    if (format == "prometheus") return snapshot_format::prometheus;
    return snapshot_format::json;
}

// --require: each named client must be connected and not stale. A name under several topic schemes is several
// clients: each of them must be. Rows are shown to it one at a time (a streamed snapshot keeps none).
class required_clients {
public:
    explicit required_clients(std::vector<std::string> names) : names_(std::move(names)), seen_(names_.size()) {}

    void see(const client_status& c) {
        for (std::size_t i = 0; i < names_.size(); ++i) {
            if (c.client != names_[i]) continue;
            seen_[i] = true;
            if (c.status != state::connected || c.stale || c.unconfirmed)
                problems_ += "mqtt-presence-scanner: required client " + terminal_safe(c.client) + " is " +
                             (c.stale         ? std::string("stale")
                              : c.unconfirmed ? std::string("unconfirmed: its last word predates the broker's "
                                                            "restart, and a will is lost if it died meanwhile")
                                              : std::string(to_string(c.status))) +
                             " (" + terminal_safe(c.topic) + ")\n";
        }
    }

    // Exit code 3 (and a line on stderr for each) when one is missing, not connected, or stale.
    int report() const {
        std::string text = problems_;
        for (std::size_t i = 0; i < names_.size(); ++i)
            if (!seen_[i])
                text += "mqtt-presence-scanner: required client " + terminal_safe(names_[i]) +
                        " is unknown (no status read)\n";
        std::cerr << text;
        return text.empty() ? exit_code::ok : exit_code::not_connected;
    }

private:
    std::vector<std::string> names_;
    std::vector<bool> seen_;
    std::string problems_;
};

// The initial sync, with a progress line when it takes a while and stderr is a terminal. True once it ended.
bool sync(scanner& scan, std::chrono::milliseconds timeout) {
    const bool err_tty = isatty(STDERR_FILENO) != 0;
    const auto started = std::chrono::steady_clock::now();
    bool synced = false;
    while (!interrupted) {
        synced = scan.wait_synced(std::chrono::milliseconds(200));
        const auto waited = std::chrono::steady_clock::now() - started;
        if (synced || waited >= timeout) break;
        if (err_tty && waited > std::chrono::seconds(1))
            std::cerr << "\rsyncing: " << scan.stats().messages << " statuses read" << std::flush;
    }
    if (err_tty && std::chrono::steady_clock::now() - started > std::chrono::seconds(1)) std::cerr << "\r\x1b[K";
    return synced;
}

// once: a snapshot that is complete or says it is not. The machine formats stream straight from the table (a
// million rows need no copy of it); the human table needs every row first for its column widths.
// Rows whose retained heartbeat is overdue by the sender's own clock are judged on ours (a clock behind is not a
// death): the snapshot waits until each is heard live, or goes stale after 1.5 of its intervals.
void wait_for_live_beats(scanner& scan) {
    const auto waiting = scan.counts().awaiting;
    if (waiting == 0) return;
    std::cerr << "mqtt-presence-scanner: " << waiting << " client(s) last beat longer ago than their heartbeat by "
              << "their own clock; waiting for a live beat (1.5 intervals at most)\n";
    const auto until = std::chrono::steady_clock::now() + std::chrono::minutes(10);  // the table decides sooner
    while (scan.counts().awaiting > 0 && !interrupted && std::chrono::steady_clock::now() < until) usleep(50'000);
}

// Within 30 s of a broker start, a required will-only client may not have re-announced yet, and the start itself is
// known to within a sys_interval (10 s) until a live uptime comes: the snapshot waits while such a row is
// unconfirmed, or its last word lies that close to the start, until the 30 s have passed. Then an unconfirmed row is
// not connected. (A retained plain "1" has no time: nothing to wait for.)
void wait_for_confirmations(scanner& scan, const std::vector<std::string>& required) {
    constexpr auto grace = std::chrono::seconds(30);
    constexpr auto sys_interval = mosquitto_sys_interval;
    if (required.empty() || !scan.status().broker_started) return;
    const auto unsure = [&scan, &required, sys_interval](time_point started, bool exact) {
        for (const auto& name : required) {
            const auto r = scan.find(name);
            if (r && r->status == state::connected && r->will_only() &&
                (r->unconfirmed || (!exact && r->last_seen && *r->last_seen <= started + sys_interval)))
                return true;
        }
        return false;
    };
    bool said = false;
    for (;;) {
        // The start may be taken a sys_interval early (from a retained uptime): the wait is that much longer, so a
        // live uptime comes and says it exactly before the grace ends.
        const auto st = scan.status();
        const auto started = *st.broker_started;
        const auto until = started + grace + (st.broker_started_exact ? std::chrono::seconds(0) : sys_interval);
        if (interrupted || clock::now() >= until || !unsure(started, st.broker_started_exact)) return;
        if (!said)
            std::cerr << "mqtt-presence-scanner: the broker started at " << format_iso8601(started).substr(11, 8)
                      << " UTC (within a sys_interval); waiting for required clients to speak since, 30 s at most\n";
        said = true;
        usleep(50'000);
    }
}

// The table's $SYS line is for a person at a terminal: mosquitto's retained client count predates this connection
// (mosquitto renews it every sys_interval, when it changed), so wait for the next one, which counts this scanner, a
// sys_interval and a second at most. Piped or in a machine format, the sample is said to predate the connection.
void wait_for_fresh_broker_count(scanner& scan) {
    constexpr auto sys_interval = mosquitto_sys_interval;
    const auto st = scan.status();
    if (!st.broker_clients || st.broker_clients_live) return;
    std::cerr << "mqtt-presence-scanner: waiting up to " << (sys_interval + std::chrono::seconds(1)).count()
              << " s for the broker's next client count ($SYS; the one it kept predates this connection); Ctrl-C "
                 "prints the table now\n";
    const auto until = std::chrono::steady_clock::now() + sys_interval + std::chrono::seconds(1);
    while (!interrupted && !scan.status().broker_clients_live && std::chrono::steady_clock::now() < until)
        usleep(50'000);
}

// Rows (a subset of the table) as once prints them: the table, or a machine format with their own counts.
void print_rows(const scanner& scan, const settings& s, std::vector<client_status> rows, const scanner_status& st) {
    scan_result r = result_of(scan, std::move(rows));
    r.counts = {};
    for (const auto& c : r.clients) r.counts.tally(c.status, c.stale, c.awaiting_beat);
    r.scanner = st;
    if (s.format == "table") std::cout << render_table(r, clock::now(), isatty(STDOUT_FILENO) != 0 && !s.no_color);
    else std::cout << render_snapshot(r, machine_format(s.format));
}

int run_once(scanner& scan, const settings& s) {
    const bool synced = sync(scan, s.timeout);
    if (synced) wait_for_live_beats(scan);
    if (synced) wait_for_confirmations(scan, s.required);
    if (synced && s.format == "table" && isatty(STDOUT_FILENO) != 0) wait_for_fresh_broker_count(scan);
    const auto st = scan.status();
    int rc = 0;
    if (st.sync_tail_refused)
        std::cerr << "mqtt-presence-scanner: warning: the broker refused the scanner's publish to its sync tail (an "
                     "ACL? let the scanner write mqtt-presence-sync/#); the sync ended with its marker\n";
    if (!st.connected) {
        std::cerr << "mqtt-presence-scanner: lost the connection to " << s.opts.broker.server_uri
                  << " during the sync; no table printed\n";
        rc = exit_code::unreachable;
    } else if (!synced) {
        std::cerr << "mqtt-presence-scanner: sync not complete after " << s.timeout_text << " ("
                  << scan.stats().messages << " statuses read); the table would be partial (a longer --timeout for "
                  << "a large fleet; a broker that drops messages, e.g. mosquitto below its max_queued_messages, "
                  << "never completes it)\n";
        rc = exit_code::incomplete;
    } else if (st.sync == sync_state::partial) {
        std::cerr << "mqtt-presence-scanner: the table is partial: no retained status came through the wildcard "
                     "subscription and the sync tail never came back: this broker delivers no retained message to a "
                     "wildcard subscription (RabbitMQ is one), or it refused the scanner's publish to its sync tail "
                     "(an ACL: let it write mqtt-presence-sync/#); the table holds only the clients heard live"
                  << (s.required.empty() ? "" : " and those named with --require (asked for by their topics)")
                  << ". For the whole table run `mqtt-presence-scanner serve`, whose history keeps it across "
                     "restarts, or name the clients you need: once --require NAME[,NAME...]\n";
        // The named clients were each asked for by their topics: --require's answer is true.
        rc = s.required.empty() ? exit_code::incomplete : exit_code::ok;
    } else if (st.sync != sync_state::complete) {
        std::cerr << "mqtt-presence-scanner: the sync is not verified: "
                  << (st.broker_dropped > 0
                          ? "the broker reports " + std::to_string(st.broker_dropped) + " dropped messages"
                          : std::string("the sync marker did not come back"))
                  << "; the broker may have dropped statuses (mosquitto: raise max_queued_messages, or set it to 0 "
                     "with max_queued_bytes 0, above the fleet size); the table may be partial\n";
        rc = exit_code::incomplete;
    }
    required_clients check(s.required);
    const bool partial = st.sync == sync_state::partial;
    if (rc == 0 && partial && !s.allow_partial) {
        // --require's answer: the named clients (each asked for by its topic) in the format asked for; never the
        // rest of a partial table.
        std::vector<client_status> named;
        scan.for_each_sorted([&](const client_status& c) {
            check.see(c);
            if (std::find(s.required.begin(), s.required.end(), c.client) != s.required.end()) named.push_back(c);
        });
        print_rows(scan, s, std::move(named), st);
    } else if (rc == 0 || s.allow_partial) {
        if (s.format == "table") {
            const auto r = result_of(scan);
            for (const auto& c : r.clients) check.see(c);
            std::cout << render_table(r, clock::now(), isatty(STDOUT_FILENO) != 0 && !s.no_color);
        } else {
            snapshot_writer writer(std::cout, machine_format(s.format));
            const auto [counts, stats] = scan.for_each_sorted([&](const client_status& c) {
                writer.row(c);
                check.see(c);
            });
            writer.finish(counts, stats, &st);
        }
    }
    if (rc == 0) rc = check.report();  // a partial table cannot say a client is missing: exit 5, not 3
    const auto& schemes = scan.schemes();
    if (std::any_of(schemes.begin(), schemes.end(), [](const topic_scheme& t) { return t.sparkplug_nodes(); }))
        std::cerr << "mqtt-presence-scanner: note: Sparkplug edge nodes' NBIRTH is not retained, so a snapshot "
                         "shows only the nodes whose birth or death it heard while it ran; watch or serve keep "
                         "them\n";
    // The output is out and the connection closed cleanly: leave without freeing a large table and without Paho's
    // destructor (100-200 ms). A scanner has no will, so nothing is lost.
    std::cout.flush();
    std::cerr.flush();
    scan.stop();
    std::_Exit(rc);
}

// purge: clear retained statuses that say disconnected (by age, or all); report only what the broker cleared.
int run_purge(scanner& scan, const settings& s) {
    sync(scan, s.timeout);
    const auto cutoff = clock::now() - s.older_than;
    auto purged = scan.purge(
        [&](const client_status& c) {
            if (c.status == state::connected) return false;
            if (s.all_disconnected) return true;
            // Only a time stamp says how old a status is; plain payloads need --all-disconnected.
            return c.since && *c.since < cutoff;
        },
        s.dry_run);
    for (const auto& row : purged.refused)
        std::cerr << "mqtt-presence-scanner: not cleared (the broker refused the write, or the client published "
                     "again): " << terminal_safe(scan.topic_of(row)) << "\n";
    const int rc = purged.refused.empty() ? exit_code::ok : exit_code::failure;
    const auto r = result_of(scan, std::move(purged.cleared));
    if (s.format != "table") {
        std::cout << render_snapshot(r, machine_format(s.format));
        return rc;
    }
    for (const auto& c : r.clients)
        std::cout << (s.dry_run ? "would clear " : "cleared ") << terminal_safe(c.topic) << "\n";
    std::cerr << (s.dry_run ? "dry run: " : "") << r.clients.size() << " retained status(es) "
              << (s.dry_run ? "would be cleared" : "cleared")
              << (purged.refused.empty() ? "" : ", " + std::to_string(purged.refused.size()) + " not cleared") << "\n";
    return rc;
}

// How many table rows fit the terminal beside the title, header, "more", counts and broker's count lines and the
// cursor line. More would scroll the title, and with it the scanner's own state, off the screen.
std::size_t visible_rows() {
    winsize ws{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0) return SIZE_MAX;
    return ws.ws_row > 7 ? std::size_t{ws.ws_row} - 6 : 1;
}

// While the live table is drawn the terminal does not wrap long lines (DECAWM off): a row wider than the terminal is
// cut at its edge instead of taking two lines, so a frame is as many lines as it has rows. Restored on the way out.
class no_line_wrap {
public:
    no_line_wrap() { std::cout << "\x1b[?7l" << std::flush; }
    ~no_line_wrap() { std::cout << "\x1b[?7h" << std::flush; }
    no_line_wrap(const no_line_wrap&) = delete;
    no_line_wrap& operator=(const no_line_wrap&) = delete;
};

// Wakes the live table when a change arrives (the delivery thread marks it).
class redraw_signal {
public:
    void mark() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            dirty_ = true;
        }
        cv_.notify_one();
    }
    /// Waits until marked or `timeout`; true (and unmarks) if marked.
    bool wait(std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait_for(lock, timeout, [this] { return dirty_; });
        return std::exchange(dirty_, false);
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    bool dirty_ = true;
};

// watch on a terminal: the live table, redrawn as soon as a change arrives (at most once every 20 ms, so a storm of
// changes costs 50 redraws a second) and every second, as the ages move on. Only a screenful of rows is copied out of
// the table, so a million clients cost little to watch.

int run_live_table(scanner& scan, const settings& s, redraw_signal& changed, std::mutex& out_mutex) {
    constexpr auto min_gap = std::chrono::milliseconds(20);
    sync(scan, s.timeout);
    std::string filters;
    for (const auto& scheme : scan.schemes())
        filters += (filters.empty() ? "" : " ") + scheme.filter() + (scheme.filters().size() > 1 ? "…" : "");
    auto drawn = std::chrono::steady_clock::time_point{};
    const no_line_wrap unwrapped;
    while (!interrupted) {
        // Wakes for a change, for the one-second tick, and at least every 200 ms to see a signal.
        const auto tick = std::chrono::duration_cast<std::chrono::milliseconds>(
            drawn + std::chrono::seconds(1) - std::chrono::steady_clock::now());
        const bool marked = changed.wait(std::clamp(tick, std::chrono::milliseconds(0), std::chrono::milliseconds(200)));
        const auto since_drawn = std::chrono::steady_clock::now() - drawn;
        if (marked && since_drawn < min_gap) std::this_thread::sleep_for(min_gap - since_drawn);  // the rate limit
        const auto now = std::chrono::steady_clock::now();
        if (marked || now - drawn >= std::chrono::seconds(1)) {
            drawn = now;
            const auto text = render_table(result_of(scan, scan.snapshot(visible_rows())), clock::now(), !s.no_color);
            const auto st = scan.status();
            std::string note;
            if (!st.connected)  // the rows are what the scanner knew when it lost the broker
                note = std::string(s.no_color ? "" : "\x1b[1;31m") + "  DISCONNECTED" +
                       (st.since ? " since " + format_iso8601(*st.since).substr(11, 8) + " UTC" : "") +
                       ": rows as of then; reconnecting" + (s.no_color ? "" : "\x1b[0m");
            else if (st.no_news(clock::now()))  // cut, not yet declared lost
                note = std::string(s.no_color ? "" : "\x1b[1;33m") + "  NO NEWS from the broker for " +
                       std::to_string(std::chrono::duration_cast<std::chrono::seconds>(clock::now() - *st.last_heard)
                                          .count()) +
                       " s: rows as of " + format_iso8601(*st.last_heard).substr(11, 8) + " UTC" +
                       (s.no_color ? "" : "\x1b[0m");
            else if (st.sync == sync_state::syncing) note = "  (syncing)";
            else if (st.sync == sync_state::unverified) note = "  (sync not verified: rows may be missing)";
            else if (st.sync == sync_state::partial) note = "  (partial: this broker sends no retained status to a "
                                                           "wildcard; clients are shown as they are heard)";
            std::lock_guard<std::mutex> lock(out_mutex);
            std::cout << "\x1b[H\x1b[2J" << s.opts.broker.server_uri << "  " << filters << "  "
                      << format_iso8601(clock::now()).substr(11, 8) << " UTC" << note << "\n"
                      << text << std::flush;
        }
    }
    scan.stop();
    return 0;
}

// events (and watch when stdout is not a terminal): the changes stream out on the scanner's delivery thread; this
// thread only waits for a signal.
int run_stream(scanner& scan) {
    while (!interrupted) usleep(200'000);
    scan.stop();  // delivers what is queued
    return 0;
}

// Options that belong to some modes only. Given on the command line to another mode, they are an error; from the
// configuration file (which serves every mode), they are simply not used.
struct mode_rule {
    const char* option;
    std::vector<mode> modes;
    const char* says;
};
const std::vector<mode_rule>& mode_rules() {
    const std::vector<mode> once{mode::once}, purge{mode::purge}, serve{mode::serve}, history{mode::history},
        uptime{mode::uptime};
    static const std::vector<mode_rule> rules{
        {"--require", once, "once"},
        {"--allow-partial", once, "once"},
        {"--timeout", {mode::once, mode::purge, mode::watch}, "once or purge"},
        {"--dry-run", purge, "purge"},
        {"--db", {mode::serve, mode::history, mode::uptime, mode::once}, "serve, history, uptime or once"},
        {"--keep", serve, "serve"}, {"--notary", serve, "serve"}, {"--observer", serve, "serve"},
        {"--listen", serve, "serve"}, {"--ha-discovery", serve, "serve"},
        {"--ha-discovery-exclude", serve, "serve"}, {"--ha-discovery-remove", serve, "serve"},
        {"--alert-after", serve, "serve"},
        {"--alert-config", serve, "serve"}, {"--alert-flap-count", serve, "serve"},
        {"--alert-flap-window", serve, "serve"}, {"--alert-outage-percent", serve, "serve"},
        {"--alert-only", serve, "serve"}, {"--alert-exclude", serve, "serve"}, {"--alert-on-new", serve, "serve"},
        {"--alert-on-removed", serve, "serve"}, {"--alert-exec", serve, "serve"},
        {"--alert-exec-timeout", serve, "serve"}, {"--alert-webhook", serve, "serve"},
        {"--alert-template", serve, "serve"}, {"--alert-cafile", serve, "serve"},
        {"--alert-header", serve, "serve"}, {"--public-url", serve, "serve"}, {"--http-user", serve, "serve"},
        {"--http-pw-env", serve, "serve"}, {"--http-pw-file", serve, "serve"}, {"--http-cert", serve, "serve"},
        {"--http-key", serve, "serve"}, {"--http-max-per-address", serve, "serve"},
        {"--since", history, "history"}, {"--window", uptime, "uptime"}, {"--flap-interval", uptime, "uptime"},
        {"--sort", uptime, "uptime"}};
    return rules;
}

// The options of mode_rules() (and --format) that the command line itself gave.
using given_options = std::set<std::string>;
given_options given_on_command_line(const CLI::App& app) {
    given_options given;
    for (const auto& r : mode_rules())
        if (app.count(r.option) > 0) given.insert(r.option);
    if (app.count("--format") > 0) given.insert("--format");
    return given;
}

void check_modes(const given_options& given, const settings& s) {
    for (const auto& r : mode_rules()) {
        if (given.count(r.option) == 0) continue;
        if (std::find(r.modes.begin(), r.modes.end(), s.run) == r.modes.end())
            throw error(std::string(r.option) + " goes with " + r.says);
    }
    const bool stream = s.run == mode::events || (s.run == mode::watch && isatty(STDOUT_FILENO) == 0);
    if (stream && (s.format == "csv" || s.format == "prometheus"))
        throw error("--format " + s.format + " is for snapshots (once, purge); a stream of changes is table "
                    "(human lines), json or ndjson");
    if (s.run == mode::purge && s.format == "prometheus") throw error("--format prometheus is not for a purge");
    if ((s.run == mode::history || s.run == mode::uptime) && s.format == "prometheus")
        throw error("--format prometheus is for snapshots of the live table (once)");
    if (s.run == mode::serve && given.count("--format") > 0)
        throw error("serve prints no table: it records every change in --db (read it with history and uptime)");
    if (s.run == mode::purge && s.older_than_text.empty() && !s.all_disconnected)
        throw error("purge needs --older-than DUR (--purge-older-than) or --all-disconnected");
}

// What the command line gives besides settings, and the options that choose the mode.
struct command_line {
    cli::broker_flags broker;
    std::vector<std::string> topics, conventions;
    std::string require_text;
    CLI::App *once = nullptr, *events = nullptr, *purge = nullptr, *serve = nullptr, *history = nullptr,
             *uptime = nullptr;
    CLI::Option *once_flag = nullptr, *events_flag = nullptr, *older = nullptr, *all = nullptr;
    given_options given;  // what the command line itself gave (before the configuration file's values)
    bool given_noted = false;
};

// serve, history and uptime: their subcommands and their options.
void define_service_options(CLI::App& app, service_cli::settings& svc, command_line& c) {
    c.serve = app.add_subcommand("serve", "Keep the table and its history (--db) until SIGINT/SIGTERM")->fallthrough();
    c.history = app.add_subcommand("history", "A client's transitions from the history, newest first")->fallthrough();
    c.history->add_option("name", svc.client, "The client's name")->required();
    c.uptime = app.add_subcommand("uptime", "Uptime, disconnects, flaps and outages per client")->fallthrough();
    auto* service = app.add_option_group("serve, history and uptime");
    service->add_option("--db", svc.db, "History file (default $MQTT_PRESENCE_DB, else "
                                        "~/.local/state/mqtt-presence/history.db); once --db: since and "
                                        "last_seen as the history knows them");
    service->add_option("--keep", svc.keep, "serve: prune events older than DUR")->capture_default_str();
    service->add_option("--notary", svc.notary, "serve: publish a retained record per client on every transition "
                                                "(default template mqtt-presence/clients/{client})")
        ->expected(0, 1);
    service->add_option("--ha-discovery", svc.ha_prefix, "serve: every client as a Home Assistant connectivity "
                                                     "binary_sensor (MQTT discovery; default prefix homeassistant)")
        ->expected(0, 1);
    service->add_option("--ha-discovery-exclude", svc.ha_exclude, "serve: no entity for this convention's clients "
                                                                  "(Home Assistant knows them already: tasmota, "
                                                                  "zigbee2mqtt ...); repeatable");
    service->add_flag("--ha-discovery-remove", svc.ha_remove, "serve: clear every client's discovery config and "
                                                              "state under the prefix, then exit")
        ->configurable(false);
    service->add_option("--observer", svc.observer, "serve: who watches, in the history and the notary's records "
                                                    "(default HOST:DB-PATH)");
    service->add_option("--listen", svc.listen, "serve: the dashboard, API and /metrics on HOST:PORT (port 0: any "
                                                "free one; off: none)")->capture_default_str();
    service->add_option("--http-user", svc.http_user, "serve: Basic auth user for the dashboard");
    auto* http_pw_env = service->add_option("--http-pw-env", svc.http_pw_env,
                                            "serve: the environment variable holding its password");
    service->add_option("--http-pw-file", svc.http_pw_file, "serve: a file whose first line is its password")
        ->excludes(http_pw_env);
    service->add_option("--http-cert", svc.http_cert, "serve: HTTPS certificate file (with --http-key)");
    service->add_option("--http-key", svc.http_key, "serve: HTTPS private key file");
    service->add_option("--http-max-per-address", svc.http_max_per_address,
                        "serve: open connections from one address; beyond it 503 except /healthz and /metrics (0: "
                        "no cap, e.g. behind a reverse proxy)")
        ->capture_default_str();
    service->add_option("--since", svc.since, "history: how far back")->capture_default_str();
    service->add_option("--window", svc.window, "uptime: the window (24h, 7d, 30d)")->capture_default_str();
    service->add_option("--flap-interval", svc.flap_interval, "uptime: a reconnect this soon after a disconnect "
                                                              "is a flap")->capture_default_str();
    service->add_option("--sort", svc.sort, "uptime: client, uptime (worst first), disconnects, flaps, outage")
        ->check(CLI::IsMember({"client", "uptime", "disconnects", "flaps", "outage"}))->capture_default_str();
}

// serve's alert rules and sinks.
void define_alert_options(CLI::App& app, service_cli::settings& svc) {
    auto* alerts = app.add_option_group("serve: alerts", "When a client (or the broker) goes away, tell someone, once");
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
    alerts->add_flag("--alert-on-new", svc.alert_on_new, "A client seen for the first time is an alert too");
    alerts->add_flag("--alert-on-removed", svc.alert_on_removed, "A removed (purged) client is an alert too");
    alerts->add_option("--alert-exec", svc.alert_exec, "Run CMD (by /bin/sh -c) with the alert's JSON on stdin and "
                                                       "in MQTT_PRESENCE_* variables");
    alerts->add_option("--alert-exec-timeout", svc.alert_exec_timeout, "Kill CMD after this long (default 10s)");
    alerts->add_option("--alert-webhook", svc.alert_webhook, "POST each alert to this http(s) URL (retried)");
    alerts->add_option("--alert-template", svc.alert_template, "The webhook's body, e.g. '{\"text\":\"{{title}}: "
                                                               "{{message}}\"}' (default: the alert's JSON; "
                                                               "docs/service.md lists the placeholders)");
    alerts->add_option("--alert-cafile", svc.alert_cafile, "CA file for an https webhook (default: the system's)");
    alerts->add_option("--alert-header", svc.alert_headers, "A header of each webhook POST, 'Name: value' "
                                                           "(repeatable); $VAR in the value from the environment");
    alerts->add_option("--public-url", svc.public_url, "The dashboard as people reach it "
                                                       "(https://presence.lan/): each alert links to its client");
}

void define_options(CLI::App& app, settings& s, command_line& c) {
    // A scanner's keepalive bounds how long it can be cut off unawares (one PINGREQ per interval is the cost).
    c.broker.keepalive = 10;
    cli::add_broker_options(app, s.opts.broker, c.broker);
    auto* what = app.add_option_group("Statuses", "Which status topics to read");
    what->add_option("-t,--topic", c.topics, "Status topic template, repeatable (default sensors/connected/{client})");
    std::string presets;
    for (const auto& [name, templ] : topic_scheme::presets()) presets += (presets.empty() ? "" : ", ") + name;
    what->add_option("--convention", c.conventions, "Preset, repeatable: " + presets + "; or all (README lists " +
                                                   "their topics)");
    what->add_option("-q,--qos", s.opts.qos, "Subscription QoS (0: full re-sync on reconnect; see docs/tools.md for 1)")
        ->capture_default_str();
    auto* out = app.add_option_group("Output");
    out->add_option("-F,--format", s.format, "table, json, ndjson, csv, prometheus (csv and prometheus: snapshots)")
        ->check(CLI::IsMember({"table", "json", "ndjson", "csv", "prometheus"}))->capture_default_str();
    out->add_flag("--no-color", s.no_color, "No colours in the table");

    // Modes: a subcommand, or the flag that selected it before subcommands existed. Their options live on the
    // top level (subcommands fall through to it), so `once --require x` and `--once --require x` both work.
    c.once = app.add_subcommand("once", "Sync, print the table, exit")->fallthrough();
    c.events = app.add_subcommand("events", "Stream changes (NDJSON by default)")->fallthrough();
    c.purge = app.add_subcommand("purge", "Clear retained statuses that say disconnected")->fallthrough();
    app.add_subcommand("watch", "Live table on a terminal, changes as lines otherwise (default)")->fallthrough();
    auto* modes = app.add_option_group("Modes (old flags)");
    c.once_flag = modes->add_flag("--once", "Same as the once subcommand");
    c.events_flag = modes->add_flag("--events", "Same as the events subcommand");
    c.once_flag->excludes(c.events_flag);
    auto* mode_opts = app.add_option_group("once and purge");
    mode_opts->add_option("--require", c.require_text, "once: NAME[,NAME...] that must be connected (else exit 3)");
    mode_opts->add_option("--timeout", s.timeout_text, "Bound on the sync")->capture_default_str();
    mode_opts->add_flag("--allow-partial", s.allow_partial, "once: print the table even when the sync is not known "
                                                            "complete (still exit 5)");
    c.older = mode_opts->add_option("--older-than,--purge-older-than", s.older_than_text,
                                        "purge: statuses that say disconnected, time-stamped (a clean stop's ts) "
                                        "longer ago than DUR");
    c.all = mode_opts->add_flag("--all-disconnected,--purge-all-disconnected", s.all_disconnected,
                                    "purge: every disconnected or unreadable status, dated or not (plain 0, wills)");
    c.older->excludes(c.all);
    auto* dry_run = mode_opts->add_flag("--dry-run", s.dry_run, "purge: only list what would be cleared");
    for (auto* o : {c.once_flag, c.events_flag, c.older, c.all, dry_run}) o->configurable(false);  // they choose a mode
    define_service_options(app, s.service, c);
    define_alert_options(app, s.service);
}

// After parsing: the mode, the broker, the topics, the durations; then the checks. Throws mqtt_presence::error.
void finish_options(const CLI::App& app, settings& s, command_line& c) {
    if (c.once->parsed() || c.once_flag->count() > 0) s.run = mode::once;
    else if (c.events->parsed() || c.events_flag->count() > 0) s.run = mode::events;
    else if (c.purge->parsed() || c.older->count() > 0 || c.all->count() > 0) s.run = mode::purge;
    else if (c.serve->parsed()) s.run = mode::serve;
    else if (c.history->parsed()) s.run = mode::history;
    else if (c.uptime->parsed()) s.run = mode::uptime;
    if (s.run == mode::events && app.count("--format") == 0) s.format = "ndjson";
    cli::finish_broker_options(s.opts.broker, c.broker);
    for (const auto& name : c.conventions)
        for (auto& templ : topic_scheme::convention_templates(name)) c.topics.push_back(std::move(templ));
    if (!c.topics.empty()) s.opts.topics = c.topics;
    s.timeout = parse_duration(s.timeout_text);
    if (!s.older_than_text.empty()) s.older_than = parse_duration(s.older_than_text);
    s.required = split(c.require_text);
#ifdef MQTT_PRESENCE_HAS_SPARKPLUG
    s.opts.sparkplug_reader = sparkplug::read_node_payload;
#endif
    s.opts.named_clients = s.required;  // asked for by their exact topics: right even where wildcards get no retained
    s.service.format = s.format;
    for (auto* o : {&s.service.notary, &s.service.ha_prefix}) {  // `notary = true` in the configuration file
        if (*o == "true") o->emplace();
        else if (*o == "false") o->reset();
    }
    for (const auto* d : {&s.service.keep, &s.service.since, &s.service.window, &s.service.flap_interval})
        (void)parse_duration(*d);
    cli::refuse_empty_values(app);
    if (!c.given_noted) c.given = given_on_command_line(app);  // no configuration file was read
    check_modes(c.given, s);
    s.opts.validate();
}

// What a stream says on stderr when its sync ends without being known complete: its rows are not the whole truth.
std::string sync_warning(const scanner_status& st) {
    if (st.sync == sync_state::partial)
        return "the table is partial: this broker sends no retained status to a wildcard subscription (RabbitMQ is "
               "one), so only clients heard live are shown; `serve` keeps the whole table in its history, and once "
               "--require NAME asks for a client by its topic";
    return std::string("the sync is not verified: ") +
           (st.broker_dropped > 0 ? "the broker reports " + std::to_string(st.broker_dropped) + " dropped messages"
                                  : std::string("the sync marker did not come back")) +
           "; a status may be missing until the next re-sync (mosquitto: raise max_queued_messages)";
}

// Status lines and changes arrive on the scanner's delivery thread, in order: never on Paho's.
void attach_outputs(scanner& scan, const settings& s, bool live_table, std::mutex& out_mutex,
                    redraw_signal& changed) {
    const bool json_lines = s.format == "json" || s.format == "ndjson";
    scan.on_status([&s, &out_mutex, &changed](const std::string& line) {
        if (s.run == mode::once || s.run == mode::purge) return;  // a snapshot reports through its exit code
        changed.mark();
        std::lock_guard<std::mutex> lock(out_mutex);
        std::cerr << "mqtt-presence-scanner: " << terminal_safe(line, 400) << "\n";
    });
    if (s.run != mode::watch && s.run != mode::events) return;  // a snapshot or a purge builds no change rows
    // The scanner's own state, in order with the changes: a JSON stream says when its data stops being live or
    // whole ({"event":"scanner",...}); human lines say a sync that ended partial or unverified on stderr.
    scan.on_state([&out_mutex, &changed, live_table, json_lines](const scanner_status& st) {
        changed.mark();
        if (live_table) return;  // the title says it
        std::lock_guard<std::mutex> lock(out_mutex);
        if (json_lines) {
            std::cout << "{\"event\":\"scanner\",\"scanner\":" << render_scanner_json(st) << "}\n" << std::flush;
        } else if (st.connected && st.sync != sync_state::syncing && st.sync != sync_state::complete) {
            std::cerr << "mqtt-presence-scanner: " << sync_warning(st) << "\n";
        }
    });
    scan.on_change([&out_mutex, &changed, live_table, json_lines](const change& c) {
        changed.mark();
        if (live_table) return;
        std::lock_guard<std::mutex> lock(out_mutex);
        if (json_lines) std::cout << render_change_json(c);
        else std::cout << render_change_line(c, clock::now());
        std::cout.flush();
    });
}

}  // namespace

// --help's examples, durations and exit codes.
constexpr const char* help_footer = R"(Examples:
  mqtt-presence-scanner                                  # live table of sensors/connected/+
  mqtt-presence-scanner once                             # snapshot, then exit (also: --once)
  mqtt-presence-scanner once --format json | jq '.clients[] | select(.state=="disconnected")'
  mqtt-presence-scanner --convention homie --convention tasmota
  mqtt-presence-scanner --convention all                 # every convention README lists
  mqtt-presence-scanner -t '$CONNECTED/{client}' -t 'sensors/{client}/connected'
  mqtt-presence-scanner events                           # NDJSON stream of changes (also: --events)
  mqtt-presence-scanner once --require gw-1,gw-2 || alert   # exit 3 if one is not connected
  mqtt-presence-scanner once --format prometheus > mqtt.prom.tmp && mv mqtt.prom.tmp mqtt.prom
  mqtt-presence-scanner purge --older-than 7d --dry-run  # which dead statuses would be cleared
  mqtt-presence-scanner -h broker.lan -p 8883 --cafile ca.crt -u monitor --pw-env MQTT_PASSWORD
  mqtt-presence-scanner serve --db /var/lib/mqtt-presence/history.db --notary   # the service
  mqtt-presence-scanner history kitchen --since 2d       # when kitchen connected, died, and why
  mqtt-presence-scanner uptime --window 7d --sort uptime --format csv

Durations: 500ms, 5s, 10m, 2h, 7d.
Exit codes: 0 ok, 1 runtime failure (or a purge the broker refused in part), 2 bad options,
            3 a required client is not connected, 4 broker unreachable or lost during once,
            5 once: sync incomplete, unverified or partial (no table unless --allow-partial),
            6 serve: the history, the port or the notary's template is held by another instance.
serve waits for a broker that is not there yet; SIGHUP re-reads its alert settings.)";

int main(int argc, char** argv) {
    CLI::App app{"Shows which MQTT clients are connected, since when, and which died, from their retained status "
                 "topics (this project's sensors, Home Assistant/Tasmota online/offline, Homie $state, "
                 "Sparkplug STATE, mqtt-smarthome 0/1/2).",
                 "mqtt-presence-scanner"};
    app.set_help_flag("--help", "Print this help message and exit");
    app.formatter(std::make_shared<cli::help_formatter>());  // before the groups and subcommands: they copy it
    app.footer(help_footer);
    app.require_subcommand(0, 1);

    settings s;
    command_line c;
    define_options(app, s, c);
    cli::add_version_and_config(app, "scanner", [&app, &c] {
        c.given = given_on_command_line(app);
        c.given_noted = true;
    });
    try {
        app.parse(argc, argv);
        finish_options(app, s, c);
    } catch (const CLI::ConfigError& e) {
        std::cerr << "mqtt-presence-scanner: " << cli::config_error_text(app, e) << "\n";
        return exit_code::usage;
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? exit_code::ok : exit_code::usage;
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n(see --help)\n";
        return exit_code::usage;
    }

    if (s.run == mode::history) return service_cli::run_history(s.service);  // the file only, no broker
    if (s.run == mode::uptime) return service_cli::run_uptime(s.service);
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    if (s.run == mode::serve) {
        std::signal(SIGHUP, on_reload);  // re-read the alert settings, never a stop
        return service_cli::run_serve(s.opts, s.service, interrupted, reload);
    }
    const bool live_table = s.run == mode::watch && s.format == "table" && isatty(STDOUT_FILENO) != 0;
    try {
        scanner scan(s.opts);
        std::mutex out_mutex;
        redraw_signal changed;
        attach_outputs(scan, s, live_table, out_mutex, changed);
        if (s.run == mode::once && !s.service.db.empty()) {  // the history's times for what the broker confirms
            try {
                service_cli::restore(scan, s.service);
            } catch (const error& e) {
                std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
                return exit_code::usage;
            }
        }
        try {
            scan.start();
        } catch (const error& e) {
            std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
            return exit_code::unreachable;
        }
        switch (s.run) {
            case mode::once: return run_once(scan, s);
            case mode::purge: return run_purge(scan, s);
            case mode::events: return run_stream(scan);
            case mode::watch: return live_table ? run_live_table(scan, s, changed, out_mutex) : run_stream(scan);
            case mode::serve:
            case mode::history:
            case mode::uptime: break;  // run above
        }
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
        return exit_code::failure;
    }
    return exit_code::ok;
}
