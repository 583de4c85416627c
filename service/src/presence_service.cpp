#include <mqtt_presence/service/presence_service.hpp>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <set>

#include <unistd.h>

#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/service/history_reader.hpp>
#include <mqtt_presence/this_machine.hpp>

#include "ha_availability.hpp"
#include "recent_changes.hpp"

namespace mqtt_presence {

namespace {
// True if any of the filters the scanner subscribes for `templ` matches topics of `ours`.
bool reads_back(const std::string& templ, const std::string& ours) {
    const auto scheme = topic_scheme::parse(templ);
    return std::any_of(scheme.subscription_filters().begin(), scheme.subscription_filters().end(),
                       [&](const std::string& f) { return filters_overlap(f, ours); });
}
}  // namespace

void service_options::validate() const {
    scan.validate();
    if (ha_prefix) {
        const auto configs = *ha_prefix + "/binary_sensor/mqtt_presence/+/+";  // config and state
        for (const auto& t : scan.topics)
            if (reads_back(t, configs))
                throw error("the Home Assistant configs go to " + configs + ", which the status topic " + t +
                            " would read back; give another --ha-discovery prefix");
    }
    if (!notary) return;
    const death_notary probe(scan.broker, *notary);
    for (const auto& t : scan.topics)
        for (const auto& ours : {probe.filter(), probe.lock_topic()})
            if (reads_back(t, ours))
                throw error("the notary writes " + ours + ", which the status topic " + t +
                            " would read back as statuses; give the notary another template (--notary TEMPLATE)");
}

std::size_t restore_table(const history_store& store, scanner& scan) {
    std::size_t restored = 0;
    std::vector<client_status> chunk;
    store.for_each_current_row([&](const client_status& row) {
        chunk.push_back(row);
        if (chunk.size() < 4096) return;
        restored += scan.restore(std::move(chunk));
        chunk.clear();
    });
    return restored + scan.restore(std::move(chunk));
}

presence_service::presence_service(service_options options) : options_(std::move(options)) {
    options_.validate();
    scanner_options scan = options_.scan;
    if (options_.follower) {
        // A client id given for the pair must not be shared by its two scanners (the broker would end one's session
        // at each connect of the other): a follower's carries its host and pid.
        if (!scan.broker.client_id.empty())
            scan.broker.client_id += "-" + host_name() + "-" + std::to_string(::getpid());
        const history_reader db(options_.history.path);
        history_name_ = db.name();
        name_observer();
        scanner_ = std::make_unique<scanner>(scan);
        restored_ = scanner_->restore(db.current_rows());
        scanner_->resume_cadences(db.cadences());
        recent_ = std::make_unique<detail::recent_changes>();
    } else {
        store_ = std::make_unique<history_store>(options_.history);
        history_name_ = store_->path();
        name_observer();
        forward_commits();
        scanner_ = std::make_unique<scanner>(scan);
        restored_ = restore_table(*store_, *scanner_);
        scanner_->resume_cadences(store_->cadences());
        if (options_.notary) notary_ = std::make_unique<death_notary>(options_.scan.broker, *options_.notary);
        if (options_.alerts) {
            engine_ = make_engine(*options_.alerts);
            sinks_ = make_sinks(options_.sinks);
        }
        leading_ = true;
    }
    silences_.recurring(options_.recurring_silences);
    if (options_.ha_prefix) {
        ha_ = std::make_unique<ha_discovery>(*scanner_, *options_.ha_prefix, options_.ha_exclude);
        ha_online_ = std::make_unique<detail::ha_availability>(options_.scan.broker, ha_->availability_topic());
        scanner_->on_message(ha_->status_topic(), [this](const std::string& payload) {
            // Home Assistant (re)started; a broker without persistence may have lost the retained configs.
            if (payload == "online" && leading_) ha_->publish_all();
        });
    }
    listen_to_scanner();
}

// A re-sync's removals wait in the scanner as compact rows: they go to the history's queue only as fast as its
// writer takes them (a broker that lost a million statuses is not a million changes in memory at once), unless the
// service stops (its last batch is bounded by the store).
void presence_service::pace_removal() {
    if (stopping_) return;
    history_store* store = nullptr;
    {
        std::lock_guard<std::mutex> lock(role_mutex_);
        store = store_.get();  // set once, never reset while the service lives
    }
    if (store) store->wait_for_room(paced_backlog, history_stats::stuck_after);
}

// The scanner's changes go to the history (a follower keeps them), the notary, the alerts and Home Assistant; its
// own state to the history's watch intervals, the alerts and the log.
void presence_service::listen_to_scanner() {
    scanner_->on_change([this](const change& c) {
        if (c.kind == change_kind::removed && !c.live) pace_removal();
        {
            std::lock_guard<std::mutex> lock(alert_mutex_);
            if (engine_ && engine_seeded_) emit(engine_->on_change(c, c.at));
        }
        if (cause_of(c) == cause::unseen) ++unseen_;
        bool following = false;
        {
            std::lock_guard<std::mutex> lock(role_mutex_);
            if (!store_) {  // following: kept for the takeover (what a sync learned, the leader learns itself)
                if (c.live) recent_->add(c);
                following = true;
            } else if (!(recent_ && recent_->written_ahead(c))) {  // (the old leader's, after a takeover)
                store_->record(c);
            }
            // A notary that took over and does not run yet gets the change when it does.
            if (notary_ && !notary_running_ && notary_handover_.size() < detail::recent_changes::most)
                notary_handover_.push_back(c);
        }
        if (following) {  // the live feed shows the follower's own table (no id: not in the history)
            const std::vector<history_store::committed> own{{0, &c}};
            commit_subscribers_.notify(own);
            return;
        }
        if (notary_running_) notary_->record(c);
        if (ha_) ha_->on_change(c);
    });
    scanner_->on_state([this](const scanner_status& st) {
        const bool watching = st.connected && st.sync != sync_state::syncing;
        {
            std::lock_guard<std::mutex> lock(role_mutex_);
            if (store_) store_->watching(watching, clock::now());
        }
        {
            std::lock_guard<std::mutex> lock(alert_mutex_);
            watching_ = watching;
            const auto now = clock::now();
            if (watching && !engine_seeded_) {
                if (engine_) seed_engine(now);
                engine_seeded_ = true;  // also without alerts: a reload that turns them on seeds from the table
            }
            if (engine_ && engine_seeded_) emit(engine_->on_service(watching, now));
            alert_cv_.notify_all();
        }
        self_subscribers_.notify(st);
        if (!watching) return;  // "connected" and "connection lost" come as status lines
        if (ha_ && !ha_published_ && leading_) {  // the rows the first sync confirmed (restored ones report no change)
            ha_published_ = true;
            ha_->publish_all();
        }
        const auto counts = scanner_->counts();
        say("synced" +
            std::string(st.sync == sync_state::complete ? ""
                        : st.sync == sync_state::partial
                            ? " (partial: the broker sends no retained status to a wildcard subscription; the "
                              "history's rows were asked for by their topics, new clients appear as they are heard)"
                            : " (not verified)") +
            ": " +
            std::to_string(counts.total()) + " clients (" + std::to_string(counts.connected) + " connected, " +
            std::to_string(counts.disconnected) + " disconnected)" +
            (unseen_ > 0 ? "; " + std::to_string(unseen_) + " changed while nobody watched" : ""));
        unseen_ = 0;
    });
    scanner_->on_status([this](const std::string& line) { say(line); });
}

presence_service::~presence_service() noexcept { stop(); }

// Who watches, for the history and the notary (unless given): this host and its history (a database's name never
// carries its password).
void presence_service::name_observer() {
    if (options_.observer.empty()) {
        char resolved[PATH_MAX];
        const char* path = history_is_postgresql(options_.history.path)
                               ? nullptr
                               : ::realpath(options_.history.path.c_str(), resolved);
        options_.observer = host_name() + ":" + (path ? std::string(path) : history_name_);
    }
    if (options_.notary && options_.notary->observer.empty()) options_.notary->observer = options_.observer;
}

void presence_service::forward_commits() {
    commits_ = store_->on_commit(
        [this](const std::vector<history_store::committed>& batch) { commit_subscribers_.notify(batch); });
}

history_stats presence_service::history_figures() const {
    return leading_ ? store_->stats() : mqtt_presence::history_stats{};
}

presence_service::leader_view presence_service::leader() const {
    std::lock_guard<std::mutex> lock(leader_mutex_);
    return leader_;
}

bool presence_service::follow(std::chrono::milliseconds stuck_after) {
    if (leading_) return true;
    try {
        // A look the database does not answer within 2 s is cut: a frozen server must not hold the owner's thread.
        if (!follower_reader_)
            follower_reader_ = std::make_unique<history_reader>(options_.history.path, std::chrono::seconds(2));
        const auto now = clock::now();
        const auto w = follower_reader_->writer();
        recent_->mark(w.last_event_id, w.last_observed);
        {
            std::lock_guard<std::mutex> lock(leader_mutex_);
            leader_.problem.clear();
            if (w.present) {
                leader_.who = w.who;
                leader_.seen = now;
            }
        }
        if (!w.present) {
            lead();
            return true;
        }
        if (++looks_ % 20 == 0) silences_.mirror(follower_reader_->silences(now));  // the leader's, every 2 s
        if (w.idle && *w.idle > stuck_after && follower_reader_->end_writer())
            say("the leader's database connection was idle for " + std::to_string(w.idle->count()) +
                " ms (stopped or hung): it was ended");
    } catch (const history_locked&) {
        // another follower was quicker
    } catch (const std::exception& e) {
        follower_reader_.reset();
        std::lock_guard<std::mutex> lock(leader_mutex_);
        leader_.problem = e.what();
        throw error(e.what());
    }
    return false;
}

// The history's session: what this service watches and who it is; the writer rewrites its clients from the table.
void presence_service::begin_history_session() {
    std::string topics;
    for (const auto& t : options_.scan.topics) topics += (topics.empty() ? "" : " ") + t;
    scanner* scan = scanner_.get();
    store_->begin_session(
        options_.scan.broker.server_uri, topics, options_.observer,
        [scan](const std::function<void(const client_status&)>& visit) { scan->for_each_sorted(visit); },
        [this](const std::string& w) { say(w); },
        [scan](std::int64_t since_unix_ms) { return scan->cadences(since_unix_ms); });
}

// The takeover: the lock, a session, the changes the history lacks, then what only a leader runs.
void presence_service::lead() {
    auto store = std::make_unique<history_store>(options_.history);  // history_locked: another was quicker
    // The old leader's last changes may be many: read with a longer bound than a look's.
    const history_reader reader(options_.history.path, std::chrono::seconds(30));
    std::vector<change> missing, recent;
    {
        // The delivery thread waits here (not Paho's): a change made meanwhile goes after the missing ones.
        std::lock_guard<std::mutex> lock(role_mutex_);
        missing = recent_->unwritten(reader, &recent);
        store_ = std::move(store);
        forward_commits();
        begin_history_session();
        for (const auto& c : missing) store_->record(c);
        if (options_.notary) {  // the records of the last changes again, once it runs: the old notary's died with it
            notary_ = std::make_unique<death_notary>(options_.scan.broker, *options_.notary);
            notary_handover_ = std::move(recent);
        }
        const auto st = scanner_->status();
        store_->watching(st.connected && st.sync != sync_state::syncing, clock::now());
        leading_ = true;
    }
    const auto let_go = recent_->overflowed();
    say("this serve leads now (the history's lock was free)" +
        (missing.empty() ? std::string()
                         : "; " + std::to_string(missing.size()) + " changes the old leader had not written, written") +
        (let_go == 0 ? std::string()
                     : "; " + std::to_string(let_go) + " changes were let go while more than " +
                           std::to_string(detail::recent_changes::most) +
                           " waited for the leader: the history may lack some of them"));
    follower_reader_.reset();
    restore_silences();
    start_alerts();
    try {
        start_leading_parts();
    } catch (const std::exception& e) {
        say(std::string("leading without all its parts yet (tried again): ") + e.what());
    }
}

// The alert engine and its sinks, seeded from the table (what is down and was paged is not paged again), the
// outbox delivered, the timer thread started.
void presence_service::start_alerts() {
    {
        std::lock_guard<std::mutex> lock(alert_mutex_);
        if (options_.alerts && !engine_) {
            engine_ = make_engine(*options_.alerts);
            sinks_ = make_sinks(options_.sinks);
            if (engine_seeded_) {
                const auto now = clock::now();
                seed_engine(now);
                emit(engine_->on_service(watching_, now));
            }
        }
    }
    deliver_outbox();
    if (engine_ && !alert_thread_.joinable()) alert_thread_ = std::thread([this] { alert_loop(); });
}

// The notary: its lock (a conflict throws mqtt_presence::error, and the next start() tries again), then the
// records it was handed at a takeover; from then on the delivery thread records each change.
void presence_service::start_notary() {
    if (!notary_ || notary_running_) return;
    notary_->on_line([this](const std::string& line) { say(line); });
    notary_->start(clock::now());
    std::lock_guard<std::mutex> lock(role_mutex_);
    for (const auto& c : notary_handover_) notary_->record(c);
    notary_handover_.clear();
    notary_running_ = true;
}

// The notary, Home Assistant's availability and configs.
void presence_service::start_leading_parts() {
    start_notary();
    if (ha_online_ && !ha_online_started_) {
        ha_online_->start();
        ha_online_started_ = true;
        if (ha_ && engine_seeded_ && !ha_published_) {
            ha_published_ = true;
            ha_->publish_all();
        }
    }
}

// The rules over this service's schemes (their filters name a scheme's outage).
std::unique_ptr<alert_engine> presence_service::make_engine(const alert_options& rules) const {
    std::vector<std::string> filters;
    for (const auto& scheme : scanner_->schemes()) filters.push_back(scheme.filter());
    return std::make_unique<alert_engine>(rules, std::move(filters));
}

std::shared_ptr<alert_sinks> presence_service::make_sinks(const alert_sink_options& o) {
    return std::make_shared<alert_sinks>(
        o, [this](const std::string& w) { say(w); },
        [this](const alert& a) {
            if (a.outbox_id > 0) store_->alert_delivered(a.outbox_id, clock::now());
        });
}

// The silences set before this start, before any alert is judged: said when they cannot be read.
void presence_service::restore_silences() {
    try {
        silences_.restore(history_reader(options_.history.path).silences(clock::now()));
    } catch (const error& e) {
        say(std::string("the silences set before this start could not be read (none hold alerts now): ") + e.what());
    }
}

// The outbox: alerts recorded before a restart that no sink took yet go out first, in order.
void presence_service::deliver_outbox() {
    if (!sinks_) return;
    std::vector<std::pair<std::int64_t, std::string>> rows;
    try {
        rows = history_reader(options_.history.path).undelivered_alerts(10000);
    } catch (const std::exception& e) {
        say(std::string("the alerts not yet delivered could not be read: ") + e.what());
        return;
    }
    std::size_t n = 0;
    for (auto& [id, text] : rows) {
        auto a = alert::from_json(text);
        if (!a) continue;
        a->outbox_id = id;
        sinks_->send(std::move(*a));
        ++n;
    }
    if (n > 0) say(std::to_string(n) + " alerts from before this start were not delivered: delivering them");
}

// The table as the first sync found it, with the "down"s sent before a restart (not sent again). Caller holds
// alert_mutex_.
void presence_service::seed_engine(time_point now) {
    std::set<std::pair<std::string, std::string>> sent;
    try {
        for (auto& key : history_reader(options_.history.path).down_alerted()) sent.insert(std::move(key));
    } catch (const std::exception& e) {
        say(std::string("alerts sent before this start could not be read: ") + e.what());
    }
    // The first start (nothing restored): what is down now died before the service existed, when is unknown.
    // One summary says so, instead of a "down" for each of them. (A follower that took over is never a first start:
    // its leader kept the history, and what it had not paged is paged now, each once.)
    std::vector<client_status> down_before;
    scanner_->for_each_sorted([&](const client_status& row) {
        if (restored_ == 0 && !options_.follower && alert_engine::down(row)) down_before.push_back(row);
        else engine_->seed(row, sent.count({row.client, row.topic}) > 0, now);
    });
    if (down_before.empty()) return;
    auto summary = engine_->already_down(down_before, now);
    // Each of them counts as alerted, across restarts too: a "down" row in the outbox, delivered at once.
    for (const auto& row : down_before) {
        alert covered;
        covered.kind = "down";
        covered.cause = "unknown";
        covered.client = row.client;
        covered.topic = row.topic;
        covered.time = now;
        covered.reason = "already-down";
        store_->record_alert("down", row.client, row.topic, covered.json(), now,
                             [store = store_.get(), now](std::int64_t id) { store->alert_delivered(id, now); });
    }
    if (summary) emit({std::move(*summary)});
}

// The alert's broker and, with --public-url, its link: the client's panel on the dashboard.
void presence_service::address(alert& a) const {
    a.broker = options_.scan.broker.server_uri;
    a.url = client_link(options_.sinks.public_url, a.client, a.topic);
}

namespace {
std::string list_text(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : ",") + x;
    return out.empty() ? "-" : out;
}

// What differs between two alert settings, as "name old -> new; ..." (empty: nothing).
std::string alert_changes(const std::optional<alert_options>& a, const alert_sink_options& as,
                          const std::optional<alert_options>& b, const alert_sink_options& bs) {
    std::string out;
    const auto field = [&out](const char* name, const std::string& x, const std::string& y) {
        if (x != y) out += std::string(out.empty() ? "" : "; ") + name + " " + x + " -> " + y;
    };
    const auto ms = [](std::chrono::milliseconds d) { return format_duration(d); };
    field("alerts", a ? "on" : "off", b ? "on" : "off");
    const alert_options none;
    const auto& x = a ? *a : none;
    const auto& y = b ? *b : none;
    field("after", ms(x.after), ms(y.after));
    field("flap-count", std::to_string(x.flap_count), std::to_string(y.flap_count));
    field("flap-window", ms(x.flap_window), ms(y.flap_window));
    field("outage-percent", std::to_string(x.outage_percent), std::to_string(y.outage_percent));
    field("only", list_text(x.only), list_text(y.only));
    field("exclude", list_text(x.exclude), list_text(y.exclude));
    field("on-new", x.on_new ? "yes" : "no", y.on_new ? "yes" : "no");
    field("on-removed", x.on_removed ? "yes" : "no", y.on_removed ? "yes" : "no");
    field("exec", as.exec.empty() ? "-" : as.exec, bs.exec.empty() ? "-" : bs.exec);
    field("exec-timeout", ms(as.exec_timeout), ms(bs.exec_timeout));
    field("webhook", as.webhook.empty() ? "-" : as.webhook, bs.webhook.empty() ? "-" : bs.webhook);
    const auto routes = [](const alert_sink_options& o) {
        std::vector<std::string> pairs;
        for (const auto& [group, url] : o.group_webhooks) pairs.push_back(group + "=" + url);
        return list_text(pairs);
    };
    field("webhook-for", routes(as), routes(bs));
    field("template", as.template_text.empty() ? "-" : "set", bs.template_text.empty() ? "-" : "set");
    if (as.template_text != bs.template_text && !as.template_text.empty() && !bs.template_text.empty())
        out += std::string(out.empty() ? "" : "; ") + "template changed";
    field("cafile", as.ca_file.empty() ? "-" : as.ca_file, bs.ca_file.empty() ? "-" : bs.ca_file);
    return out;
}
}  // namespace

