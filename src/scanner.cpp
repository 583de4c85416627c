#include <mqtt_presence/scanner.hpp>

#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <variant>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/paho_client.hpp>
#include <mqtt_presence/reconnect_driver.hpp>
#include <mqtt_presence/status_codec.hpp>

#include "connect_failure.hpp"
#include "error_log.hpp"
#include "sync_tracker.hpp"
#include "text_util.hpp"
#include "uri.hpp"

namespace mqtt_presence {
namespace {

std::string default_client_id() {
    std::random_device rd;
    return "mqtt-presence-scanner-" + std::to_string(getpid()) + "-" + std::to_string(rd() % 100000);
}

std::int64_t unix_ms(time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

void check_broker_name(std::string_view name) {
    if (name.size() > 40 || std::any_of(name.begin(), name.end(), [](char c) {
            return !std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-';
        }))
        throw error("broker name \"" + detail::printable(name, 60) +
                    "\": use letters, digits, '.', '_' and '-' (at most 40), e.g. site-a");
}

void scanner_options::validate() const {
    broker.validate();
    check_broker_name(broker_name);
    if (topics.empty()) throw error("no topic template: give at least one, e.g. sensors/connected/{client}");
    for (const auto& t : topics) (void)topic_scheme::parse(t);
    for (const auto& pattern : exclude)
        if (pattern.empty()) throw error("an --exclude pattern is empty");
    for (const auto& t : activity)
        if (topic_scheme::parse(t).sparkplug_nodes())
            throw error("activity template " + t + ": Sparkplug's births and deaths are statuses, not activity");
    if (qos < 0 || qos > 2) throw error("subscription qos " + std::to_string(qos) + " is invalid; use 0 or 1");
    if (topics.size() > 65535) throw error("too many topic templates");
    const auto defined = [this](const std::string& group) {
        return std::any_of(groups.begin(), groups.end(), [&](const group_rule& g) { return g.group == group; });
    };
    for (const auto& rule : expect) {
        (void)expectation::parse(rule.text());
        if (rule.match.rfind("group:", 0) == 0 && !defined(rule.match.substr(6)))
            throw error("--expect " + rule.text() + ": no --group " + rule.match.substr(6) + " is defined");
    }
    for (const auto& [templ, statuses] : activity_statuses) {
        if (std::find(activity.begin(), activity.end(), templ) == activity.end())
            throw error("activity_statuses names " + templ + ", which is not an activity template");
        for (const auto& status : statuses)
            if (std::find(topics.begin(), topics.end(), status) == topics.end())
                throw error("activity template " + templ + " belongs to " + status + ", which is not a topic template");
    }
    for (const auto& chosen : only_groups)
        if (!defined(chosen))
            throw error("--group " + chosen + ": no such group is defined (define it with --group " + chosen +
                        "=GLOB or in the configuration file)");
    for (const auto& g : groups)
        if (g.group.empty() || (g.pattern.empty() && g.meta_key.empty()))
            throw error("a --group rule needs a name and a pattern (NAME=GLOB or NAME=meta.KEY=VALUE)");
}

std::string_view to_string(sync_state s) noexcept {
    switch (s) {
        case sync_state::syncing: return "syncing";
        case sync_state::complete: return "complete";
        case sync_state::partial: return "partial";
        case sync_state::unverified: break;
    }
    return "unverified";
}

namespace {
// Topics a thousand to a SUBSCRIBE or UNSUBSCRIBE packet.
std::vector<mqtt::string_collection_ptr> in_batches(const std::vector<std::string>& topics) {
    constexpr std::size_t batch = 1000;
    std::vector<mqtt::string_collection_ptr> out;
    for (std::size_t i = 0; i < topics.size(); i += batch) {
        const auto end = std::min(topics.size(), i + batch);
        out.push_back(mqtt::string_collection::create(std::vector<std::string>(
            topics.begin() + static_cast<std::ptrdiff_t>(i), topics.begin() + static_cast<std::ptrdiff_t>(end))));
    }
    return out;
}

// mosquitto's count of messages it dropped (max_queued_messages and friends), retained and updated every
// sys_interval: read when a sync begins and watched after, so that a drop the broker admits to is not hidden.
constexpr std::string_view dropped_topic = "$SYS/broker/publish/messages/dropped";
// mosquitto's own count of connected clients: beside the table, it shows clients that announce no status.
constexpr std::string_view broker_clients_topic = "$SYS/broker/clients/connected";
// mosquitto's uptime ("N seconds"), retained and renewed every sys_interval (10 s by default): when it started.
constexpr std::string_view uptime_topic = "$SYS/broker/uptime";
constexpr std::size_t max_unmatched_examples = 5;

// One call queued for the delivery thread, in the order the table changed.
struct status_text {
    std::string text;
};
struct message_payload {
    std::string payload;
};
// Removals a re-sync's end left in the table (connection_table::end_resync), turned into changes a chunk at a time
// as they are delivered: a million rows gone from a broker are never a million changes queued at once.
struct removals_due {
    std::size_t count;
};
using delivery = std::variant<change, status_text, scanner_status, message_payload, removals_due>;

// The user's callbacks, copied out of the lock for each batch of deliveries.
struct callbacks {
    scanner::change_callback change;
    std::function<void(const std::string&)> status;
    std::function<void(const scanner_status&)> state;
    std::function<void(const std::string&)> message;
};

}  // namespace

struct scanner::impl {
    impl(scanner_options options, mqtt::async_client* borrowed);
    ~impl() noexcept { stop(); }

    void start();
    void stop() noexcept;
    void on_connected() noexcept;
    bool handle_message(const mqtt::const_message_ptr& msg) noexcept;
    void on_connection_lost(const std::string& cause) noexcept;
    bool wait_synced(std::chrono::milliseconds timeout);
    [[nodiscard]] bool synced() const;
    bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout);
    void on_change(change_callback callback);
    void on_status(std::function<void(const std::string&)> callback);
    void on_state(std::function<void(const scanner_status&)> callback);
    void on_message(std::string topic, std::function<void(const std::string&)> callback);
    bool publish(const std::string& topic, const std::string& payload, int qos, bool retained) noexcept;
    bool wait_published(std::chrono::milliseconds timeout) noexcept;
    std::size_t restore(std::vector<client_status> rows);
    [[nodiscard]] std::vector<learned_cadence> cadences(std::int64_t since_unix_ms) const;
    std::size_t resume_cadences(const std::vector<learned_cadence>& learned);
    [[nodiscard]] std::optional<std::uint16_t> scheme_of(const std::string& topic, const std::string& client) const;
    [[nodiscard]] std::uint64_t version() const;
    [[nodiscard]] std::size_t pending_deliveries() const;
    [[nodiscard]] std::vector<client_status> snapshot(std::size_t limit, row_order order) const;
    std::pair<table_counts, table_stats> for_each_sorted(const std::function<void(const client_status&)>& visit) const;
    [[nodiscard]] std::optional<client_status> find(std::string_view client, std::uint16_t source) const;
    [[nodiscard]] table_counts counts() const;
    [[nodiscard]] table_stats stats() const;
    [[nodiscard]] scanner_status status() const;
    [[nodiscard]] std::string topic_of(const client_status& row) const;
    [[nodiscard]] std::string topic_of(std::string_view client, std::uint16_t source) const;
    [[nodiscard]] bool connected() const;
    purge_result purge(const std::function<bool(const client_status&)>& select, bool dry_run);

    void init_callbacks();
    void start_threads();
    void expiry_loop();
    void delivery_loop();
    void deliver(delivery& d, const callbacks& to) const;
    void deliver_removals(std::size_t count, const callbacks& to) const;
    void queue_removals(std::size_t count) const;  // caller holds mutex_
    void judge_now() const;  // marks overdue heartbeats stale, queues the changes; caller holds mutex_
    void queue_changes(std::vector<change>&& changes) const;  // caller holds mutex_
    void status_line(std::string text, bool is_error = false) noexcept;
    void queue_state() const;  // caller holds mutex_
    [[nodiscard]] scanner_status status_locked() const;
    [[nodiscard]] table_stats stats_locked() const;
    bool read_marker(const mqtt::message& msg);
    bool read_tail(const mqtt::message& msg);
    // One sync event: `step` asks the tracker under the lock; a burst it ends is carried out (the table's side under
    // the lock, the MQTT side after it).
    template <class Step>
    bool sync_event(Step&& step);
    bool read_uptime(const mqtt::message& msg);
    bool read_broker_clients(const mqtt::message& msg);
    bool read_dropped(const mqtt::message& msg);
    bool read_status(std::size_t scheme, std::string_view name, const mqtt::message& msg);
    void count_unmatched(const std::string& topic);
    bool read_activity(std::size_t activity, std::string_view name, const mqtt::message& msg);
    [[nodiscard]] bool excluded(std::string_view name, const std::string& topic) const;
    bool count_excluded();
    // --group NAME (a filter): whether the status's client is in a chosen group; if not, it is left out, and its
    // row, if any, removed. Paho's thread.
    [[nodiscard]] bool in_chosen_groups(std::string_view name, const std::string& topic, const status_record& record) const;
    bool leave_out(std::string_view name, std::uint16_t source);
    // A new row's expected interval (connection_table::expect): seconds, 0 for none, learned_expectation for auto.
    [[nodiscard]] std::uint32_t expected_seconds(std::string_view client, std::uint16_t source) const;
    void read_sparkplug(const mqtt::message& msg, status_record& record) const;
    // The exact topics of the rows the wildcard burst did not confirm, and of the named clients. Caller holds mutex_.
    [[nodiscard]] std::vector<std::string> topics_to_confirm() const;
    // Carries out the table's side of a burst's end. Caller holds mutex_.
    void burst_ended_locked(const detail::sync_tracker::burst_end& end);
    void probe_broker(std::unique_lock<std::mutex>& lock);
    // Subscribes the topics to confirm with the second marker; unsubscribes the last round's. Without mutex_.
    void after_burst(const detail::sync_tracker::burst_end& end) noexcept;
    // When the tail is overdue (sync_tracker::tick), ends the burst, unlocking `lock` for after_burst. True if so.
    bool end_burst_if_tail_overdue(std::unique_lock<std::mutex>& lock);

    scanner_options options_;
    std::vector<topic_scheme> schemes_;
    std::vector<topic_scheme> activity_schemes_;
    std::vector<std::vector<std::uint16_t>> activity_sources_;  // per activity scheme: its status schemes (empty: all)
    client_groups groups_;
    bool expect_by_group_ = false;  // an --expect rule names a group
    // The row as it leaves the scanner: its topic and its groups. Off the lock.
    void describe(client_status& row) const {
        row.topic = topic_of(row);
        if (!options_.broker_name.empty()) row.broker = options_.broker_name;
        if (!groups_.empty()) row.groups = groups_.of(row);
    }
    std::unique_ptr<mqtt::async_client> owned_;
    std::unique_ptr<reconnect_driver> reconnect_;  // an owned client's tries after a loss (expiry thread)
    mqtt::async_client* client_ = nullptr;
    std::string marker_topic_;
    std::string tail_topic_;  // retained, last in the SUBSCRIBE: its arrival ends the burst; empty (borrowed client)

    mutable std::mutex mutex_;
    mutable std::condition_variable cv_;         // table, sync and connection changes; stop
    mutable std::condition_variable delivery_cv_;
    std::condition_variable timer_cv_;           // the expiry timer's sleep; stop
    std::atomic<int> condition_waiters_{0};      // threads in wait_for(): only then does a message wake cv_
    std::atomic<std::int64_t> last_heard_ms_{0};  // Unix ms of the last round trip (connect, probe); 0: none yet
    std::chrono::steady_clock::time_point last_probe_{};  // expiry thread only
    mutable connection_table table_;  // mutable: a const snapshot first judges heartbeats at that moment
    mutable std::deque<delivery> deliveries_;
    std::uint64_t version_ = 0;  // bumped at every message: wait_for() re-checks its condition
    detail::sync_tracker sync_;
    std::uint64_t purge_marker_sent_ = 0;  // "purge-N" on the marker topic: the clears before it are all back
    std::uint64_t purge_marker_seen_ = 0;
    std::optional<std::uint64_t> broker_clients_;  // $SYS/broker/clients/connected
    std::optional<time_point> broker_clients_at_;
    bool broker_clients_live_ = false;
    std::uint64_t unmatched_ = 0;
    std::vector<std::string> unmatched_examples_;
    std::uint64_t activity_seen_ = 0;     // live activity messages of a client in the table
    std::uint64_t activity_unknown_ = 0;  // of a name without a row
    std::uint64_t excluded_ = 0;          // statuses and readings left out by options_.exclude
    std::optional<time_point> connection_since_;
    bool stopping_ = false;
    callbacks callbacks_;
    std::string message_topic_;
    std::thread expiry_;
    std::thread delivery_;
};

namespace {
}  // namespace

scanner::impl::impl(scanner_options options, mqtt::async_client* borrowed)
    : options_((options.validate(), std::move(options))),
      sync_(borrowed == nullptr, options_.quiet_period) {
    if (options_.broker.client_id.empty())
        options_.broker.client_id = borrowed ? borrowed->get_client_id() : default_client_id();
    for (const auto& t : options_.topics) schemes_.push_back(topic_scheme::parse(t));
    for (const auto& t : options_.activity) {
        activity_schemes_.push_back(topic_scheme::parse(t));
        auto& sources = activity_sources_.emplace_back();
        if (const auto own = options_.activity_statuses.find(t); own != options_.activity_statuses.end())
            for (std::size_t i = 0; i < options_.topics.size(); ++i)
                if (std::find(own->second.begin(), own->second.end(), options_.topics[i]) != own->second.end())
                    sources.push_back(static_cast<std::uint16_t>(i));
    }
    groups_ = client_groups(options_.groups);
    for (const auto& rule : options_.expect) expect_by_group_ = expect_by_group_ || rule.match.rfind("group:", 0) == 0;
    if (!options_.expect.empty()) table_.expect([this](std::string_view client, std::uint16_t source) {
        return expected_seconds(client, source);
    });
    marker_topic_ = "mqtt-presence-sync/" + options_.broker.client_id;
    if (borrowed) {
        client_ = borrowed;
        start_threads();
        return;
    }
    owned_ = make_client(options_.broker.server_uri, options_.broker.client_id, options_.broker.mqtt_version);
    client_ = owned_.get();
    tail_topic_ = marker_topic_ + "/tail";
    init_callbacks();
}

void scanner::impl::start_threads() {
    if (!expiry_.joinable()) expiry_ = std::thread([this] { expiry_loop(); });
    if (!delivery_.joinable()) delivery_ = std::thread([this] { delivery_loop(); });
}

void scanner::impl::init_callbacks() {
    owned_->set_connected_handler([this](const std::string&) {
        if (reconnect_) reconnect_->connected();
        on_connected();  // first: whoever reads the status line finds status() already connected
        status_line("connected to " + options_.broker.server_uri);
    });
    owned_->set_connection_lost_handler([this](const std::string& cause) {
        if (reconnect_) reconnect_->lost();
        on_connection_lost(cause);
    });
    owned_->set_message_callback([this](mqtt::const_message_ptr msg) { handle_message(msg); });
}

void scanner::impl::start() {
    if (!owned_) throw error("start() is for a scanner that owns its client; with a borrowed client call on_connected()");
    auto opts = base_connect_options(options_.broker);
    // The only will clears the scanner's retained sync tail, the same at every connection, so Paho's reconnect
    // (which reuses the first CONNECT) is fine here.
    opts.set_will(mqtt::will_options(tail_topic_, std::string(), 1, true));
    // Tries after a loss come from the expiry thread, sooner than Paho's automatic reconnect (reconnect_driver.hpp).
    reconnect_ = std::make_unique<reconnect_driver>(*owned_, opts);
    start_threads();
    try {
        auto token = owned_->connect(opts);
        if (!token->wait_for(options_.broker.connect_timeout + std::chrono::seconds(1)))
            throw error("no answer from the broker at " + options_.broker.server_uri + " within " +
                        std::to_string(options_.broker.connect_timeout.count()) + " s");
    } catch (const mqtt::exception& e) {
        const detail::connect_failure failure{e.get_return_code(), e.what()};
        std::optional<bool> speaks_311;
        if (detail::unanswered_mqtt5(options_.broker, failure))
            speaks_311 = detail::speaks_mqtt311(options_.broker, owned_->get_client_id() + "-probe");
        throw error(detail::connect_failure_text(options_.broker, failure, speaks_311,
                                                 "cannot connect to the broker at " + options_.broker.server_uri,
                                                 " (is it running? try mosquitto_sub -h HOST -p PORT -t '#')"));
    }
}

void scanner::impl::stop() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;
        stopping_ = true;
    }
    cv_.notify_all();
    timer_cv_.notify_all();
    delivery_cv_.notify_all();
    if (reconnect_) reconnect_->stop();
    if (expiry_.joinable()) expiry_.join();
    if (delivery_.joinable()) delivery_.join();  // delivers what is queued first
    if (owned_) {
        try {
            owned_->disable_callbacks();
            if (owned_->is_connected()) {
                owned_->publish(mqtt::message::create(tail_topic_, std::string(), 1, true));  // no will at a clean stop
                owned_->disconnect()->wait_for(std::chrono::seconds(2));
            }
        } catch (...) {
            // already disconnected
        }
    }
}

