// mqtt-presence-scanner: the table of MQTT clients and their connection status.
// Exit codes: 0 ok, 1 runtime failure, 2 bad options, 3 a --require'd client is not connected,
//             4 broker unreachable, 5 --once could not complete the sync before --timeout (output is partial).
#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/scanner.hpp>

#include <CLI/CLI.hpp>

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

using namespace mqtt_presence;

namespace {

std::atomic<bool> interrupted{false};
void on_signal(int) { interrupted = true; }

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

// The rows (all of them, or those given) with their topics, counts and stats.
scan_result result_of(const scanner& scan, std::optional<std::vector<client_status>> rows = std::nullopt) {
    scan_result r;
    r.clients = rows ? std::move(*rows) : scan.snapshot();
    r.topics.reserve(r.clients.size());
    for (const auto& c : r.clients) r.topics.push_back(scan.topic_of(c));
    r.counts = scan.counts();
    r.stats = scan.stats();
    r.scanner = scan.status();
    return r;
}

// How many table rows fit the terminal beside the title, header, "more" and counts lines and the cursor line.
std::size_t visible_rows() {
    winsize ws{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0) return SIZE_MAX;
    return ws.ws_row > 9 ? std::size_t{ws.ws_row} - 5 : 4;
}

// --require: each named client must be connected and not stale. A name under several topic schemes is several
// clients: each of them must be. Rows are shown to it one at a time (a streamed snapshot keeps none).
class required_clients {
public:
    explicit required_clients(std::vector<std::string> names) : names_(std::move(names)), seen_(names_.size()) {}

    void see(const client_status& c, const std::string& topic) {
        for (std::size_t i = 0; i < names_.size(); ++i) {
            if (c.client != names_[i]) continue;
            seen_[i] = true;
            if (c.status != state::connected || c.stale)
                problems_ += "mqtt-presence-scanner: required client " + terminal_safe(c.client) + " is " +
                             (c.stale ? "stale" : std::string(to_string(c.status))) + " (" + terminal_safe(topic) +
                             ")\n";
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
        return text.empty() ? 0 : 3;
    }

private:
    std::vector<std::string> names_;
    std::vector<bool> seen_;
    std::string problems_;
};

snapshot_format machine_format(const std::string& format) {
    if (format == "ndjson") return snapshot_format::ndjson;
    if (format == "csv") return snapshot_format::csv;
    if (format == "prometheus") return snapshot_format::prometheus;
    return snapshot_format::json;
}

// Writes the snapshot for --once: the machine formats stream straight from the table (a million rows need no
// copy of the table and no text of it in memory); the human table needs every row first for its column widths.
void write_snapshot(const scanner& scan, const std::string& format, bool color, required_clients& required) {
    if (format == "table") {
        const auto r = result_of(scan);
        for (std::size_t i = 0; i < r.clients.size(); ++i) required.see(r.clients[i], r.topics[i]);
        std::cout << render_table(r, clock::now(), color);
        return;
    }
    snapshot_writer writer(std::cout, machine_format(format));
    std::string topic;
    const auto [counts, stats] = scan.for_each_sorted([&](const client_status& c) {
        topic = scan.topic_of(c);
        writer.row(c, topic);
        required.see(c, topic);
    });
    const auto status = scan.status();
    writer.finish(counts, stats, &status);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Shows which MQTT clients are connected, since when, and which died, from their retained status "
                 "topics (this project's sensors, Home Assistant/Tasmota online/offline, Homie $state, "
                 "Sparkplug STATE, mqtt-smarthome 0/1/2).",
                 "mqtt-presence-scanner"};
    app.set_help_flag("--help", "Print this help message and exit");
    app.footer(R"(Examples:
  mqtt-presence-scanner                                  # live table of sensors/connected/+ on localhost
  mqtt-presence-scanner --once                           # snapshot, then exit
  mqtt-presence-scanner --once --format json | jq '.clients[] | select(.state=="disconnected")'
  mqtt-presence-scanner --convention homie --convention tasmota
  mqtt-presence-scanner -t '$CONNECTED/{client}' -t 'sensors/{client}/connected'
  mqtt-presence-scanner --events                         # NDJSON stream of changes
  mqtt-presence-scanner --once --require gw-1,gw-2 || alert   # exit 3 if one is not connected
  mqtt-presence-scanner --once --format prometheus > /var/lib/node_exporter/mqtt.prom
  mqtt-presence-scanner --purge-older-than 7d --dry-run  # which dead statuses would be cleared
  mqtt-presence-scanner -h broker.lan -p 8883 --cafile ca.crt -u monitor --pw-env MQTT_PASSWORD

Durations: 500ms, 5s, 10m, 2h, 7d.
Exit codes: 0 ok, 1 runtime failure, 2 bad options, 3 a required client is not connected,
            4 broker unreachable, 5 --once sync incomplete before --timeout (output is partial).)");