std::string presence_service::reload_alerts(std::optional<alert_options> rules, alert_sink_options sinks) {
    if (rules) rules->validate();
    sinks.validate();
    std::shared_ptr<alert_sinks> old;
    std::string changed;
    {
        std::lock_guard<std::mutex> lock(alert_mutex_);
        changed = alert_changes(options_.alerts, options_.sinks, rules, sinks);
        if (changed.empty()) return "SIGHUP: the alert settings are unchanged";
        old = std::move(sinks_);
        engine_.reset();
        if (rules && leading_) {  // a follower's alerts start at its takeover
            sinks_ = make_sinks(sinks);
            engine_ = make_engine(*rules);
            if (engine_seeded_) {  // the rows as they are now are what is, not news
                const auto now = clock::now();
                seed_engine(now);
                emit(engine_->on_service(watching_, now));
            }
        }
        options_.alerts = std::move(rules);
        options_.sinks = std::move(sinks);
        alert_cv_.notify_all();
    }
    if (old) old->stop();  // what it holds is delivered within about a second, or said
    if (started_ && leading_ && !alert_thread_.joinable()) alert_thread_ = std::thread([this] { alert_loop(); });
    return "SIGHUP: alert settings re-read: " + changed;
}

namespace {
// A follower writes nothing: silences are set on the leader, whose history they live in.
void refuse_on_follower(bool leading, const presence_service::leader_view& leader) {
    if (!leading)
        throw not_leading("this serve follows (another serve writes the history" +
                          (leader.who.empty() ? std::string() : ": " + leader.who) +
                          "); set and end silences on the leader");
}
}  // namespace

