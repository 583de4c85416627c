#include "scanner_service.hpp"
#include "cli_options.hpp"
#include "exit_codes.hpp"
#include "service_notify.hpp"

#include <malloc.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>

#include <nlohmann/json.hpp>

#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/topic_scheme.hpp>
#include <mqtt_presence/service/dashboard.hpp>
#include <mqtt_presence/service/ha_discovery.hpp>
#include <mqtt_presence/service/history_json.hpp>
#include <mqtt_presence/service/service_client.hpp>
#include <mqtt_presence/service/history_reader.hpp>
#include <mqtt_presence/service/presence_service.hpp>

using namespace mqtt_presence;

namespace service_cli {
namespace {

std::string db_of(const settings& s) { return s.db.empty() ? default_db_path() : s.db; }

// serve creates the folders of the history's path, as `mkdir -p` would (a fresh home has no ~/.local/state).
void make_parents(const std::string& path) {
    for (auto slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1))
        ::mkdir(path.substr(0, slash).c_str(), 0755);  // EEXIST for those that are there; open() says the rest
}

std::string seconds_text(std::chrono::milliseconds d) { return std::to_string(d.count() / 1000); }

// An uptime in percent: "99.123" in CSV (empty when nothing was watched), "99.12%" for a person ("?").
std::string percent_text(std::optional<double> p, bool csv) {
    char text[32] = "";
    if (p) std::snprintf(text, sizeof text, csv ? "%.3f" : "%.2f%%", *p);
    else if (!csv) std::snprintf(text, sizeof text, "?");
    return text;
}

double number(const std::string& text, const char* what) {
    try {
        std::size_t used = 0;
        const double v = std::stod(text, &used);
        if (used == text.size()) return v;
    } catch (const std::exception&) {
    }
    throw error(std::string("the alert ") + what + " must be a number, not " + text);
}

// `text` with $NAME and ${NAME} replaced by the environment's values (a receiver's token kept off the command line
// and out of files); an unset one is an error naming `option`.
std::string with_environment(const std::string& text, const char* option) {
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
        if (text[i] != '$') {
            out += text[i++];
            continue;
        }
        const bool braced = i + 1 < text.size() && text[i + 1] == '{';
        std::size_t end = i + (braced ? 2 : 1);
        while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) ++end;
        const auto name = text.substr(i + (braced ? 2 : 1), end - i - (braced ? 2 : 1));
        if (name.empty() || (braced && (end >= text.size() || text[end] != '}'))) {
            out += text[i++];  // a lone '$' is itself
            continue;
        }
        const char* value = std::getenv(name.c_str());
        if (value == nullptr) throw error(std::string(option) + ": the environment variable " + name + " is not set");
        out += value;
        i = end + (braced ? 1 : 0);
    }
    return out;
}