void scanner::impl::on_connected() noexcept {
    std::uint64_t marker = 0;
    std::vector<std::string> filters;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto now = std::chrono::time_point_cast<std::chrono::milliseconds>(clock::now());
        connection_since_ = now;
        last_heard_ms_.store(unix_ms(now), std::memory_order_relaxed);  // the CONNACK: a round trip
        marker = sync_.connected(std::chrono::steady_clock::now());
        broker_clients_.reset();
        broker_clients_at_.reset();
        broker_clients_live_ = false;
        table_.begin_resync();
        ++version_;
        queue_state();
    }
    // One SUBSCRIBE: mosquitto's counters first (their retained values are the counts before the burst), the
    // status filters next, the sync tail's wildcard last. A broker sends a SUBSCRIBE's retained messages filter by
    // filter (mosquitto before it reads the next packet, aedes as one stream after the SUBACK), so the retained
    // tail arriving means the burst before it is complete, and the marker published after the SUBSCRIBE coming
    // back means the same on a broker that keeps order. A broker that delivers no retained message to a wildcard
    // subscription (RabbitMQ) sends no tail: then only the rows asked for by exact topics are verified.
    std::vector<int> qos;
    const auto add = [&](std::string topic, int q) {
        filters.push_back(std::move(topic));
        qos.push_back(q);
    };
    add(std::string(dropped_topic), 0);
    add(std::string(broker_clients_topic), 0);
    add(std::string(uptime_topic), 0);
    for (const auto& s : schemes_)
        for (const auto& f : s.subscription_filters()) add(f, options_.qos);
    for (const auto& a : activity_schemes_)  // readings: their retained ones come before the tail, and are skipped
        for (const auto& f : a.filters()) add(f, 0);
    if (!message_topic_.empty()) add(message_topic_, 1);
    if (!tail_topic_.empty()) add(marker_topic_ + "/+", 1);
    add(marker_topic_, options_.qos);
    try {
        if (!tail_topic_.empty())
            client_->publish(mqtt::message::create(tail_topic_, std::to_string(marker), 1, true));
        client_->subscribe(mqtt::string_collection::create(filters), qos);
        client_->publish(mqtt::message::create(marker_topic_, std::to_string(marker), options_.qos, false));
    } catch (const std::exception& e) {
        status_line(std::string("subscribe failed: ") + e.what(), true);
    }
    cv_.notify_all();
}