silence presence_service::add_silence(const std::string& target, std::chrono::milliseconds duration,
                                      const std::string& reason, const std::string& by) {
    refuse_on_follower(leading_, leader());
    auto s = silences_.add(target, duration, reason, by, clock::now());
    store_->record_silence(s);
    say("silence " + s.id + " for " + terminal_safe(target, 80) + " until " + format_iso8601(s.until) + " by " +
        terminal_safe(by, 80) + ": " + terminal_safe(reason, 120));
    return s;
}

std::optional<silence> presence_service::end_silence(const std::string& id) {
    refuse_on_follower(leading_, leader());
    auto s = silences_.end(id, clock::now());
    if (s) {
        store_->record_silence(*s);
        say("silence " + s->id + " for " + terminal_safe(s->target, 80) + " ended");
    }
    return s;
}

// A silence that covers the alert's client (by name or group) or a group outage's group holds it: recorded in the
// outbox as delivered, counted, said in the log, never sent.
bool presence_service::held_by_silence(alert& a) {
    if (a.client.empty() && a.group.empty()) return false;
    auto groups = a.groups;  // the client's, as the table knew them (metadata rules too)
    if (!a.group.empty()) groups.push_back(a.group);
    const auto s = silences_.covering(a.client, groups, a.time);
    if (!s) return false;
    silences_.count_held();
    a.silenced = s->id;
    store_->record_alert(a.kind, a.client, a.topic, a.json(), a.time,
                         [store = store_.get(), at = a.time](std::int64_t id) { store->alert_delivered(id, at); });
    say("alert held by silence " + s->id + ": " + terminal_safe(a.title(), 160));
    return true;
}