// The alert settings: the --alert-config file's, then the command line's over them.
settings alert_settings(const settings& cli) {
    settings s = cli;
    if (cli.alert_config.empty()) return s;
    std::ifstream in(cli.alert_config);
    if (!in) throw error("--alert-config " + cli.alert_config + ": cannot read the file");
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_object())
        throw error("--alert-config " + cli.alert_config + ": not a JSON object (see docs/service.md, Alerts)");
    static const std::vector<std::string> known{"after", "flap_count", "flap_window", "outage_percent", "only",
                                                "exclude", "on_new", "on_removed", "exec", "exec_timeout",
                                                "webhook", "template", "cafile", "headers", "public_url"};
    for (const auto& [key, value] : j.items())
        if (std::find(known.begin(), known.end(), key) == known.end())
            throw error("--alert-config " + cli.alert_config + ": unknown setting \"" + key + "\"");
    const auto text = [&](const char* key, std::string& field) {
        if (!field.empty() || !j.contains(key)) return;
        const auto& v = j[key];
        if (v.is_string()) field = v.get<std::string>();
        else if (v.is_number()) field = v.dump();
        else throw error("--alert-config: \"" + std::string(key) + "\" must be a string or a number");
    };
    text("after", s.alert_after);
    text("flap_count", s.alert_flap_count);
    text("flap_window", s.alert_flap_window);
    text("outage_percent", s.alert_outage_percent);
    text("exec", s.alert_exec);
    text("exec_timeout", s.alert_exec_timeout);
    text("webhook", s.alert_webhook);
    text("template", s.alert_template);
    text("cafile", s.alert_cafile);
    text("public_url", s.public_url);
    const auto list = [&](const char* key, std::vector<std::string>& field) {
        if (!field.empty() || !j.contains(key)) return;
        if (!j[key].is_array()) throw error("--alert-config: \"" + std::string(key) + "\" must be a list of names");
        for (const auto& v : j[key]) {
            if (!v.is_string()) throw error("--alert-config: \"" + std::string(key) + "\" must be a list of names");
            field.push_back(v.get<std::string>());
        }
    };
    list("only", s.alert_only);
    list("exclude", s.alert_exclude);
    list("headers", s.alert_headers);
    const auto flag = [&](const char* key, bool& field) {
        if (field || !j.contains(key)) return;
        if (!j[key].is_boolean()) throw error("--alert-config: \"" + std::string(key) + "\" must be true or false");
        field = j[key].get<bool>();
    };
    flag("on_new", s.alert_on_new);
    flag("on_removed", s.alert_on_removed);
    return s;
}

}  // namespace

std::string default_db_path() {
    if (const char* db = std::getenv("MQTT_PRESENCE_DB"); db && *db) return db;
    if (const char* state = std::getenv("XDG_STATE_HOME"); state && *state)
        return std::string(state) + "/mqtt-presence/history.db";
    const char* home = std::getenv("HOME");
    return std::string(home && *home ? home : ".") + "/.local/state/mqtt-presence/history.db";
}

void restore(scanner& scan, const settings& s) {
    const history_reader db(db_of(s));
    scan.restore(db.current_rows());
    scan.resume_cadences(db.cadences());  // what --expect auto learned in the service
}

namespace {

// --listen and its login and TLS options; nullopt for --listen off.
std::optional<http_options> http_settings(const settings& s) {
    if (s.listen == "off") return std::nullopt;
    http_options http;
    http.parse_listen(s.listen);
    http.user = s.http_user;
    if (!s.http_pw_env.empty()) {
        const char* pw = std::getenv(s.http_pw_env.c_str());
        if (!pw || !*pw) throw error("--http-pw-env " + s.http_pw_env + ": that environment variable is not set");
        http.password = pw;
    }
    if (!s.http_pw_file.empty()) http.password = cli::read_secret_file("--http-pw-file", s.http_pw_file);
    http.cert_file = s.http_cert;
    http.max_per_address = s.http_max_per_address;
    http.key_file = s.http_key;
    http.validate();
    return http;
}

// The alert rules and sinks (from --alert-config, then the command line), if any sink or rule was asked for.
void alert_settings_into(const settings& s, service_options& o) {
    const auto rules = alert_settings(s);
    if (rules.alert_exec.empty() && rules.alert_webhook.empty() && rules.alert_after.empty() &&
        s.alert_webhook_for.empty())
        return;
    alert_options a;
    if (!rules.alert_after.empty()) a.after = parse_duration(rules.alert_after);
    if (!rules.alert_flap_window.empty()) a.flap_window = parse_duration(rules.alert_flap_window);
    if (!rules.alert_flap_count.empty())
        a.flap_count = static_cast<std::uint32_t>(number(rules.alert_flap_count, "flap count"));
    if (!rules.alert_outage_percent.empty()) a.outage_percent = number(rules.alert_outage_percent, "outage percent");
    a.only = rules.alert_only;
    a.exclude = rules.alert_exclude;
    a.on_new = rules.alert_on_new;
    a.on_removed = rules.alert_on_removed;
    a.validate();
    o.alerts = a;
    o.sinks.exec = rules.alert_exec;
    if (!rules.alert_exec_timeout.empty()) o.sinks.exec_timeout = parse_duration(rules.alert_exec_timeout);
    o.sinks.webhook = rules.alert_webhook;
    for (const auto& text : s.alert_webhook_for) {
        const auto eq = text.find('=');
        if (eq == std::string::npos || eq == 0)
            throw error("--alert-webhook-for " + text + ": give GROUP=URL, e.g. garage=https://ntfy.example/garage");
        o.sinks.group_webhooks.emplace_back(text.substr(0, eq), text.substr(eq + 1));
    }
    o.sinks.template_text = rules.alert_template;
    o.sinks.ca_file = rules.alert_cafile;
    for (const auto& h : rules.alert_headers) o.sinks.headers.push_back(with_environment(h, "--alert-header"));
    o.sinks.public_url = rules.public_url;
    o.sinks.validate();
}

service_options service_settings(const scanner_options& opts, const settings& s) {
    service_options o;
    o.scan = opts;
    o.history.path = db_of(s);
    o.history.keep = parse_duration(s.keep);
    o.observer = s.observer;
    if (s.notary) {
        o.notary.emplace();
        if (!s.notary->empty()) o.notary->topic_template = *s.notary;
    }
    if (s.ha_prefix) o.ha_prefix = s.ha_prefix->empty() ? std::string(ha_discovery::default_prefix) : *s.ha_prefix;
    o.ha_exclude = s.ha_exclude;
    for (const auto& name : s.ha_exclude) (void)topic_scheme::convention_templates(name);  // an unknown one: exit 2
    alert_settings_into(s, o);
    for (const auto& text : s.silence_every) o.recurring_silences.push_back(recurring_silence::parse(text));
    return o;
}

}  // namespace