// An NBIRTH or NDEATH: the topic says birth or death, the payload (when a reader is set) its session and time.
void scanner::impl::read_sparkplug(const mqtt::message& msg, status_record& record) const {
    record = status_record{};
    const bool death = topic_scheme::is_sparkplug_death(msg.get_topic());
    if (!options_.sparkplug_reader) {
        record.status = death ? state::disconnected : state::connected;
        record.detail = "payload not read: built without Sparkplug B support, a death is not matched to its birth";
        return;
    }
    if (options_.sparkplug_reader(msg.get_payload_str(), record))
        record.status = death ? state::disconnected : state::connected;
    else
        record.status = state::unknown;
}

std::vector<std::string> scanner::impl::topics_to_confirm() const {
    std::vector<std::string> confirm;
    for (const auto& [name, source] : table_.unconfirmed()) {
        auto exact = topic_of(name, source);
        if (!exact.empty()) confirm.push_back(std::move(exact));  // else it stays unconfirmed
    }
    for (const auto& name : options_.named_clients)
        for (std::uint16_t source = 0; source < schemes_.size(); ++source) {
            auto exact = topic_of(name, source);
            if (!exact.empty()) confirm.push_back(std::move(exact));
        }
    return confirm;
}

void scanner::impl::burst_ended_locked(const detail::sync_tracker::burst_end& end) {
    if (end.remove_unconfirmed) queue_removals(table_.end_resync(clock::now()));
    if (end.state_changed) queue_state();
    ++version_;
}