void presence_service::emit(std::vector<alert> alerts) noexcept {
    for (auto& a : alerts) {
        try {
            address(a);
            if (held_by_silence(a)) continue;
            // Sent once recorded: a "down" that went out is never sent again after a restart.
            // (The fields are copied before the alert moves into the callback: argument order is unspecified.)
            auto kind = a.kind, client = a.client, topic = a.topic, json = a.json();
            const auto at = a.time;
            store_->record_alert(std::move(kind), std::move(client), std::move(topic), std::move(json), at,
                                 [sinks = sinks_, sent = std::move(a)](std::int64_t id) mutable {
                                     sent.outbox_id = id;  // delivered: out of the outbox
                                     sinks->send(std::move(sent));
                                 });
        } catch (...) {
            // an alert that cannot be built is lost; the next change or tick tries again
        }
    }
}

void presence_service::alert_loop() {
    std::unique_lock<std::mutex> lock(alert_mutex_);
    while (!alert_stopping_) {
        if (!engine_) {  // alerts turned off by a reload
            alert_cv_.wait_for(lock, std::chrono::milliseconds(250), [this] { return alert_stopping_; });
            continue;
        }
        const auto due = engine_->next_due();
        const auto now = clock::now();
        // Wake when something is due, and at least every 250 ms (outages end, flapping silences lapse).
        // (At least 20 ms: a due alert that is held, say by an outage, must not make this loop spin.)
        const auto wait = std::clamp<clock::duration>(due > now ? due - now : clock::duration::zero(),
                                                      std::chrono::milliseconds(20), std::chrono::milliseconds(250));
        alert_cv_.wait_for(lock, wait, [this] { return alert_stopping_; });
        if (engine_ && engine_seeded_) emit(engine_->tick(clock::now()));
    }
}