    scanner_options opts;
    std::vector<std::string> topics, conventions;
    std::string host, format = "table", timeout_text = "10s", require_text, purge_text, pw_env;
    int port = 0;
    bool once = false, events = false, dry_run = false, purge_all = false, no_color = false, allow_partial = false;
    int keepalive = 30;
    app.add_option("-b,--broker", opts.server_uri, "Broker URI")->capture_default_str();
    app.add_option("-h,--host", host, "Broker host (like mosquitto_sub; builds tcp://HOST:PORT)");
    app.add_option("-p,--port", port, "Broker port (default 1883, 8883 with --cafile)")->check(CLI::Range(1, 65535));
    app.add_option("-t,--topic", topics, "Status topic template, repeatable (default sensors/connected/{client})");
    app.add_option("--convention", conventions, "Preset: sensors, connected, homie, tasmota, esphome, "
                                                "zigbee2mqtt, sparkplug, smarthome (repeatable)");
    app.add_flag("--once", once, "Sync, print the table, exit");
    app.add_option("-F,--format", format, "Output: table, json, ndjson, csv, prometheus")
        ->check(CLI::IsMember({"table", "json", "ndjson", "csv", "prometheus"}))->capture_default_str();
    app.add_flag("--events", events, "Stream changes as NDJSON");
    app.add_option("--require", require_text, "With --once: NAME[,NAME...] that must be connected (else exit 3)");
    app.add_option("--timeout", timeout_text, "Bound on --once's sync")->capture_default_str();
    app.add_flag("--allow-partial", allow_partial, "With --once: print the table even when the sync is not known "
                                                   "complete (still exit 5)");
    app.add_option("-k,--keepalive", keepalive, "Keepalive in seconds: a dead connection to the broker is noticed "
                                                "after about 1.5 x this")
        ->check(CLI::Range(1, 65535))->capture_default_str();
    app.add_option("--purge-older-than", purge_text, "Clear retained statuses that say disconnected and whose time "
                                                     "stamp (a clean stop's ts) is older than DUR");
    app.add_flag("--purge-all-disconnected", purge_all, "Clear every retained disconnected or unreadable status, "
                                                        "dated or not (plain 0, wills)");
    app.add_flag("--dry-run", dry_run, "With a purge: only list what would be cleared");
    app.add_option("-q,--qos", opts.qos, "Subscription QoS (0: full re-sync on reconnect; see README for 1)")
        ->capture_default_str();
    app.add_option("-V,--mqtt-version", opts.mqtt_version, "3 (3.1.1) or 5")->transform(CLI::IsMember({3, 4, 5}));
    app.add_option("-i,--id", opts.client_id, "Client id (default mqtt-presence-scanner-<pid>-<n>)");
    app.add_option("-u,--username", opts.username, "User name");
    app.add_option("--pw-env", pw_env, "Environment variable holding the password");
    app.add_option("--cafile", opts.cafile, "CA certificate (switches to ssl://)");
    app.add_option("--cert", opts.certfile, "Client certificate");
    app.add_option("--key", opts.keyfile, "Client private key");
    app.add_flag("--insecure", opts.insecure, "Do not verify the server certificate");
    app.add_flag("--no-color", no_color, "No colours in the table");