void scanner::impl::after_burst(const detail::sync_tracker::burst_end& end) noexcept {
    cv_.notify_all();
    // Outside the lock: Paho only queues these.
    try {
        for (const auto& topics : in_batches(end.confirm))
            client_->subscribe(topics, std::vector<int>(topics->size(), options_.qos));
        if (!end.confirm.empty())
            client_->publish(mqtt::message::create(marker_topic_, "confirm-" + std::to_string(end.seq), options_.qos,
                                                   false));
        for (const auto& topics : in_batches(end.unsubscribe)) client_->unsubscribe(topics);
    } catch (const std::exception& e) {
        status_line(std::string("confirming rows by their topics failed: ") + e.what(), true);
    }
}

bool scanner::impl::end_burst_if_tail_overdue(std::unique_lock<std::mutex>& lock) {
    const auto end = sync_.tick(std::chrono::steady_clock::now(), [this] { return topics_to_confirm(); });
    if (!end.ended) return false;
    burst_ended_locked(end);
    const bool refused = sync_.tail_refused();
    lock.unlock();
    if (refused)
        status_line("the sync tail " + tail_topic_ + " never came back although retained statuses did: the broker "
                    "refused the scanner's publish to it (an ACL? let the scanner write mqtt-presence-sync/#); the "
                    "sync ends with its marker instead",
                    true);
    after_burst(end);
    lock.lock();
    return true;
}

void scanner::impl::on_connection_lost(const std::string& cause) noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        sync_.lost();
        // The table is as of the last word from the broker, which a keepalive notices only later.
        const auto heard = last_heard_ms_.load(std::memory_order_relaxed);
        const auto heard_at = time_point(std::chrono::milliseconds(heard));
        connection_since_ = heard > 0 && (!connection_since_ || heard_at >= *connection_since_) ? heard_at : clock::now();
        ++version_;
        queue_state();
    }
    cv_.notify_all();
    status_line("connection lost" + (cause.empty() ? std::string() : ": " + cause) +
                "; the table is as of the last round trip through the broker; reconnecting");
}

bool scanner::impl::handle_message(const mqtt::const_message_ptr& msg) noexcept {
    if (!msg) return false;
    try {
        const auto& topic = msg->get_topic();
        if (topic == marker_topic_) return read_marker(*msg);
        if (!tail_topic_.empty() && topic == tail_topic_) return read_tail(*msg);
        if (topic == uptime_topic) return read_uptime(*msg);
        if (topic == broker_clients_topic) return read_broker_clients(*msg);
        if (topic == dropped_topic) return read_dropped(*msg);
        if (!message_topic_.empty() && topic == message_topic_) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                deliveries_.emplace_back(message_payload{msg->get_payload_str()});
            }
            delivery_cv_.notify_one();
            return true;
        }
        for (std::size_t i = 0; i < schemes_.size(); ++i)
            if (const auto name = schemes_[i].match(topic))
                return excluded(*name, topic) ? count_excluded() : read_status(i, *name, *msg);
        for (std::size_t i = 0; i < activity_schemes_.size(); ++i)
            if (const auto name = activity_schemes_[i].match(topic))
                return excluded(*name, topic) ? count_excluded() : read_activity(i, *name, *msg);
        count_unmatched(topic);
    } catch (const std::exception& e) {
        status_line(std::string("message handling failed: ") + e.what(), true);
    }
    return false;
}

// The scanner's marker topic: a probe's round trip, a purge's end, or the sync marker.
bool scanner::impl::read_marker(const mqtt::message& msg) {
    const auto& payload = msg.get_payload_str();
    if (payload == "probe") {  // a round trip: what the scanner sends reaches the broker, and back
        last_heard_ms_.store(unix_ms(clock::now()), std::memory_order_relaxed);
        return true;
    }
    if (payload.rfind("purge-", 0) == 0) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            purge_marker_seen_ =
                std::max<std::uint64_t>(purge_marker_seen_, std::strtoull(payload.c_str() + 6, nullptr, 10));
            ++version_;
        }
        cv_.notify_all();
        return true;
    }
    return sync_event([&] {
        return sync_.marker_back(payload, std::chrono::steady_clock::now(), [this] { return topics_to_confirm(); });
    });
}