alert_sinks::backlog presence_service::alerts_pending() const {
    std::shared_ptr<alert_sinks> sinks;
    {
        std::lock_guard<std::mutex> lock(alert_mutex_);
        sinks = sinks_;
    }
    return sinks ? sinks->pending() : alert_sinks::backlog{};
}

void presence_service::on_line(std::function<void(const std::string&)> callback) { on_line_ = std::move(callback); }

void presence_service::say(const std::string& line) noexcept {
    try {
        if (on_line_) on_line_(line);
    } catch (...) {
        // a status line that cannot be shown
    }
}

void presence_service::start() {
    if (!leading_) {  // a follower: its table and silences; the rest at the takeover
        if (!started_) restore_silences();
        started_ = true;
        if (!scanner_started_) {
            scanner_->start();
            scanner_started_ = true;
        }
        return;
    }
    if (scanner_started_) {  // a follower that took over: what did not start then
        start_leading_parts();
        return;
    }
    if (!started_) {
        begin_history_session();
        started_ = true;
        if (restored_ > 0) say("restored " + std::to_string(restored_) + " clients from " + options_.history.path);
        restore_silences();
        deliver_outbox();
        if (engine_) alert_thread_ = std::thread([this] { alert_loop(); });
    }
    // The notary first: a conflict refuses before the service has read or written anything. A step that failed is
    // tried again by the next call; one that succeeded is not repeated.
    start_notary();
    if (!scanner_started_) {
        start_scanner_waking_paho();
        scanner_started_ = true;
    }
    if (ha_online_ && !ha_online_started_) {
        ha_online_->start();
        ha_online_started_ = true;
    }
}

