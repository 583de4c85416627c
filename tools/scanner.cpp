// mqtt-presence-scanner: the table of MQTT clients and their connection status.
// Modes (subcommands, scanner_cli.hpp): watch (default), once, events, purge, and the service's: serve, history,
// uptime (scanner_service.cpp). Exit codes: exit_codes.hpp.
#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/scanner.hpp>

#include <nlohmann/json.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

#include "exit_codes.hpp"
#include "live_keys.hpp"
#include "scanner_cli.hpp"
#include "scanner_service.hpp"
#include "watched_silences.hpp"

using namespace mqtt_presence;

namespace {

using scanner_cli::mode;
using scanner_cli::settings;

std::atomic<bool> interrupted{false};  // SIGINT, SIGTERM (and SIGHUP but in serve)
std::atomic<bool> reload{false};       // serve: SIGHUP, re-read the alert settings

// Signals are taken by one thread with sigwait, as in the sensor: blocked before any other thread starts (each
// inherits the mask), so no handler runs at an arbitrary point of another thread. SIGHUP stops every mode but
// serve (a closed terminal ends a watch), where it asks for a reload.
class signal_waiter {
public:
    explicit signal_waiter(bool hup_reloads) {
        sigemptyset(&set_);
        for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR2}) sigaddset(&set_, sig);
        pthread_sigmask(SIG_BLOCK, &set_, nullptr);
        thread_ = std::thread([this, hup_reloads] {
            for (int sig = 0; sigwait(&set_, &sig) == 0 || errno == EINTR;) {
                if (sig == SIGUSR2 && done_) return;  // the destructor's wake-up
                if (sig == SIGHUP && hup_reloads) reload = true;
                else if (sig != SIGUSR2) interrupted = true;
            }
        });
    }
    ~signal_waiter() {
        done_ = true;
        pthread_kill(thread_.native_handle(), SIGUSR2);
        thread_.join();
    }
    signal_waiter(const signal_waiter&) = delete;
    signal_waiter& operator=(const signal_waiter&) = delete;

private:
    sigset_t set_{};
    std::atomic<bool> done_{false};
    std::thread thread_;
};

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
// million rows need no copy of it); the human table reads the table twice, for its column widths, then its rows.
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
    for (const auto& c : r.clients) r.counts.tally(c);
    r.scanner = st;
    if (s.format == "table") std::cout << render_table(r, clock::now(), isatty(STDOUT_FILENO) != 0 && !s.no_color);
    else std::cout << render_snapshot(r, machine_format(s.format));
}

// The whole table in the format asked for, straight from the table a chunk at a time; each row shown to --require.
void print_table(const scanner& scan, const settings& s, required_clients& check, const scanner_status& st) {
    if (s.format == "table") {  // two passes over the table: the column widths, then the rows
        table_writer writer(std::cout, clock::now(), isatty(STDOUT_FILENO) != 0 && !s.no_color);
        scan.for_each_sorted([&](const client_status& c) { writer.measure(c); });
        const auto [counts, stats] = scan.for_each_sorted([&](const client_status& c) {
            writer.row(c);
            check.see(c);
        });
        writer.finish(counts, stats, &st);
        return;
    }
    snapshot_writer writer(std::cout, machine_format(s.format));
    const auto [counts, stats] = scan.for_each_sorted([&](const client_status& c) {
        writer.row(c);
        check.see(c);
    });
    writer.finish(counts, stats, &st);
}