// The retained tail: only this connection's, from the retained store, says the burst is over.
bool scanner::impl::read_tail(const mqtt::message& msg) {
    return sync_event([&] {
        return sync_.tail_back(msg.is_retained(), msg.get_payload_str(), [this] { return topics_to_confirm(); });
    });
}

template <class Step>
bool scanner::impl::sync_event(Step&& step) {
    detail::sync_tracker::burst_end end;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        end = step();
        if (end.ended) burst_ended_locked(end);
        ++version_;
    }
    if (end.ended) after_burst(end);  // it wakes the waiters
    else cv_.notify_all();
    return true;
}

bool scanner::impl::read_dropped(const mqtt::message& msg) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        sync_.dropped(std::strtoull(msg.get_payload_str().c_str(), nullptr, 10));
        ++version_;
    }
    cv_.notify_all();
    return true;
}

bool scanner::impl::read_status(std::size_t scheme, std::string_view name, const mqtt::message& msg) {
    // Per-thread scratch: decoding reuses its strings' storage from message to message.
    thread_local status_record record;
    if (schemes_[scheme].sparkplug_nodes() && !msg.get_payload_str().empty()) read_sparkplug(msg, record);
    else decode(msg.get_payload_str(), record);
    const auto source = static_cast<std::uint16_t>(scheme);
    if (!options_.only_groups.empty() && !record.cleared && !in_chosen_groups(name, msg.get_topic(), record))
        return leave_out(name, source);
    bool queued = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        sync_.status_message(msg.is_retained(), std::chrono::steady_clock::now());
        ++version_;
        if (callbacks_.change) {  // the change is built in its place in the queue: in table order
            auto& slot = std::get<change>(deliveries_.emplace_back(std::in_place_type<change>));
            queued = table_.apply(name, record, msg.is_retained(), clock::now(), source, &slot);
            if (!queued) deliveries_.pop_back();
        } else {
            table_.apply(name, record, msg.is_retained(), clock::now(), source, nullptr);  // nobody listens
        }
    }
    if (queued) delivery_cv_.notify_one();
    if (condition_waiters_.load(std::memory_order_relaxed) > 0) cv_.notify_all();
    return true;
}

// A reading on an activity topic: a sign of life of the client of that name in every status scheme. A retained one
// is as old as the broker's store: counted nowhere, it says nothing of now.
bool scanner::impl::read_activity(std::size_t activity, std::string_view name, const mqtt::message& msg) {
    if (msg.is_retained()) return false;
    const auto now = clock::now();
    bool queued = false, known = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        // A reading rarely freshens a row: the change is built in scratch and queued only then.
        thread_local change scratch;
        const auto& own = activity_sources_[activity];  // the schemes whose clients it speaks of (empty: all)
        for (std::size_t k = 0; k < (own.empty() ? schemes_.size() : own.size()); ++k) {
            const auto source = own.empty() ? static_cast<std::uint16_t>(k) : own[k];
            const auto sighted = table_.seen(name, source, now, callbacks_.change ? &scratch : nullptr);
            known = known || sighted != sighting::unknown;
            if (sighted == sighting::freshened && callbacks_.change) {
                deliveries_.emplace_back(scratch);
                queued = true;
            }
        }
        ++(known ? activity_seen_ : activity_unknown_);
        ++version_;
    }
    if (queued) delivery_cv_.notify_one();
    if (condition_waiters_.load(std::memory_order_relaxed) > 0) cv_.notify_all();
    return true;
}

// --exclude: the name or the topic fits a pattern. Immutable options, no lock.
bool scanner::impl::excluded(std::string_view name, const std::string& topic) const {
    if (options_.exclude.empty()) return false;
    thread_local std::string name_text;  // fnmatch wants a C string; the name is a view into the topic
    name_text.assign(name);
    for (const auto& pattern : options_.exclude)
        if (fnmatch(pattern.c_str(), name_text.c_str(), 0) == 0 || fnmatch(pattern.c_str(), topic.c_str(), 0) == 0)
            return true;
    return false;
}

std::uint32_t scanner::impl::expected_seconds(std::string_view client, std::uint16_t source) const {
    const auto topic = topic_of(client, source);  // empty for a name no topic holds: its name alone is matched
    const auto* rule = expectation_for(options_.expect, client, topic,
                                       expect_by_group_ ? groups_.of(client, topic) : std::vector<std::string>{});
    if (!rule) return 0;
    return rule->learned ? connection_table::learned_expectation : static_cast<std::uint32_t>(rule->every.count());
}

bool scanner::impl::in_chosen_groups(std::string_view name, const std::string& topic,
                                     const status_record& record) const {
    thread_local client_status probe;  // the fields a group rule reads
    probe.client.assign(name);
    probe.topic = topic;
    probe.meta = record.meta;
    probe.host = record.host;
    for (const auto& g : groups_.of(probe))
        if (std::find(options_.only_groups.begin(), options_.only_groups.end(), g) != options_.only_groups.end())
            return true;
    return false;
}

bool scanner::impl::leave_out(std::string_view name, std::uint16_t source) {
    bool queued = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ++excluded_;
        ++version_;
        if (auto last = table_.erase(name, source); last && callbacks_.change) {
            const auto previous = last->status;
            deliveries_.emplace_back(change{change_kind::removed, previous, std::move(*last), true, clock::now()});
            queued = true;
        }
    }
    if (queued) delivery_cv_.notify_one();
    if (condition_waiters_.load(std::memory_order_relaxed) > 0) cv_.notify_all();
    return true;
}

bool scanner::impl::count_excluded() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++excluded_;
    ++version_;
    return true;
}

// Under a status filter but fitting no template (a name deeper than a {client+} reads, an empty level, a '$' first
// level): counted, and the first few kept for the user to see.
void scanner::impl::count_unmatched(const std::string& topic) {
    bool want_example = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ++unmatched_;
        want_example = unmatched_examples_.size() < max_unmatched_examples;
        ++version_;
    }
    if (!want_example) return;
    auto shown = detail::printable(topic, 120);  // made printable outside the table's lock
    std::lock_guard<std::mutex> lock(mutex_);
    if (unmatched_examples_.size() < max_unmatched_examples &&
        std::find(unmatched_examples_.begin(), unmatched_examples_.end(), shown) == unmatched_examples_.end())
        unmatched_examples_.push_back(std::move(shown));
}

void scanner::impl::queue_changes(std::vector<change>&& changes) const {
    if (changes.empty() || !callbacks_.change) return;
    for (auto& c : changes) deliveries_.emplace_back(std::move(c));
    delivery_cv_.notify_one();
}