namespace {

// A frozen broker or a cut path keeps the connection open until the keepalive gives up (1.5 keepalives): the
// scanner's probe says it sooner. One line when the silence passes no_news_after, one when the broker answers again.
void say_broker_silence(const scanner_status& st, bool& said) {
    const bool silent = st.no_news(clock::now());
    if (silent == said || (!silent && !st.connected)) return;  // a lost connection has its own line
    said = silent;
    if (silent)
        std::cerr << "mqtt-presence-scanner: no round trip through the broker for " << no_news_after.count()
                  << " s (last heard " << format_iso8601(*st.last_heard)
                  << "): frozen or cut; the table is as of then\n";
    else
        std::cerr << "mqtt-presence-scanner: the broker answers again\n";
}

// A history that stopped answering (its writer held in one call while changes wait) is said once, and its return.
void say_history_silence(const history_stats& h, bool& said, std::mutex& out) {
    const bool silent = h.unanswered >= history_stats::stuck_after;
    if (silent == said) return;
    said = silent;
    std::lock_guard<std::mutex> lock(out);
    if (silent) std::cerr << "mqtt-presence-scanner: " << terminal_safe(h.last_error, 400) << "\n";
    else std::cerr << "mqtt-presence-scanner: the history answers again\n";
}

// Waits `d`, or less when a signal asks to stop; systemd hears from the service meanwhile.
void pause_unless(const std::atomic<bool>& interrupted, std::chrono::milliseconds d, presence_service& svc,
                  service_notify& notify) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (!interrupted && std::chrono::steady_clock::now() < until) {
        usleep(50'000);
        notify.tick(svc);
    }
}

// Starts the service; a broker that is not there yet (a boot race, a restart) is waited for, with a line per
// attempt and a back-off from 0.5 s doubling to 5 s. Returns an exit code when the service must not run.
std::optional<int> start_with_retry(presence_service& svc, const std::atomic<bool>& interrupted, std::mutex& out,
                                    service_notify& notify) {
    std::chrono::milliseconds backoff{500};
    for (int attempt = 1; !interrupted; ++attempt) {
        try {
            svc.start();
            return std::nullopt;
        } catch (const notary_conflict& e) {
            std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
            return exit_code::in_use;
        } catch (const error& e) {
            std::lock_guard<std::mutex> lock(out);
            std::cerr << "mqtt-presence-scanner: attempt " << attempt << ": " << terminal_safe(e.what(), 400)
                      << "; retrying in " << backoff.count() << " ms\n";
        }
        pause_unless(interrupted, backoff, svc, notify);
        backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(5));
    }
    return std::nullopt;
}