// Whether the sync of `scan` (the broker at `uri`) gave a table that can be printed as whole: 0, or the exit code,
// said on stderr. `who` prefixes the lines ("" for one broker, "site-a: " for one of several).
int sync_verdict(scanner& scan, const settings& s, const std::string& uri, const std::string& who = {}) {
    const bool synced = sync(scan, s.timeout);
    if (synced) wait_for_live_beats(scan);
    if (synced) wait_for_confirmations(scan, s.required);
    if (synced && s.format == "table" && isatty(STDOUT_FILENO) != 0) wait_for_fresh_broker_count(scan);
    const auto st = scan.status();
    const std::string say = "mqtt-presence-scanner: " + who;
    if (st.sync_tail_refused)
        std::cerr << say << "warning: the broker refused the scanner's publish to its sync tail (an "
                     "ACL? let the scanner write mqtt-presence-sync/#); the sync ended with its marker\n";
    if (!st.connected) {
        std::cerr << say << "lost the connection to " << uri << " during the sync; no table printed\n";
        return exit_code::unreachable;
    }
    if (!synced) {
        std::cerr << say << "sync not complete after " << s.timeout_text << " ("
                  << scan.stats().messages << " statuses read); the table would be partial (a longer --timeout for "
                  << "a large fleet; a broker that drops messages, e.g. mosquitto below its max_queued_messages, "
                  << "never completes it)\n";
        return exit_code::incomplete;
    }
    if (st.sync == sync_state::partial) {
        std::cerr << say << "the table is partial: no retained status came through the wildcard "
                     "subscription and the sync tail never came back: this broker delivers no retained message to a "
                     "wildcard subscription (RabbitMQ is one), or it refused the scanner's publish to its sync tail "
                     "(an ACL: let it write mqtt-presence-sync/#); the table holds only the clients heard live"
                  << (s.required.empty() ? "" : " and those named with --require (asked for by their topics)")
                  << ". For the whole table run `mqtt-presence-scanner serve`, whose history keeps it across "
                     "restarts, or name the clients you need: once --require NAME[,NAME...]\n";
        // The named clients were each asked for by their topics: --require's answer is true.
        return s.required.empty() ? exit_code::incomplete : exit_code::ok;
    }
    if (st.sync != sync_state::complete) {
        std::cerr << say << "the sync is not verified: "
                  << (st.broker_dropped > 0
                          ? "the broker reports " + std::to_string(st.broker_dropped) + " dropped messages"
                          : std::string("the sync marker did not come back"))
                  << "; the broker may have dropped statuses (mosquitto: raise max_queued_messages, or set it to 0 "
                     "with max_queued_bytes 0, above the fleet size); the table may be partial\n";
        return exit_code::incomplete;
    }
    return exit_code::ok;
}