    std::chrono::milliseconds timeout{}, purge_age{};
    std::vector<std::string> required;
    try {
        app.parse(argc, argv);
        if (opts.mqtt_version == 3) opts.mqtt_version = 4;
        opts.keepalive = std::chrono::seconds(keepalive);
        if (allow_partial && !once) throw error("--allow-partial goes with --once");
        if (!host.empty() || app.count("--port") > 0) {
            if (app.count("--broker") > 0) throw error("use either --broker or -h/-p, not both");
            const bool tls = !opts.cafile.empty();
            opts.server_uri = std::string(tls ? "ssl://" : "tcp://") + (host.empty() ? "localhost" : host) + ":" +
                              std::to_string(port != 0 ? port : tls ? 8883 : 1883);
        }
        for (const auto& c : conventions) topics.push_back(topic_scheme::preset(c).template_text());
        if (!topics.empty()) opts.topics = topics;
        timeout = parse_duration(timeout_text);
        if (!purge_text.empty()) purge_age = parse_duration(purge_text);
        required = split(require_text);
        if (!required.empty() && !once) throw error("--require needs --once (a check, not a live view)");
        if (dry_run && purge_text.empty() && !purge_all)
            throw error("--dry-run goes with --purge-older-than DUR or --purge-all-disconnected");
        if (!pw_env.empty()) {
            const char* pw = std::getenv(pw_env.c_str());
            if (pw == nullptr) throw error("--pw-env " + pw_env + ": that environment variable is not set");
            opts.password = pw;
        }
        if (events && once) throw error("--events streams changes; it does not combine with --once");
        opts.validate();
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n(see --help)\n";
        return 2;
    }

    const bool tty = isatty(STDOUT_FILENO) != 0;
    const bool err_tty = isatty(STDERR_FILENO) != 0;
    const bool live_table = !once && !events && format == "table" && tty && purge_text.empty() && !purge_all;
    std::mutex out_mutex;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);