// SIGHUP: the alert settings are read again (the --alert-config file and the command line over it).
void reload_alerts(presence_service& svc, const scanner_options& opts, const settings& s, std::mutex& out) {
    std::string line;
    try {
        const auto fresh = service_settings(opts, s);
        line = svc.reload_alerts(fresh.alerts, fresh.sinks);
    } catch (const error& e) {
        line = std::string("SIGHUP: the alert settings were not changed: ") + e.what();
    }
    std::lock_guard<std::mutex> lock(out);
    std::cerr << "mqtt-presence-scanner: " << terminal_safe(line, 400) << "\n";
}

}  // namespace

namespace {

// serve --ha-discovery-remove: the configs and states of every client the broker holds a status of, cleared.
int remove_ha_discovery(const scanner_options& opts, const settings& s) {
    const std::string prefix = s.ha_prefix && !s.ha_prefix->empty() ? *s.ha_prefix : ha_discovery::default_prefix;
    try {
        scanner scan(opts);
        ha_discovery ha(scan, prefix);
        scan.start();
        if (!scan.wait_synced(std::chrono::seconds(10)))
            std::cerr << "mqtt-presence-scanner: the sync did not end within 10 s: clearing what it found so far\n";
        const auto n = ha.remove_all();
        const bool acknowledged = scan.wait_published(std::chrono::seconds(10));
        scan.stop();
        std::cerr << "mqtt-presence-scanner: cleared the Home Assistant discovery of " << n << " clients under "
                  << terminal_safe(prefix) << (acknowledged ? "" : " (not all acknowledged by the broker)") << "\n";
        return acknowledged ? exit_code::ok : exit_code::failure;
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
        return exit_code::unreachable;
    }
}

// A follower looks at the leader every 100 ms (and takes over when it is gone); a leader that took over retries
// what did not start then (the notary's lock, held until the old leader's will) every second. A database that cannot
// be asked is said when the reason changes.
void keep_role(presence_service& svc, std::mutex& out, std::string& said) {
    const auto say_once = [&](const char* what, const std::exception& e) {
        if (e.what() == said) return;
        said = e.what();
        std::lock_guard<std::mutex> lock(out);
        std::cerr << "mqtt-presence-scanner: " << what << terminal_safe(said, 400) << "\n";
    };
    if (svc.leading()) {
        if (svc.complete()) return;
        try {
            svc.start();
        } catch (const std::exception& e) {
            say_once("leading, not yet whole (tried again every second): ", e);
        }
        return;
    }
    try {
        svc.follow();
        said.clear();
    } catch (const std::exception& e) {
        say_once("follower: ", e);
    }
}

// The history's writer or, when another serve leads a PostgreSQL history, its follower; null (and `refused` the
// exit code) when neither can be.
std::unique_ptr<presence_service> open_service(service_options& o, int& refused) {
    try {
        return std::make_unique<presence_service>(o);
    } catch (const history_locked& e) {
        if (!history_is_postgresql(o.history.path)) {  // a file has one writer and no follower
            std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
            refused = exit_code::in_use;
            return nullptr;
        }
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
        refused = exit_code::usage;
        return nullptr;
    }
    std::cerr << "mqtt-presence-scanner: another serve leads (writes) this history: following it, with a live "
                 "table and dashboard of its own, and taking over when it stops\n";
    o.follower = true;
    try {
        return std::make_unique<presence_service>(o);
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
        refused = exit_code::usage;
        return nullptr;
    }
}

// The last line of a serve: what was written, what was not, and the exit code that says it.
int say_stopped(const presence_service& svc, bool superseded) {
    if (!svc.leading()) {
        std::cerr << "mqtt-presence-scanner: stopped (a follower: it wrote nothing)\n";
        return exit_code::ok;
    }
    const auto h = svc.history_figures();
    const bool lost = h.dropped > 0 || h.queued > 0;
    std::cerr << "mqtt-presence-scanner: stopped; " << h.written << " changes written"
              << (h.dropped > 0 ? ", " + std::to_string(h.dropped) + " dropped (the history has a gap)" : "")
              << (h.queued > 0 ? ", " + std::to_string(h.queued) + " not written (" +
                                     terminal_safe(h.last_error, 300) + ")"
                               : "")
              << "\n";
    if (superseded) return exit_code::superseded;
    return lost ? exit_code::failure : exit_code::ok;
}

}  // namespace