int run_once(scanner& scan, const settings& s) {
    int rc = sync_verdict(scan, s, s.opts.broker.server_uri);
    const auto st = scan.status();
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
        print_table(scan, s, check, st);
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

// The terminal's width in columns (80 when it does not say).
std::size_t terminal_columns() {
    winsize ws{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) return 80;
    return ws.ws_col;
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

// One broker's part of the live table: its scanner (null while it cannot be reached) and, of several, its name.
// `status` and `blind` are read once per frame (live_frame), so that its rows, counts and notes agree.
struct live_source {
    const scanner* scan = nullptr;
    std::string name;  // "" for one broker
    scanner_status status{};
    bool blind = false;  // of several: not heard (scanner_status::blind), or never reached
};

// The live table's order (--sort): problems first unless asked otherwise.
row_order order_of(const settings& s) {
    return s.sort == "name" ? row_order::name : s.sort == "since" ? row_order::since : row_order::state;
}

// What the view shows: a screenful from its offset (held to the last screenful) of the rows that pass its filter
// (a case-blind substring of the name or topic), and how many pass. Without a filter only offset + page rows are
// copied out of each table. Of several brokers, the rows of one that cannot be heard are unknown since it was last
// heard (unknown_since), and the tables' rows merge in the view's order.
struct shown_rows {
    std::vector<client_status> rows;
    std::size_t total = 0;
    std::size_t offset = 0;
};

shown_rows rows_in_view(const std::vector<live_source>& sources, const live_keys::view& v, std::size_t page,
                        row_order order) {
    const auto lower = [](std::string t) {
        std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        return t;
    };
    const bool several = sources.size() > 1;
    const auto needle = lower(v.filter);
    shown_rows shown;
    std::size_t want = SIZE_MAX;  // rows asked of each table
    if (v.filter.empty()) {
        for (const auto& src : sources) shown.total += src.scan ? src.scan->counts().total() : 0;
        shown.offset = std::min(v.offset, shown.total > page ? shown.total - page : 0);
        want = shown.offset > SIZE_MAX - page ? SIZE_MAX : shown.offset + page;
    }
    for (const auto& src : sources) {
        if (!src.scan) continue;
        // A blind table's rows are all unknown alike: its first rows by name are its first in any order.
        for (auto& r : src.scan->snapshot(want, src.blind ? row_order::name : order)) {
            if (!needle.empty() && lower(r.client).find(needle) == std::string::npos &&
                lower(r.topic).find(needle) == std::string::npos)
                continue;
            shown.rows.push_back(src.blind ? unknown_since(std::move(r), src.status.blind_since(),
                                                           "its broker is not heard")
                                           : std::move(r));
        }
    }
    auto& rows = shown.rows;
    if (several)  // equal rows keep the brokers' order
        std::stable_sort(rows.begin(), rows.end(),
                         [order](const client_status& a, const client_status& b) { return row_before(a, b, order); });
    if (!v.filter.empty()) {
        shown.total = rows.size();
        shown.offset = std::min(v.offset, shown.total > page ? shown.total - page : 0);
    }
    rows.erase(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(std::min(shown.offset, rows.size())));
    if (rows.size() > page) rows.resize(page);
    return shown;
}

std::string painted(bool color, const char* code, const std::string& text) {
    return color ? std::string(code) + text + "\x1b[0m" : text;
}

// The scanner's own state beside the title, when it is not simply connected and synced.
std::string scanner_note(const scanner_status& st, bool color) {
    if (!st.connected)  // the rows are what the scanner knew when it lost the broker
        return painted(color, "\x1b[1;31m",
                       "  DISCONNECTED" + (st.since ? " since " + format_iso8601(*st.since).substr(11, 8) + " UTC" : "") +
                           ": rows as of then; reconnecting");
    if (st.no_news(clock::now()))  // cut, not yet declared lost
        return painted(color, "\x1b[1;33m",
                       "  NO NEWS from the broker for " +
                           std::to_string(
                               std::chrono::duration_cast<std::chrono::seconds>(clock::now() - *st.last_heard).count()) +
                           " s: rows as of " + format_iso8601(*st.last_heard).substr(11, 8) + " UTC");
    if (st.sync == sync_state::syncing) return "  (syncing)";
    if (st.sync == sync_state::unverified) return "  (sync not verified: rows may be missing)";
    if (st.sync == sync_state::partial)
        return "  (partial: this broker sends no retained status to a wildcard; clients are shown as they are heard)";
    return {};
}

// Of several brokers, one's state in the line under the title: "lab ok", "prod DISCONNECTED since 12:00:01 UTC:
// rows unknown", "edge UNREACHABLE: trying again".
std::string broker_note(const live_source& src, bool color) {
    const std::string name = terminal_safe(src.name, 40) + " ";
    if (!src.scan) return name + painted(color, "\x1b[1;31m", "UNREACHABLE: trying again");
    const auto& st = src.status;
    const auto hms = [](std::optional<time_point> t) { return t ? format_iso8601(*t).substr(11, 8) + " UTC" : "?"; };
    if (!st.connected) return name + painted(color, "\x1b[1;31m", "DISCONNECTED since " + hms(st.since) + ": rows unknown");
    if (src.blind)  // connected, but no news
        return name + painted(color, "\x1b[1;33m", "NO NEWS since " + hms(st.last_heard) + ": rows unknown");
    if (st.sync == sync_state::syncing) return name + "syncing";
    if (st.sync == sync_state::unverified) return name + painted(color, "\x1b[33m", "sync not verified");
    if (st.sync == sync_state::partial) return name + painted(color, "\x1b[33m", "partial (heard live only)");
    return name + "ok";
}

// The counts and stats of every table in the view; a blind table's rows count as unknown.
std::pair<table_counts, table_stats> view_counts(const std::vector<live_source>& sources) {
    std::pair<table_counts, table_stats> sums;
    for (const auto& src : sources) {
        if (!src.scan) continue;
        auto counts = src.scan->counts();
        if (src.blind) {
            table_counts unknown;
            unknown.unknown = counts.total();
            counts = unknown;
        }
        sums.first += counts;
        sums.second += src.scan->stats();
    }
    return sums;
}

// One frame: the title (the broker, or how many, the filters, the time, the scanner's state), of several brokers a
// line with each one's state, the view's place and keys, the table of the view's rows and its counts; every line cut
// to the terminal's width.
std::string live_frame(std::vector<live_source> sources, const settings& s, const std::string& filters,
                       const live_keys::view& v, std::size_t page, row_order order, std::size_t& total,
                       const watched_silences* silences) {
    const auto now = clock::now();
    for (auto& src : sources) {  // each scanner's state once: the rows, counts and notes of the frame agree
        if (src.scan) src.status = src.scan->status();
        src.blind = sources.size() > 1 && (!src.scan || src.status.blind(now));
    }
    auto [rows, all, offset] = rows_in_view(sources, v, page, order);
    total = all;
    const bool color = !s.no_color;
    std::string silenced;  // the title's word on the silences (watch --db)
    if (silences) {
        for (auto& c : rows)
            if (const auto covered = silences->covering(c, now))
                c.detail = silence_note(*covered, now) + (c.detail.empty() ? "" : "; " + c.detail);
        const auto [running, failure] = silences->state(now);
        if (!failure.empty())
            silenced = painted(color, "\x1b[1;33m", "  silences not read: " + terminal_safe(failure, 100));
        else if (running > 0)
            silenced = "  " + std::to_string(running) + (running == 1 ? " silence" : " silences");
    }
    std::ostringstream table;
    table_writer writer(table, clock::now(), color);
    writer.show_topics(terminal_columns() >= 160);  // where it fits beside the other columns
    for (const auto& c : rows) writer.measure(c);
    for (const auto& c : rows) writer.row(c);
    const auto [counts, stats] = view_counts(sources);
    std::string title, note;
    if (sources.size() == 1) {
        const auto& st = sources.front().status;
        writer.finish(counts, stats, &st);
        title = s.opts.broker.server_uri;
        note = scanner_note(st, color);
    } else {
        writer.finish(counts, stats, nullptr);
        std::size_t blind_ones = 0;
        for (const auto& src : sources) {
            note += (note.empty() ? "" : "  ") + broker_note(src, color);
            blind_ones += src.blind ? 1 : 0;
        }
        note = "\n" + note;
        title = std::to_string(sources.size()) + " brokers";
        if (blind_ones > 0)
            title += painted(color, "\x1b[1;31m", "  " + std::to_string(blind_ones) + " of " +
                                                      std::to_string(sources.size()) + " not heard");
    }
    std::string place = total == 0 ? "no rows" : "rows " + std::to_string(offset + 1) + "-" +
                                                     std::to_string(offset + rows.size()) + " of " + std::to_string(total);
    if (v.typing) place += "  filter: /" + terminal_safe(v.draft, 40) + "_ (Enter keeps, Esc drops)";
    else if (!v.filter.empty()) place += "  filter /" + terminal_safe(v.filter, 40) + " (Esc drops)";
    else place += "  (arrows, PgUp/PgDn, Home/End scroll; / filters; q quits)";
    const auto hms = format_iso8601(clock::now()).substr(11, 8);
    return fit_to_width(title + "  " + filters + "  " + hms + " UTC" + silenced + note + "\n" + place + "\n" +
                            table.str(),
                        terminal_columns());
}

// The topic filters of the title ("a/+ b/+…": a scheme of several filters shows its first).
std::string title_filters(const scanner& scan) {
    std::string filters;
    for (const auto& scheme : scan.schemes())
        filters += (filters.empty() ? "" : " ") + scheme.filter() + (scheme.filters().size() > 1 ? "…" : "");
    return filters;
}

// A live table's frame for the view and the rows that fit: `total` is set to the rows that pass its filter.
using frame_maker = std::function<std::string(const live_keys::view&, std::size_t page, std::size_t& total)>;

// watch on a terminal: the live table, redrawn as soon as a change or a key arrives (at most once every 20 ms, so a
// storm of changes costs 50 redraws a second) and every second, as the ages move on. Only a screenful of rows is
// copied out of each table (unless a filter needs them all), so a million clients cost little to watch. `extra`:
// lines above the table beyond one broker's.
void run_live_table(const frame_maker& frame_of, std::size_t extra, redraw_signal& changed, std::mutex& out_mutex) {
    constexpr auto min_gap = std::chrono::milliseconds(20);
    auto drawn = std::chrono::steady_clock::time_point{};
    const no_line_wrap unwrapped;
    live_keys::reader keys([&changed] { changed.mark(); }, interrupted);
    while (!interrupted) {
        // Wakes for a change or a key, for the one-second tick, and at least every 200 ms to see a signal.
        const auto tick = std::chrono::duration_cast<std::chrono::milliseconds>(
            drawn + std::chrono::seconds(1) - std::chrono::steady_clock::now());
        const bool marked = changed.wait(std::clamp(tick, std::chrono::milliseconds(0), std::chrono::milliseconds(200)));
        const auto since_drawn = std::chrono::steady_clock::now() - drawn;
        if (marked && since_drawn < min_gap) std::this_thread::sleep_for(min_gap - since_drawn);  // the rate limit
        const auto now = std::chrono::steady_clock::now();
        if (interrupted || (!marked && now - drawn < std::chrono::seconds(1))) continue;
        drawn = now;
        auto page = visible_rows();
        page = page > extra ? page - extra : 1;
        std::size_t total = 0;
        const auto frame = frame_of(keys.current(), page, total);
        keys.layout(page, total);
        std::lock_guard<std::mutex> lock(out_mutex);
        std::cout << "\x1b[H\x1b[2J" << frame << std::flush;
    }
}

// watch on a terminal, one broker: once synced (or its --timeout passed), the live table of its scanner.
int run_one_live_table(scanner& scan, const settings& s, redraw_signal& changed, std::mutex& out_mutex,
                       const watched_silences* silences) {
    sync(scan, s.timeout);
    const auto filters = title_filters(scan);
    const auto order = order_of(s);
    const std::vector<live_source> sources{{&scan, {}}};
    run_live_table(
        [&](const live_keys::view& v, std::size_t page, std::size_t& total) {
            return live_frame(sources, s, filters, v, page, order, total, silences);
        },
        0, changed, out_mutex);
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

// JSON text that stays JSON whatever bytes a broker's error message holds.
std::string json_text(const nlohmann::ordered_json& j) {
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// Status lines and changes arrive on the scanner's delivery thread, in order: never on Paho's.
void attach_outputs(scanner& scan, const settings& s, bool live_table, std::mutex& out_mutex,
                    redraw_signal& changed, const std::string& broker) {
    const bool json_lines = s.format == "json" || s.format == "ndjson";
    const std::string who = broker.empty() ? std::string() : broker + ": ";  // whose lines, of several
    scan.on_status([&s, &out_mutex, &changed, who](const std::string& line) {
        if (s.run == mode::once || s.run == mode::purge) return;  // a snapshot reports through its exit code
        changed.mark();
        std::lock_guard<std::mutex> lock(out_mutex);
        std::cerr << "mqtt-presence-scanner: " << who << terminal_safe(line, 400) << "\n";
    });
    if (s.run != mode::watch && s.run != mode::events) return;  // a snapshot or a purge builds no change rows
    // The scanner's own state, in order with the changes: a JSON stream says when its data stops being live or
    // whole ({"event":"scanner",...}); human lines say a sync that ended partial or unverified on stderr.
    scan.on_state([&out_mutex, &changed, live_table, json_lines, broker, who](
                      const scanner_status& st) {
        changed.mark();
        if (live_table) return;  // the title says it
        std::lock_guard<std::mutex> lock(out_mutex);
        if (json_lines) {
            std::cout << "{\"event\":\"scanner\","
                      << (broker.empty() ? std::string() : "\"broker\":" + json_text(broker) + ",")
                      << "\"scanner\":" << render_scanner_json(st) << "}\n" << std::flush;
        } else if (st.connected && st.sync != sync_state::syncing && st.sync != sync_state::complete) {
            std::cerr << "mqtt-presence-scanner: " << who << sync_warning(st) << "\n";
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

// watch, once and events over several named brokers (--broker NAME=URI, repeated): a scanner each, with its own
// connection and sync, started and synced side by side; every row carries its broker's name. A broker that cannot
// be read is said by name, and never passes for one without clients; watch and events try it again.
struct broker_scan {
    scanner_cli::named_broker where;
    std::unique_ptr<scanner> scan;
    std::string failure;  // why it could not be reached ("" once started)
    int verdict = exit_code::ok;  // once: its sync's verdict (sync_verdict)
    /// Reached, and (once) its sync gave a whole table.
    [[nodiscard]] bool read_whole() const noexcept { return failure.empty() && verdict == exit_code::ok; }
};

// A scanner for one of several brokers, its outputs attached, not started.
std::unique_ptr<scanner> scanner_for(const settings& s, const scanner_cli::named_broker& b, bool live_table,
                                     std::mutex& out, redraw_signal& changed) {
    auto o = s.opts;
    o.broker = b.broker;  // its URI, and its own login and TLS (apply_broker_sections)
    o.broker_name = b.name;
    auto scan = std::make_unique<scanner>(std::move(o));
    attach_outputs(*scan, s, live_table, out, changed, b.name);
    return scan;
}

std::vector<broker_scan> start_several(const settings& s, bool live_table, std::mutex& out, redraw_signal& changed) {
    std::vector<broker_scan> all;
    for (const auto& b : s.brokers) all.push_back(broker_scan{b, scanner_for(s, b, live_table, out, changed), {}, 0});
    // Side by side: a broker that does not answer costs its connect timeout once, not once per broker.
    std::vector<std::thread> starting;
    for (auto& b : all)
        starting.emplace_back([&b] {
            try {
                b.scan->start();
            } catch (const std::exception& e) {
                b.failure = e.what();
            }
        });
    for (auto& t : starting) t.join();
    for (const auto& b : all)
        if (!b.failure.empty())
            std::cerr << "mqtt-presence-scanner: " << b.where.name << ": " << terminal_safe(b.failure, 400) << "\n";
    return all;
}

// watch and events: a broker not reached at the start is tried again every 5 s, with a new scanner (a scanner
// starts once), until it answers or the run is interrupted. The new scanner takes the old one's place under `swap`,
// which the live table holds while it reads the brokers.
void keep_trying(broker_scan& b, const settings& s, bool live_table, std::mutex& out, redraw_signal& changed,
                 std::mutex& swap) {
    while (!interrupted) {
        for (int i = 0; i < 25 && !interrupted; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(200));
        if (interrupted) return;
        auto fresh = scanner_for(s, b.where, live_table, out, changed);
        try {
            fresh->start();
        } catch (const std::exception& e) {
            fresh->stop();
            std::lock_guard<std::mutex> lock(swap);
            b.failure = e.what();
            continue;
        }
        std::unique_ptr<scanner> old;
        {
            std::lock_guard<std::mutex> lock(swap);
            old = std::exchange(b.scan, std::move(fresh));
            b.failure.clear();
        }
        changed.mark();
        old->stop();
        return;
    }
}

// The brokers as the JSON snapshot's "brokers" member: each one's name, URI, whether it was read whole, and its
// scanner's state (null when it could not be reached).
std::string brokers_json(const std::vector<broker_scan>& all) {
    auto list = nlohmann::ordered_json::array();
    for (const auto& b : all)
        list.push_back({{"name", b.where.name},
                        {"uri", b.where.uri},
                        {"reachable", b.failure.empty()},
                        {"complete", b.read_whole()},
                        {"scanner", b.failure.empty() ? nlohmann::ordered_json::parse(render_scanner_json(
                                                            b.scan->status()))
                                                      : nlohmann::ordered_json()}});
    return ",\"brokers\":" + json_text(list);
}

// The rows of every broker read, in the format asked for (brokers in the order given, names sorted within each),
// with the counts of them all; what was not read is said in the output where the format has room for it.
void print_several(const std::vector<broker_scan>& all, const settings& s, required_clients& check) {
    const auto each_row = [&all](const std::function<void(const client_status&)>& visit) {
        std::pair<table_counts, table_stats> sums;
        for (const auto& b : all) {
            if (!b.failure.empty()) continue;
            const auto [counts, stats] = b.scan->for_each_sorted(visit);
            sums.first += counts;
            sums.second += stats;
        }
        return sums;
    };
    if (s.format == "table") {
        table_writer writer(std::cout, clock::now(), isatty(STDOUT_FILENO) != 0 && !s.no_color);
        each_row([&](const client_status& c) { writer.measure(c); });
        const auto [counts, stats] = each_row([&](const client_status& c) {
            writer.row(c);
            check.see(c);
        });
        writer.finish(counts, stats, nullptr);
        for (const auto& b : all)
            if (!b.read_whole())
                std::cout << terminal_safe(b.where.name, 40) << " (" << terminal_safe(b.where.uri, 200) << "): "
                          << (b.failure.empty() ? "not read whole" : "unreachable") << "; its clients may be missing\n";
        return;
    }
    snapshot_writer writer(std::cout, machine_format(s.format), true);
    const auto [counts, stats] = each_row([&](const client_status& c) {
        writer.row(c);
        check.see(c);
    });
    writer.finish(counts, stats, nullptr, brokers_json(all));
    if (s.format == "prometheus") {
        std::cout << "# HELP mqtt_presence_broker_complete 1 if the broker was read whole, 0 if not (unreachable, "
                     "or its sync not known complete).\n# TYPE mqtt_presence_broker_complete gauge\n";
        for (const auto& b : all)
            std::cout << "mqtt_presence_broker_complete{broker=\"" << prometheus_label(b.where.name) << "\"} "
                      << (b.read_whole() ? 1 : 0) << "\n";
    }
}

// watch (a live table or a stream) and events over several brokers, until interrupted; brokers not reached at the
// start are tried again (keep_trying).
int follow_several(std::vector<broker_scan>& all, const settings& s, bool live_table, std::mutex& out,
                   redraw_signal& changed, const watched_silences* silences) {
    if (!live_table && s.format != "table")  // a stream's reader learns which brokers it does not hear from
        for (const auto& b : all)
            if (!b.failure.empty()) {
                std::lock_guard<std::mutex> lock(out);
                std::cout << json_text({{"event", "broker"}, {"broker", b.where.name}, {"reachable", false},
                                        {"error", b.failure}})
                          << "\n" << std::flush;
            }
    std::mutex swap;
    std::vector<std::thread> trying;
    for (auto& b : all)
        if (!b.failure.empty())
            trying.emplace_back([&b, &s, live_table, &out, &changed, &swap] {
                keep_trying(b, s, live_table, out, changed, swap);
            });
    if (live_table) {
        const auto filters = title_filters(*all.front().scan);
        const auto order = order_of(s);
        run_live_table(
            [&](const live_keys::view& v, std::size_t page, std::size_t& total) {
                std::lock_guard<std::mutex> lock(swap);
                std::vector<live_source> sources;
                for (const auto& b : all)
                    sources.push_back({b.failure.empty() ? b.scan.get() : nullptr, b.where.name});
                return live_frame(sources, s, filters, v, page, order, total, silences);
            },
            1, changed, out);
    } else {
        while (!interrupted) usleep(200'000);
    }
    for (auto& t : trying) t.join();
    for (auto& b : all) b.scan->stop();  // delivers what is queued
    return exit_code::ok;
}

int run_several(const settings& s, bool live_table, const watched_silences* silences) {
    std::mutex out;
    redraw_signal changed;
    auto all = start_several(s, live_table, out, changed);
    const auto reached = static_cast<std::size_t>(
        std::count_if(all.begin(), all.end(), [](const broker_scan& b) { return b.failure.empty(); }));
    if (reached == 0) {
        std::cerr << "mqtt-presence-scanner: none of the " << all.size() << " brokers could be reached\n";
        return exit_code::unreachable;
    }
    if (s.run != mode::once) return follow_several(all, s, live_table, out, changed, silences);
    std::vector<std::thread> syncing;
    for (auto& b : all)
        if (b.failure.empty())
            syncing.emplace_back([&b, &s] {
                b.verdict = sync_verdict(*b.scan, s, b.where.uri, b.where.name + ": ");
                // A partial table (RabbitMQ) is not the broker's whole table, even for --require.
                if (b.verdict == exit_code::ok && b.scan->status().sync == sync_state::partial)
                    b.verdict = exit_code::incomplete;
            });
    for (auto& t : syncing) t.join();
    const bool none_read = std::all_of(all.begin(), all.end(), [](const broker_scan& b) {
        return !b.failure.empty() || b.verdict == exit_code::unreachable;
    });
    const auto whole = static_cast<std::size_t>(
        std::count_if(all.begin(), all.end(), [](const broker_scan& b) { return b.read_whole(); }));
    int rc = none_read ? exit_code::unreachable : whole == all.size() ? exit_code::ok : exit_code::incomplete;
    required_clients check(s.required);
    if (rc == exit_code::ok || (s.allow_partial && !none_read)) print_several(all, s, check);
    if (rc == exit_code::incomplete)
        std::cerr << "mqtt-presence-scanner: " << all.size() - whole << " of " << all.size()
                  << " brokers not read whole"
                  << (s.allow_partial ? " (printed all the same: --allow-partial)"
                                      : "; no table (--allow-partial prints the rest)")
                  << "\n";
    if (rc == exit_code::ok) rc = check.report();
    std::cout.flush();
    std::cerr.flush();
    for (auto& b : all) b.scan->stop();
    std::_Exit(rc);
}

}  // namespace

int main(int argc, char** argv) {
    settings s;
    if (const auto rc = scanner_cli::parse(argc, argv, s)) return *rc;
    if (s.run == mode::history) return service_cli::run_history(s.service);  // the file only, no broker
    if (s.run == mode::uptime) return service_cli::run_uptime(s.service);
    if (s.run == mode::silence) return service_cli::run_silence(s.service);  // the service's API, no broker
    const signal_waiter signals(s.run == mode::serve);
    if (s.run == mode::serve) return service_cli::run_serve(s.opts, s.service, interrupted, reload);
    const bool live_table = s.run == mode::watch && s.format == "table" && isatty(STDOUT_FILENO) != 0;
    std::unique_ptr<watched_silences> silences;  // watch --db: the service's silences beside the live table's rows
    if (s.run == mode::watch && !s.service.db.empty()) {  // checked into a pipe too: a bad --db is said at once
        try {
            silences = std::make_unique<watched_silences>(s.service.db);
        } catch (const error& e) {
            std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
            return exit_code::usage;
        }
    }
    try {
        if (!s.brokers.empty()) return run_several(s, live_table, silences.get());  // watch, once, events
        scanner scan(s.opts);
        std::mutex out_mutex;
        redraw_signal changed;
        attach_outputs(scan, s, live_table, out_mutex, changed, s.opts.broker_name);
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
            case mode::watch:
                return live_table ? run_one_live_table(scan, s, changed, out_mutex, silences.get()) : run_stream(scan);
            case mode::serve:
            case mode::history:
            case mode::uptime:
            case mode::silence: break;  // run above
        }
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
        return exit_code::failure;
    }
    return exit_code::ok;
}