    try {
        scanner scan(opts);
        std::atomic<bool> dirty{true};
        scan.on_status([&](const std::string& s) {
            if (once) return;  // a snapshot reports failures through its exit code
            dirty = true;
            std::lock_guard<std::mutex> lock(out_mutex);
            std::cerr << "mqtt-presence-scanner: " << terminal_safe(s, 400) << "\n";
            if (events || format == "json" || format == "ndjson") {  // the stream says when its data stops
                const auto st = scan.status();
                std::cout << "{\"event\":\"scanner\",\"scanner\":{\"connected\":" << (st.connected ? "true" : "false")
                          << ",\"since\":" << (st.since ? "\"" + format_iso8601(*st.since) + "\"" : "null") << "}}\n"
                          << std::flush;
            }
        });
        const bool stream = !once && purge_text.empty() && !purge_all && !live_table;
        if (live_table || stream)  // a snapshot or a purge has no use for changes: the table then skips their rows
            scan.on_change([&](const change& c) {
                dirty = true;
                if (!stream) return;
                std::lock_guard<std::mutex> lock(out_mutex);
                if (events || format == "json" || format == "ndjson") std::cout << render_change_json(c, scan.topic_of(c.current));
                else std::cout << render_change_line(c, clock::now());
                std::cout.flush();
            });
        try {
            scan.start();
        } catch (const error& e) {
            std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
            return 4;
        }

        // Initial sync, with a progress line when it takes a while and stderr is a terminal.
        const auto started = std::chrono::steady_clock::now();
        bool synced = false;
        while (!interrupted) {
            synced = scan.wait_synced(std::chrono::milliseconds(200));
            const auto waited = std::chrono::steady_clock::now() - started;
            if (synced || waited >= timeout) break;
            if (err_tty && waited > std::chrono::seconds(1)) {
                std::lock_guard<std::mutex> lock(out_mutex);
                std::cerr << "\rsyncing: " << scan.stats().messages << " statuses read" << std::flush;
            }
        }
        if (err_tty && std::chrono::steady_clock::now() - started > std::chrono::seconds(1)) std::cerr << "\r\x1b[K";

        if (!purge_text.empty() || purge_all) {
            const auto cutoff = clock::now() - purge_age;
            auto purged = scan.purge(
                [&](const client_status& c) {
                    if (c.status == state::connected) return false;
                    if (purge_all) return true;
                    // Only a time stamp says how old a status is; plain payloads need --purge-all-disconnected.
                    return c.since && *c.since < cutoff;
                },
                dry_run);
            // Only what the broker verifiably cleared is reported as cleared; the rest is named, exit 1.
            for (const auto& row : purged.refused)
                std::cerr << "mqtt-presence-scanner: not cleared (the broker refused the write, or the client "
                             "published again): " << terminal_safe(scan.topic_of(row)) << "\n";
            const int rc = purged.refused.empty() ? 0 : 1;
            const auto r = result_of(scan, std::move(purged.cleared));
            if (format != "table") {
                std::cout << render_snapshot(r, machine_format(format));
                return rc;
            }
            for (const auto& topic : r.topics) std::cout << (dry_run ? "would clear " : "cleared ") << terminal_safe(topic) << "\n";
            std::cerr << (dry_run ? "dry run: " : "") << r.clients.size() << " retained status(es) "
                      << (dry_run ? "would be cleared" : "cleared")
                      << (purged.refused.empty() ? "" : ", " + std::to_string(purged.refused.size()) + " not cleared")
                      << "\n";
            return rc;
        }

        if (once) {
            // A snapshot is complete or says it is not: exit 4 when the connection is gone, 5 when the retained
            // burst is not known complete; the table is printed then only with --allow-partial.
            const auto st = scan.status();
            int rc = 0;
            if (!st.connected) {
                std::cerr << "mqtt-presence-scanner: lost the connection to " << opts.server_uri
                          << " during the sync; no table printed\n";
                rc = 4;
            } else if (!synced) {
                std::cerr << "mqtt-presence-scanner: sync not complete after " << timeout_text << " ("
                          << scan.stats().messages << " statuses read); the table would be partial (a longer "
                          << "--timeout for a large fleet; a broker that drops messages, e.g. mosquitto below its "
                          << "max_queued_messages, never completes it)\n";
                rc = 5;
            } else if (st.sync != sync_state::complete) {
                std::cerr << "mqtt-presence-scanner: the sync is not verified: "
                          << (st.broker_dropped > 0 ? "the broker reports " + std::to_string(st.broker_dropped) +
                                                          " dropped messages"
                                                    : std::string("the sync marker did not come back"))
                          << "; the broker may have dropped statuses (mosquitto: raise max_queued_messages, or "
                             "set it to 0 with max_queued_bytes 0, above the fleet size); the table may be partial\n";
                rc = 5;
            }
            required_clients check(required);
            if (rc == 0 || allow_partial) write_snapshot(scan, format, tty && !no_color, check);
            if (rc == 0) rc = check.report();  // a partial table cannot say a client is missing: exit 5, not 3
            // The output is out and the connection closed cleanly: leave without freeing a large table and
            // without Paho's destructor (100-200 ms). A scanner has no will, so nothing is lost.
            std::cout.flush();
            std::cerr.flush();
            scan.stop();
            std::_Exit(rc);
        }

        std::string filters;
        for (const auto& s : scan.schemes()) filters += (filters.empty() ? "" : " ") + s.filter();
        auto drawn = std::chrono::steady_clock::time_point{};
        while (!interrupted) {
            // Redraw after a change (at most five times a second) and every second, as the ages move on. Only a
            // screenful of rows is copied out of the table, so a million clients cost little to watch.
            const auto now = std::chrono::steady_clock::now();
            if (live_table && (dirty.exchange(false) || now - drawn >= std::chrono::seconds(1))) {
                drawn = now;
                const auto rows = visible_rows();
                const auto text = render_table(result_of(scan, scan.snapshot(rows)), clock::now(), !no_color);
                std::lock_guard<std::mutex> lock(out_mutex);
                const auto st = scan.status();
                std::string state_note;
                if (!st.connected)  // the rows are what the scanner knew when it lost the broker
                    state_note = std::string(no_color ? "" : "\x1b[1;31m") + "  DISCONNECTED" +
                                 (st.since ? " since " + format_iso8601(*st.since).substr(11, 8) + " UTC" : "") +
                                 ": rows as of then; reconnecting" + (no_color ? "" : "\x1b[0m");
                else if (st.sync == sync_state::syncing) state_note = "  (syncing)";
                else if (st.sync == sync_state::unverified) state_note = "  (sync not verified: rows may be missing)";
                std::cout << "\x1b[H\x1b[2J" << opts.server_uri << "  " << filters << "  "
                          << format_iso8601(clock::now()).substr(11, 8) << " UTC" << state_note << "\n"
                          << text << std::flush;
            }
            usleep(200'000);
        }
        scan.stop();
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