int run_serve(const scanner_options& opts, const settings& s, const std::atomic<bool>& interrupted,
              std::atomic<bool>& reload) {
    if (s.ha_remove) return remove_ha_discovery(opts, s);
    // Each HTTP thread would otherwise keep a malloc arena of its own, holding on to the largest answer it ever
    // built (a 100,000-row sort: 35 MiB a thread).
    mallopt(M_ARENA_MAX, 4);
    // Every dashboard connection is a descriptor: the soft limit (often 1024) up to the hard one.
    rlimit files{};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &files);
    }
    service_options o;
    std::optional<http_options> http;
    std::unique_ptr<presence_service> svc;
    service_notify notify;
    try {
        http = http_settings(s);
        o = service_settings(opts, s);
        if (!history_is_postgresql(o.history.path)) make_parents(o.history.path);
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
        return exit_code::usage;
    }
    int cannot = exit_code::ok;
    svc = open_service(o, cannot);
    if (!svc) return cannot;
    std::mutex out;
    svc->on_line([&out](const std::string& line) {
        std::lock_guard<std::mutex> lock(out);
        std::cerr << "mqtt-presence-scanner: " << terminal_safe(line, 400) << "\n";
    });
    std::unique_ptr<dashboard> web;
    if (http) {
        try {
            web = std::make_unique<dashboard>(*svc, *http);  // before start(): its live feed sees every commit
        } catch (const address_in_use& e) {
            std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
            return exit_code::in_use;
        } catch (const error& e) {
            std::cerr << "mqtt-presence-scanner: " << e.what() << " (--listen HOST:PORT, or --listen off)\n";
            return exit_code::usage;
        }
        if (!http->loopback() && http->user.empty())
            std::cerr << "mqtt-presence-scanner: warning: the dashboard listens on " << http->host
                      << " without a password: anyone who reaches it sees every client (--http-user, --http-pw-env)\n";
    }
    std::cerr << "mqtt-presence-scanner: " << (svc->leading() ? "serving " : "following another serve on ")
              << o.scan.broker.server_uri << ", history in " << svc->history_name()
              << (svc->notary() ? ", notary on " + svc->notary()->filter() : std::string()) << "\n";
    if (web) std::cerr << "mqtt-presence-scanner: dashboard: " << web->url() << "\n";
    notify.tick(*svc);
    if (const auto refused = start_with_retry(*svc, interrupted, out, notify)) return *refused;
    bool said_no_news = false;
    bool said_unanswered = false;
    bool superseded = false;
    std::string said_role;
    for (unsigned round = 0; !interrupted && !superseded; ++round) {
        usleep(50'000);
        notify.tick(*svc);
        say_broker_silence(svc->table().status(), said_no_news);
        if (reload.exchange(false)) reload_alerts(*svc, opts, s, out);
        if (round % (svc->leading() ? 20 : 2) == 0) keep_role(*svc, out, said_role);
        const auto figures = svc->history_figures();
        say_history_silence(figures, said_unanswered, out);
        superseded = figures.superseded;
    }
    if (superseded)
        std::cerr << "mqtt-presence-scanner: another serve took over the history while this one could not write "
                     "(its lock went with its connection); stopping\n";
    notify.stopping();
    if (web) web->stop();
    svc->stop();
    return say_stopped(*svc, superseded);
}