bool presence_service::complete() const noexcept {
    return !leading_ || ((!notary_ || notary_running_) && (!ha_online_ || ha_online_started_));
}

// Paho C 1.3.12's receive thread polls the sockets it had when its poll began, up to a second at a time: with the
// notary connected, the scanner's connect (the second socket) waited two such polls, about 2 s. The notary's round
// trips every 100 ms end them (src/paho/paho_wake.hpp).
void presence_service::start_scanner_waking_paho() {
    std::atomic<bool> connecting{true};
    std::thread waker;
    if (notary_ && notary_running_)
        waker = std::thread([this, &connecting] {
            while (connecting) {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                if (connecting) notary_->wake_paho();
            }
        });
    const auto done = [&] {
        connecting = false;
        if (waker.joinable()) waker.join();
    };
    try {
        scanner_->start();
    } catch (...) {
        done();
        throw;
    }
    done();
}

void presence_service::stop() noexcept {
    if (!started_) return;
    started_ = false;
    stopping_ = true;
    if (ha_online_ && ha_online_started_) ha_online_->stop();  // Home Assistant's entities: unavailable from now
    scanner_->stop();  // delivers what is queued: into the history and the notary
    if (alert_thread_.joinable()) {
        {
            std::lock_guard<std::mutex> lock(alert_mutex_);
            alert_stopping_ = true;
        }
        alert_cv_.notify_all();
        alert_thread_.join();
    }
    std::shared_ptr<alert_sinks> sinks;
    {
        std::lock_guard<std::mutex> lock(alert_mutex_);
        sinks = sinks_;
    }
    if (sinks) sinks->stop();
    if (!leading_) return;
    store_->watching(false, clock::now());
    if (notary_) notary_->stop();
    store_->end_session();
}

}  // namespace mqtt_presence