void scanner::impl::queue_removals(std::size_t count) const {
    if (count == 0) return;
    if (!callbacks_.change) return table_.drop_removed();
    deliveries_.emplace_back(removals_due{count});
    delivery_cv_.notify_one();
}

// mosquitto's own count of its clients. A retained one was sampled before this connection (up to a sys_interval
// ago), so it neither includes this scanner nor is it current: said as such.
bool scanner::impl::read_broker_clients(const mqtt::message& msg) {
    const auto& text = msg.get_payload_str();
    char* end = nullptr;
    const auto n = std::strtoull(text.c_str(), &end, 10);
    const bool readable = !text.empty() && end && *end == '\0';
    const auto now = clock::now();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (readable) {
            broker_clients_ = n;
            broker_clients_at_ = now;
            broker_clients_live_ = !msg.is_retained();
        }
        ++version_;
    }
    cv_.notify_all();
    return true;
}

// The broker's start: a live uptime was published just now; a retained one up to a sys_interval ago, so its start
// is taken a sys_interval earlier (10 s, mosquitto's default) until a live one says exactly. Only a later start moves
// the table's (a restart while this scanner watched).
bool scanner::impl::read_uptime(const mqtt::message& msg) {
    const auto& text = msg.get_payload_str();
    char* end = nullptr;
    const auto seconds = std::strtoull(text.c_str(), &end, 10);
    // The payload comes from the network: a number of seconds that a duration can hold (a century), or nothing.
    constexpr unsigned long long century = 100ULL * 366 * 24 * 3600;
    if (text.empty() || !end || std::string_view(end) != " seconds" || seconds > century) return true;
    auto started = clock::now() - std::chrono::seconds(seconds);
    if (msg.is_retained()) started -= mosquitto_sys_interval;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        table_.broker_started(started, !msg.is_retained());
        ++version_;
    }
    cv_.notify_all();
    return true;
}

void scanner::impl::queue_state() const {
    if (!callbacks_.state) return;
    deliveries_.emplace_back(status_locked());
    delivery_cv_.notify_one();
}

void scanner::impl::judge_now() const { queue_changes(table_.expire(clock::now())); }

void scanner::impl::status_line(std::string text, bool is_error) noexcept {
    try {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!callbacks_.status && !is_error) return;  // errors nobody handles still go to stderr
            deliveries_.emplace_back(status_text{std::move(text)});
        }
        delivery_cv_.notify_one();
    } catch (...) {
        // out of memory for a status line: nothing better to do
    }
}

// The one delivery path: changes and status lines in the order they were queued, one call at a time.
void scanner::impl::delivery_loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        delivery_cv_.wait(lock, [this] { return stopping_ || !deliveries_.empty(); });
        if (deliveries_.empty()) return;  // stopping, and everything delivered
        std::deque<delivery> batch;
        batch.swap(deliveries_);
        const auto to = callbacks_;
        lock.unlock();
        for (auto& d : batch) deliver(d, to);
        lock.lock();
        cv_.notify_all();  // wait_for() conditions may be about what was delivered
    }
}

// One call; each callback fenced: what it throws becomes a status line, never reaches the delivery loop.
void scanner::impl::deliver(delivery& d, const callbacks& to) const {
    // A status line, or what a callback threw, goes to on_status; with none set, to stderr.
    const auto say = [&to](const std::string& text) {
        if (!to.status) return detail::write_unhandled_error("scanner", text);
        try {
            to.status(text);
        } catch (...) {
            // the status callback itself failed: nowhere left to say it
        }
    };
    const auto fenced = [&say](const char* which, const auto& call) {
        try {
            call();
        } catch (const std::exception& e) {
            say(std::string(which) + " callback threw: " + e.what());
        } catch (...) {
            say(std::string(which) + " callback threw a non-standard exception");
        }
    };
    if (auto* m = std::get_if<message_payload>(&d)) {
        if (to.message) fenced("message", [&] { to.message(m->payload); });
    } else if (auto* self = std::get_if<scanner_status>(&d)) {
        if (to.state) fenced("state", [&] { to.state(*self); });
    } else if (auto* line = std::get_if<status_text>(&d)) {
        say(line->text);
    } else if (auto* changed = std::get_if<change>(&d); changed && to.change) {
        describe(changed->current);  // off the lock
        fenced("change", [&] { to.change(*changed); });
    } else if (auto* due = std::get_if<removals_due>(&d)) {
        deliver_removals(due->count, to);
    }
}

// The removals of one re-sync's end, in order, a chunk at a time: each chunk taken from the table under the lock
// (intake goes on between chunks), delivered outside it.
void scanner::impl::deliver_removals(std::size_t count, const callbacks& to) const {
    constexpr std::size_t chunk_size = 4096;
    std::vector<change> chunk;
    chunk.reserve(std::min(count, chunk_size));
    while (count > 0) {
        chunk.clear();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto taken = table_.take_removed(std::min(count, chunk_size), chunk);
            if (taken == 0) return;  // dropped meanwhile (cannot happen while a change callback is set)
            count -= taken;
        }
        for (auto& c : chunk) {
            delivery d{std::move(c)};
            deliver(d, to);
        }
    }
}

void scanner::impl::expiry_loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    auto wait = options_.expire_interval;
    auto last_judged = std::chrono::steady_clock::now();
    while (!stopping_) {
        timer_cv_.wait_for(lock, wait, [this] { return stopping_; });
        if (stopping_) break;
        wait = options_.expire_interval;
        if (reconnect_) {  // Paho's call in tick() without the lock
            lock.unlock();
            wait = reconnect_->tick(wait);
            lock.lock();
        }
        const auto now = std::chrono::steady_clock::now();
        if (now - last_judged < options_.expire_interval) continue;  // woken for a reconnect try only
        last_judged = now;
        judge_now();
        end_burst_if_tail_overdue(lock);
        probe_broker(lock);
    }
}

// A round trip through the broker now and then: last_heard stays fresh in a quiet fleet, and goes stale when the
// connection is cut but not yet declared lost. Called and returns with the lock held; publishes without it.
void scanner::impl::probe_broker(std::unique_lock<std::mutex>& lock) {
    const auto now = std::chrono::steady_clock::now();
    if (options_.probe_interval.count() <= 0 || !sync_.is_connected() || !client_ || now - last_probe_ < options_.probe_interval)
        return;
    last_probe_ = now;
    lock.unlock();
    try {
        client_->publish(mqtt::message::create(marker_topic_, std::string("probe"), 0, false));
    } catch (const std::exception&) {
        // not connected after all: the connection's loss is said on its own
    }
    lock.lock();
}