int run_history(const settings& s) {
    std::vector<history_event> events;
    try {
        const history_reader reader(db_of(s));
        events = reader.events_of(s.client, clock::now() - parse_duration(s.since));
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
        return exit_code::usage;
    }
    if (events.empty())
        std::cerr << "mqtt-presence-scanner: no events of " << terminal_safe(s.client) << " in the last " << s.since
                  << "\n";
    if (s.format == "json") {
        std::cout << history_json(s.client, events) << "\n";
    } else if (s.format == "ndjson") {
        for (const auto& e : events) std::cout << history_event_json(e, true) << "\n";
    } else if (s.format == "csv") {
        std::cout << "time,observed,client,state,stale,previous,cause,epoch,topic,ip,retained,overdue\n";
        for (const auto& e : events)
            std::cout << (e.time ? format_iso8601(*e.time) : "") << "," << format_iso8601(e.observed) << ","
                      << csv_field(e.client) << "," << to_string(e.status) << "," << (e.stale ? "true" : "false")
                      << "," << (e.previous ? std::string(to_string(*e.previous)) : "") << "," << to_string(e.why)
                      << "," << (e.epoch ? std::to_string(*e.epoch) : "") << "," << csv_field(e.topic) << ","
                      << csv_field(e.ip) << "," << (e.retained ? "true" : "false") << ","
                      << (e.overdue ? "true" : "false") << "\n";
    } else {
        std::cout << fit_cell("TIME", 26) << "  " << fit_cell("STATE", 13) << "  " << fit_cell("CAUSE", 9) << "  "
                  << fit_cell("WAS", 12) << "  " << fit_cell("IP", 15) << "  TOPIC\n";
        for (const auto& e : events) {
            const auto when = e.time ? format_iso8601(*e.time) : "unknown (seen " + format_iso8601(e.observed).substr(11, 8) + ")";
            std::cout << fit_cell(when, 26) << "  " << fit_cell(e.overdue ? "overdue" : e.stale ? "stale" : std::string(to_string(e.status)), 13)
                      << "  " << fit_cell(to_string(e.why), 9) << "  "
                      << fit_cell(e.previous ? to_string(*e.previous) : "-", 12) << "  " << fit_cell(e.ip, 15) << "  "
                      << terminal_safe(e.topic) << "\n";
        }
    }
    return exit_code::ok;
}

namespace {

// uptime --by group: a group's clients by the --group rules, with each client's metadata from the history's rows.
void print_group_uptime(const settings& s, const std::vector<uptime_figures>& rows,
                        const std::vector<client_status>& current, time_point from, time_point to) {
    const client_groups groups(s.groups);
    std::map<std::pair<std::string, std::string>, const client_status*> by_key;
    for (const auto& r : current) by_key[{r.client, r.topic}] = &r;
    auto figures = uptime_by_group(rows, groups.names(), [&](const uptime_figures& f) {
        const auto it = by_key.find({f.client, f.topic});
        return it != by_key.end() ? groups.of(*it->second) : groups.of(f.client, f.topic);
    });
    if (s.sort == "uptime")
        std::stable_sort(figures.begin(), figures.end(), [](const auto& a, const auto& b) {
            return a.uptime_percent().value_or(-1.0) < b.uptime_percent().value_or(-1.0);
        });
    if (s.format == "json") {
        std::cout << group_uptime_json(s.window, from, to, figures) << "\n";
        return;
    }
    if (s.format == "ndjson") {
        for (const auto& g : figures) std::cout << group_uptime_row_json(g) << "\n";
        return;
    }
    const bool csv = s.format == "csv";
    if (csv) std::cout << "group,clients,down_now,uptime_percent,up_s,down_s,unknown_s,disconnects,flaps,longest_outage_s\n";
    else
        std::cout << fit_cell("GROUP", 20) << "  " << fit_cell("CLIENTS", 7) << "  " << fit_cell("DOWN", 5) << "  "
                  << fit_cell("UPTIME", 8) << "  " << fit_cell("DOWNS", 5) << "  " << fit_cell("FLAPS", 5) << "  "
                  << fit_cell("LONGEST", 8) << "  UNKNOWN\n";
    for (const auto& g : figures) {
        const auto percent = percent_text(g.uptime_percent(), csv);
        if (csv)
            std::cout << csv_field(g.group) << "," << g.clients << "," << g.down_now << "," << percent << ","
                      << seconds_text(g.up) << "," << seconds_text(g.down) << "," << seconds_text(g.unknown) << ","
                      << g.disconnects << "," << g.flaps << "," << seconds_text(g.longest_outage) << "\n";
        else
            std::cout << fit_cell(g.group, 20) << "  " << fit_cell(std::to_string(g.clients), 7) << "  "
                      << fit_cell(std::to_string(g.down_now), 5) << "  " << fit_cell(percent, 8) << "  "
                      << fit_cell(std::to_string(g.disconnects), 5) << "  " << fit_cell(std::to_string(g.flaps), 5)
                      << "  " << fit_cell(format_duration(g.longest_outage), 8) << "  "
                      << format_duration(g.unknown) << "\n";
    }
    if (!csv) std::cerr << figures.size() << " groups over the last " << s.window << "; UNKNOWN: time nobody watched\n";
}

}  // namespace

int run_uptime(const settings& s) {
    std::vector<uptime_figures> rows;
    std::vector<client_status> current;
    const auto to = clock::now();
    std::chrono::milliseconds window{};
    try {
        window = parse_duration(s.window);
        const history_reader reader(db_of(s));
        rows = reader.uptime(to - window, to, parse_duration(s.flap_interval));
        if (s.by == "group") current = reader.current_rows();
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
        return exit_code::usage;
    }
    if (s.by == "group") {
        print_group_uptime(s, rows, current, to - window, to);
        return exit_code::ok;
    }
    const auto pct = [](const uptime_figures& f) { return f.uptime_percent().value_or(-1.0); };
    if (s.sort == "uptime")  // worst first: the ones to look at
        std::stable_sort(rows.begin(), rows.end(), [&](const auto& a, const auto& b) { return pct(a) < pct(b); });
    else if (s.sort == "disconnects")
        std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.disconnects > b.disconnects; });
    else if (s.sort == "flaps")
        std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.flaps > b.flaps; });
    else if (s.sort == "outage")
        std::stable_sort(rows.begin(), rows.end(),
                         [](const auto& a, const auto& b) { return a.longest_outage > b.longest_outage; });
    if (s.format == "json") {
        std::cout << uptime_json(s.window, to - window, to, rows) << "\n";
    } else if (s.format == "ndjson") {
        for (const auto& f : rows) std::cout << uptime_row_json(f) << "\n";
    } else if (s.format == "csv") {
        std::cout << "client,topic,state,uptime_percent,up_s,down_s,unknown_s,disconnects,flaps,longest_outage_s,last_seen\n";
        for (const auto& f : rows) {
            std::cout << csv_field(f.client) << "," << csv_field(f.topic) << "," << f.state << ","
                      << percent_text(f.uptime_percent(), true) << ","
                      << seconds_text(f.up) << "," << seconds_text(f.down) << "," << seconds_text(f.unknown) << ","
                      << f.disconnects << "," << f.flaps << "," << seconds_text(f.longest_outage) << ","
                      << (f.last_seen ? format_iso8601(*f.last_seen) : "") << "\n";
        }
    } else {
        std::cout << fit_cell("CLIENT", 24) << "  " << fit_cell("STATE", 12) << "  " << fit_cell("UPTIME", 8) << "  "
                  << fit_cell("DOWNS", 5) << "  " << fit_cell("FLAPS", 5) << "  " << fit_cell("LONGEST", 8) << "  "
                  << fit_cell("UNKNOWN", 8) << "  TOPIC\n";
        for (const auto& f : rows) {
            std::cout << fit_cell(f.client, 24) << "  " << fit_cell(f.state, 12) << "  "
                      << fit_cell(percent_text(f.uptime_percent(), false), 8) << "  "
                      << fit_cell(std::to_string(f.disconnects), 5) << "  " << fit_cell(std::to_string(f.flaps), 5)
                      << "  " << fit_cell(format_duration(f.longest_outage), 8) << "  "
                      << fit_cell(format_duration(f.unknown), 8) << "  " << terminal_safe(f.topic) << "\n";
        }
        std::cerr << rows.size() << " clients over the last " << s.window << "; UNKNOWN: time nobody watched\n";
    }
    return exit_code::ok;
}

}  // namespace service_cli