bool scanner::impl::wait_synced(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        if (end_burst_if_tail_overdue(lock)) continue;
        const auto now = std::chrono::steady_clock::now();
        switch (sync_.wait_state(now)) {
            case detail::sync_tracker::quiet::ended: return true;
            case detail::sync_tracker::quiet::ended_unverified: queue_state(); return true;
            case detail::sync_tracker::quiet::waiting: break;
        }
        if (now >= deadline) return false;
        cv_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(50)));
    }
}

bool scanner::impl::synced() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return sync_.state() == sync_state::complete;
}

bool scanner::impl::wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    ++condition_waiters_;
    struct leave {
        std::atomic<int>& n;
        ~leave() { --n; }
    } leaving{condition_waiters_};
    for (;;) {
        std::uint64_t seen = 0;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            seen = version_;
        }
        if (condition()) return true;
        std::unique_lock<std::mutex> lock(mutex_);
        // Re-check at least every 100 ms: a condition may depend on time (staleness) or on the delivery thread.
        const auto until = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
        cv_.wait_until(lock, until, [&] { return version_ != seen || stopping_; });
        if (std::chrono::steady_clock::now() >= deadline) {
            lock.unlock();
            return condition();
        }
    }
}

void scanner::impl::on_change(change_callback callback) {
    std::lock_guard<std::mutex> lock(mutex_);
    callbacks_.change = std::move(callback);
}

void scanner::impl::on_status(std::function<void(const std::string&)> callback) {
    std::lock_guard<std::mutex> lock(mutex_);
    callbacks_.status = std::move(callback);
}

void scanner::impl::on_state(std::function<void(const scanner_status&)> callback) {
    std::lock_guard<std::mutex> lock(mutex_);
    callbacks_.state = std::move(callback);
}

void scanner::impl::on_message(std::string topic, std::function<void(const std::string&)> callback) {
    if (topic.find_first_of("+#") != std::string::npos) throw error("on_message takes an exact topic, not " + topic);
    std::lock_guard<std::mutex> lock(mutex_);
    message_topic_ = std::move(topic);
    callbacks_.message = std::move(callback);
}

bool scanner::impl::publish(const std::string& topic, const std::string& payload, int qos, bool retained) noexcept {
    try {
        if (!client_ || !client_->is_connected()) return false;
        client_->publish(mqtt::message::create(topic, payload, qos, retained));
        return true;
    } catch (...) {
        return false;
    }
}

bool scanner::impl::wait_published(std::chrono::milliseconds timeout) noexcept {
    try {
        if (!client_ || !client_->is_connected()) return false;
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (const auto& token : client_->get_pending_delivery_tokens()) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || !token->wait_for(left)) return false;
        }
        return true;
    } catch (...) {
        return false;
    }
}

std::size_t scanner::impl::restore(std::vector<client_status> rows) {
    std::size_t restored = 0;
    std::lock_guard<std::mutex> lock(mutex_);
    table_.reserve(table_.size() + rows.size());
    for (auto& row : rows) {
        const auto source = scheme_of(row.topic, row.client);
        if (!source) continue;
        row.source = *source;
        table_.restore(row, clock::now());
        ++restored;
    }
    ++version_;
    return restored;
}

// The scheme whose template makes `topic` the status topic of `client` (what a history keeps of a row's key).
std::optional<std::uint16_t> scanner::impl::scheme_of(const std::string& topic, const std::string& client) const {
    for (std::size_t i = 0; i < schemes_.size(); ++i)
        if (const auto name = schemes_[i].match(topic); name && *name == client) return static_cast<std::uint16_t>(i);
    return std::nullopt;
}

std::size_t scanner::impl::pending_deliveries() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return deliveries_.size() + table_.removed_pending();
}

std::vector<learned_cadence> scanner::impl::cadences(std::int64_t since_unix_ms) const {
    std::vector<learned_cadence> out;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        out = table_.cadences(since_unix_ms);
    }
    for (auto& c : out) c.topic = topic_of(c.client, c.source);  // outside the lock: intake goes on meanwhile
    return out;
}

std::size_t scanner::impl::resume_cadences(const std::vector<learned_cadence>& learned) {
    std::size_t resumed = 0;
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& c : learned)
        if (const auto source = scheme_of(c.topic, c.client))
            resumed += table_.resume_cadence(c.client, *source, c.learned, clock::now()) ? 1 : 0;
    ++version_;
    return resumed;
}

std::vector<client_status> scanner::impl::snapshot(std::size_t limit, row_order order) const {
    std::vector<client_status> rows;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        judge_now();
        rows = table_.snapshot(limit, order);
    }
    for (auto& r : rows) describe(r);
    return rows;
}

std::uint64_t scanner::impl::version() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return version_;
}

std::pair<table_counts, table_stats> scanner::impl::for_each_sorted(
    const std::function<void(const client_status&)>& visit) const {
    constexpr std::size_t chunk_rows = 4096;  // a short lock each: messages wait microseconds, not a whole write
    std::vector<std::pair<std::string, std::uint16_t>> keys;
    std::pair<table_counts, table_stats> counters;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        judge_now();
        keys = table_.sorted_keys();
        counters = {table_.counts(), stats_locked()};
    }
    std::vector<client_status> chunk(std::min(chunk_rows, keys.size()));
    for (std::size_t at = 0; at < keys.size(); at += chunk_rows) {
        std::size_t n = 0;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (std::size_t i = at; i < std::min(at + chunk_rows, keys.size()); ++i)
                if (table_.find(keys[i].first, keys[i].second, chunk[n])) ++n;
        }
        for (std::size_t i = 0; i < n; ++i) {
            describe(chunk[i]);
            visit(chunk[i]);
        }
    }
    return counters;
}

std::optional<client_status> scanner::impl::find(std::string_view client, std::uint16_t source) const {
    std::optional<client_status> row;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        judge_now();
        row = table_.find(client, source);
    }
    if (row) describe(*row);
    return row;
}

table_counts scanner::impl::counts() const {
    std::lock_guard<std::mutex> lock(mutex_);
    judge_now();
    return table_.counts();
}

scanner_status scanner::impl::status() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return status_locked();
}

scanner_status scanner::impl::status_locked() const {
    scanner_status s;
    s.connected = sync_.is_connected();
    s.since = connection_since_;
    if (const auto heard = last_heard_ms_.load(std::memory_order_relaxed); heard > 0)
        s.last_heard = time_point(std::chrono::milliseconds(heard));
    s.sync = sync_.state();
    s.broker_dropped = sync_.broker_dropped();
    s.broker_clients = broker_clients_;
    s.broker_clients_at = broker_clients_at_;
    s.broker_clients_live = broker_clients_live_;
    s.unmatched_examples = unmatched_examples_;
    s.sync_tail_refused = sync_.tail_refused();
    s.broker_started = table_.broker_started();
    s.broker_started_exact = table_.broker_started_exact();
    return s;
}

table_stats scanner::impl::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_locked();
}

table_stats scanner::impl::stats_locked() const {
    auto st = table_.stats();
    st.unmatched = unmatched_;
    st.activity = activity_seen_;
    st.activity_unknown = activity_unknown_;
    st.excluded = excluded_;
    return st;
}

bool scanner::impl::connected() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return sync_.is_connected();
}

std::string scanner::impl::topic_of(const client_status& row) const { return topic_of(row.client, row.source); }

std::string scanner::impl::topic_of(std::string_view client, std::uint16_t source) const {
    const auto& scheme = schemes_.at(source < schemes_.size() ? source : 0);
    try {
        return scheme.topic_for(client);
    } catch (const error&) {
        return {};
    }
}

scanner::purge_result scanner::impl::purge(const std::function<bool(const client_status&)>& select, bool dry_run) {
    purge_result result;
    for (auto& row : snapshot(SIZE_MAX, row_order::name))
        if (select(row)) result.cleared.push_back(std::move(row));
    if (dry_run || result.cleared.empty()) return result;
    std::uint64_t marker = 0;
    try {
        std::vector<mqtt::delivery_token_ptr> tokens;
        for (const auto& row : result.cleared) {
            const auto topic = topic_of(row);
            if (!topic.empty()) tokens.push_back(client_->publish(mqtt::message::create(topic, "", 0, 1, true)));
        }
        for (auto& t : tokens) t->wait_for(std::chrono::seconds(10));
        {
            std::lock_guard<std::mutex> lock(mutex_);
            marker = ++purge_marker_sent_;
        }
        client_->publish(mqtt::message::create(marker_topic_, "purge-" + std::to_string(marker), options_.qos, false));
    } catch (const mqtt::exception& e) {
        throw error(std::string("purge failed: ") + e.what());
    }
    // The broker forwards every clear it accepted before the marker: then the table says what is gone.
    if (!wait_for(
            [&] {
                std::lock_guard<std::mutex> lock(mutex_);
                return purge_marker_seen_ >= marker;
            },
            std::chrono::seconds(10)))
        throw error("purge: the broker did not confirm the clears within 10 s; run it again to see what is left");
    std::vector<client_status> cleared;
    for (auto& row : result.cleared) {
        if (find(row.client, row.source)) result.refused.push_back(std::move(row));
        else cleared.push_back(std::move(row));
    }
    result.cleared = std::move(cleared);
    return result;
}

// The public face: each call goes to the private state.
scanner::scanner(scanner_options options) : impl_(std::make_unique<impl>(std::move(options), nullptr)) {}
scanner::scanner(mqtt::async_client& client, scanner_options options)
    : impl_(std::make_unique<impl>(std::move(options), &client)) {}
scanner::~scanner() noexcept = default;
void scanner::start() { impl_->start(); }
void scanner::stop() noexcept { impl_->stop(); }
void scanner::on_connected() noexcept { impl_->on_connected(); }
bool scanner::handle_message(const mqtt::const_message_ptr& msg) noexcept { return impl_->handle_message(msg); }
void scanner::on_connection_lost(const std::string& cause) noexcept { impl_->on_connection_lost(cause); }
bool scanner::wait_synced(std::chrono::milliseconds timeout) { return impl_->wait_synced(timeout); }
bool scanner::synced() const { return impl_->synced(); }
bool scanner::wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
    return impl_->wait_for(condition, timeout);
}
void scanner::on_change(change_callback callback) { impl_->on_change(std::move(callback)); }
void scanner::on_status(std::function<void(const std::string&)> callback) { impl_->on_status(std::move(callback)); }
void scanner::on_state(std::function<void(const scanner_status&)> callback) { impl_->on_state(std::move(callback)); }
void scanner::on_message(std::string topic, std::function<void(const std::string&)> callback) {
    impl_->on_message(std::move(topic), std::move(callback));
}
bool scanner::publish(const std::string& topic, const std::string& payload, int qos, bool retained) noexcept {
    return impl_->publish(topic, payload, qos, retained);
}
bool scanner::wait_published(std::chrono::milliseconds timeout) noexcept { return impl_->wait_published(timeout); }
std::size_t scanner::restore(std::vector<client_status> rows) { return impl_->restore(std::move(rows)); }
std::vector<learned_cadence> scanner::cadences(std::int64_t since_unix_ms) const {
    return impl_->cadences(since_unix_ms);
}
std::size_t scanner::resume_cadences(const std::vector<learned_cadence>& learned) {
    return impl_->resume_cadences(learned);
}
std::uint64_t scanner::version() const { return impl_->version(); }
std::size_t scanner::pending_deliveries() const { return impl_->pending_deliveries(); }
std::vector<client_status> scanner::snapshot(std::size_t limit, row_order order) const {
    return impl_->snapshot(limit, order);
}
std::pair<table_counts, table_stats> scanner::for_each_sorted(
    const std::function<void(const client_status&)>& visit) const {
    return impl_->for_each_sorted(visit);
}
std::optional<client_status> scanner::find(std::string_view client, std::uint16_t source) const {
    return impl_->find(client, source);
}
table_counts scanner::counts() const { return impl_->counts(); }
table_stats scanner::stats() const { return impl_->stats(); }
scanner_status scanner::status() const { return impl_->status(); }
const std::vector<topic_scheme>& scanner::schemes() const noexcept { return impl_->schemes_; }
std::string scanner::topic_of(const client_status& row) const { return impl_->topic_of(row); }
std::string scanner::topic_of(std::string_view client, std::uint16_t source) const {
    return impl_->topic_of(client, source);
}
bool scanner::connected() const { return impl_->connected(); }
scanner::purge_result scanner::purge(const std::function<bool(const client_status&)>& select, bool dry_run) {
    return impl_->purge(select, dry_run);
}

}  // namespace mqtt_presence