namespace service_cli {

namespace {

// The running service's answer as the person reads it; false when it refused (said on stderr).
bool shown(const mqtt_presence::service_reply& reply, const settings& s) {
    const auto body = nlohmann::json::parse(reply.body, nullptr, false);
    if (reply.status == 401) {
        std::cerr << "mqtt-presence-scanner: the service asks for a login: --http-user and --http-pw-env\n";
        return false;
    }
    if (reply.status < 200 || reply.status > 299) {
        const auto why = body.is_object() && body.contains("error") ? body["error"].get<std::string>() : reply.body;
        std::cerr << "mqtt-presence-scanner: the service refused (HTTP " << reply.status
                  << "): " << terminal_safe(why, 300) << "\n";
        return false;
    }
    if (s.format == "json") {
        std::cout << reply.body;
        if (reply.body.empty() || reply.body.back() != '\n') std::cout << "\n";
        return true;
    }
    const auto list = body.is_object() && body.contains("silences") ? body["silences"] : nlohmann::json::array({body});
    std::cout << fit_cell("ID", 16) << "  " << fit_cell("TARGET", 24) << "  " << fit_cell("UNTIL", 24) << "  "
              << fit_cell("BY", 22) << "  REASON\n";
    const auto text = [](const nlohmann::json& j, const char* key) {
        return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string("-");
    };
    for (const auto& x : list)
        std::cout << fit_cell(text(x, "id"), 16) << "  " << fit_cell(text(x, "target"), 24) << "  "
                  << fit_cell(x.contains("ended") && x["ended"].is_string() ? "ended " + text(x, "ended") : text(x, "until"), 24) << "  "
                  << fit_cell(text(x, "by"), 22) << "  " << terminal_safe(text(x, "reason"), 80) << "\n";
    if (body.contains("held"))
        std::cerr << list.size() << " silences running; " << body["held"].get<std::uint64_t>()
                  << " alerts held since the service started\n";
    return true;
}

}  // namespace

int run_silence(const settings& s) {
    mqtt_presence::service_endpoint to;
    to.url = s.server;
    to.user = s.http_user;
    to.cafile = s.server_cafile;
    if (!s.http_pw_env.empty()) {
        const char* password = std::getenv(s.http_pw_env.c_str());
        if (!password) {
            std::cerr << "mqtt-presence-scanner: --http-pw-env " << s.http_pw_env << ": no such variable is set\n";
            return exit_code::usage;
        }
        to.password = password;
    }
    try {
        mqtt_presence::service_reply reply;
        if (s.silence_list) {
            reply = mqtt_presence::call_service(to, "GET", "/api/silences");
        } else if (!s.silence_end.empty()) {
            reply = mqtt_presence::call_service(to, "DELETE", "/api/silences/" + s.silence_end);
        } else {
            const nlohmann::json body{{"target", s.silence_target}, {"for", s.silence_for}, {"reason", s.silence_reason}};
            reply = mqtt_presence::call_service(to, "POST", "/api/silences", body.dump());
        }
        return shown(reply, s) ? exit_code::ok : exit_code::usage;
    } catch (const error& e) {
        std::cerr << "mqtt-presence-scanner: " << e.what() << "\n";
        return exit_code::unreachable;
    }
}

}  // namespace service_cli
