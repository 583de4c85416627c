#include <mqtt_presence/scanner.hpp>

#include <unistd.h>

#include <algorithm>
#include <optional>
#include <random>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/status_codec.hpp>

#include "connect_failure.hpp"
#include "error_log.hpp"
#include "paho_util.hpp"
#include "reconnect_driver.hpp"
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

void scanner_options::validate() const {
    broker.validate();
    if (topics.empty()) throw error("no topic template: give at least one, e.g. sensors/connected/{client}");
    for (const auto& t : topics) (void)topic_scheme::parse(t);
    if (qos < 0 || qos > 2) throw error("subscription qos " + std::to_string(qos) + " is invalid; use 0 or 1");
    if (topics.size() > 65535) throw error("too many topic templates");
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
}  // namespace

scanner::scanner(scanner_options options) : options_(std::move(options)) {
    options_.validate();
    if (options_.broker.client_id.empty()) options_.broker.client_id = default_client_id();
    for (const auto& t : options_.topics) schemes_.push_back(topic_scheme::parse(t));
    owned_ = detail::make_client(options_.broker.server_uri, options_.broker.client_id, options_.broker.mqtt_version);
    client_ = owned_.get();
    marker_topic_ = "mqtt-presence-sync/" + options_.broker.client_id;
    tail_topic_ = marker_topic_ + "/tail";
    init_callbacks();
}

scanner::scanner(mqtt::async_client& client, scanner_options options) : options_(std::move(options)) {
    options_.validate();
    if (options_.broker.client_id.empty()) options_.broker.client_id = client.get_client_id();
    for (const auto& t : options_.topics) schemes_.push_back(topic_scheme::parse(t));
    client_ = &client;
    marker_topic_ = "mqtt-presence-sync/" + options_.broker.client_id;
    start_threads();
}

scanner::~scanner() noexcept { stop(); }

void scanner::start_threads() {
    if (!expiry_.joinable()) expiry_ = std::thread([this] { expiry_loop(); });
    if (!delivery_.joinable()) delivery_ = std::thread([this] { delivery_loop(); });
}

void scanner::init_callbacks() {
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

void scanner::start() {
    if (!owned_) throw error("start() is for a scanner that owns its client; with a borrowed client call on_connected()");
    auto opts = detail::base_connect_options(options_.broker);
    // The only will clears the scanner's retained sync tail, the same at every connection, so Paho's reconnect
    // (which reuses the first CONNECT) is fine here.
    opts.set_will(mqtt::will_options(tail_topic_, std::string(), 1, true));
    // Tries after a loss come from the expiry thread, sooner than Paho's automatic reconnect (reconnect_driver.hpp).
    reconnect_ = std::make_unique<detail::reconnect_driver>(*owned_, opts);
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

void scanner::stop() noexcept {
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

void scanner::on_connected() noexcept {
    std::uint64_t marker = 0;
    std::vector<std::string> filters;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connected_ = true;
        const auto now = std::chrono::time_point_cast<std::chrono::milliseconds>(clock::now());
        connection_since_ = now;
        last_heard_ms_.store(unix_ms(now), std::memory_order_relaxed);  // the CONNACK: a round trip
        marker = ++marker_sent_;
        sync_ = sync_state::syncing;
        dropped_at_sync_.reset();
        dropped_now_.reset();
        broker_clients_.reset();
        broker_clients_at_.reset();
        broker_clients_live_ = false;
        tail_seen_ = false;
        retained_in_burst_ = false;
        tail_refused_ = false;
        marker_back_at_.reset();
        subscribed_at_ = std::chrono::steady_clock::now();
        last_status_message_ = subscribed_at_;
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
void scanner::read_sparkplug(const mqtt::message& msg, status_record& record) const {
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

std::vector<std::string> scanner::burst_ended_locked(std::uint64_t seq, bool second) {
    std::vector<std::string> confirm;
    marker_back_at_.reset();
    const bool drops = dropped_at_sync_ && dropped_now_ && *dropped_now_ > *dropped_at_sync_;
    // Rows the wildcard burst did not confirm, and named clients: asked for by their exact topics, unless this
    // broker proved that it sends retained messages to a wildcard subscription (the tail came through one): then
    // the burst was the whole retained store, and a row it did not bring is gone (a broker that lost its store:
    // a million exact SUBSCRIBEs took minutes).
    if (!second && !drops && wildcard_retained_ != true) {
        for (const auto& [name, source] : table_.unconfirmed()) {
            auto exact = topic_of(name, source);
            if (!exact.empty()) confirm.push_back(std::move(exact));  // else it stays unconfirmed
        }
        for (const auto& name : options_.named_clients)
            for (std::uint16_t source = 0; source < schemes_.size(); ++source) {
                auto exact = topic_of(name, source);
                if (!exact.empty()) confirm.push_back(std::move(exact));
            }
        std::sort(confirm.begin(), confirm.end());
        confirm.erase(std::unique(confirm.begin(), confirm.end()), confirm.end());
    }
    if (confirm.empty()) {
        sync_ = drops ? sync_state::unverified : wildcard_retained_ == false ? sync_state::partial : sync_state::complete;
        // Only a burst known complete (or every row asked for by its topic) says which rows the broker no longer
        // holds.
        if (!drops) queue_changes(table_.finish_resync(clock::now()));
        queue_state();
        unconfirm_.swap(confirming_);
    } else {
        confirming_ = confirm;
        confirm_seq_ = seq;
    }
    ++version_;
    return confirm;
}

void scanner::after_burst(std::vector<std::string> confirm) noexcept {
    std::vector<std::string> done;
    std::uint64_t seq = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        done.swap(unconfirm_);
        seq = confirm_seq_;
    }
    cv_.notify_all();
    // Outside the lock: Paho only queues these.
    try {
        for (const auto& topics : in_batches(confirm))
            client_->subscribe(topics, std::vector<int>(topics->size(), options_.qos));
        if (!confirm.empty())
            client_->publish(mqtt::message::create(marker_topic_, "confirm-" + std::to_string(seq), options_.qos,
                                                   false));
        for (const auto& topics : in_batches(done)) client_->unsubscribe(topics);
    } catch (const std::exception& e) {
        status_line(std::string("confirming rows by their topics failed: ") + e.what(), true);
    }
}

bool scanner::end_burst_if_tail_overdue(std::unique_lock<std::mutex>& lock) {
    // marker_back_at_ is reset at every connect and when a burst ends: set, it is this connection's marker.
    if (!marker_back_at_ || tail_seen_ || sync_ != sync_state::syncing || !connected_) return false;
    if (std::chrono::steady_clock::now() - std::max(*marker_back_at_, last_status_message_) < options_.quiet_period)
        return false;
    // The marker is back, the tail is not coming. Retained statuses came through the wildcards: the broker sends
    // them, so it refused the tail's publish (an ACL), and the marker, sent after the SUBSCRIBE, ended the burst.
    // None came: the broker sends no retained message to a wildcard subscription (RabbitMQ), or the fleet is empty.
    wildcard_retained_ = retained_in_burst_;
    const bool refused = tail_refused_ = retained_in_burst_;  // read again after the unlock
    auto confirm = burst_ended_locked(marker_sent_, false);
    lock.unlock();
    if (refused)
        status_line("the sync tail " + tail_topic_ + " never came back although retained statuses did: the broker "
                    "refused the scanner's publish to it (an ACL? let the scanner write mqtt-presence-sync/#); the "
                    "sync ends with its marker instead",
                    true);
    after_burst(std::move(confirm));
    lock.lock();
    return true;
}

void scanner::on_connection_lost(const std::string& cause) noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connected_ = false;
        // The table is as of the last word from the broker, which a keepalive notices only later.
        const auto heard = last_heard_ms_.load(std::memory_order_relaxed);
        const auto heard_at = time_point(std::chrono::milliseconds(heard));
        connection_since_ = heard > 0 && (!connection_since_ || heard_at >= *connection_since_) ? heard_at : clock::now();
        if (sync_ == sync_state::syncing) sync_ = sync_state::unverified;
        ++version_;
        queue_state();
    }
    cv_.notify_all();
    status_line("connection lost" + (cause.empty() ? std::string() : ": " + cause) +
                "; the table is as of the last round trip through the broker; reconnecting");
}

bool scanner::handle_message(const mqtt::const_message_ptr& msg) noexcept {
    if (!msg) return false;
    try {
        const auto& topic = msg->get_topic();
        if (topic == marker_topic_) {
            const auto& payload = msg->get_payload_str();
            if (payload == "probe") {  // a round trip: what the scanner sends reaches the broker, and back
                last_heard_ms_.store(unix_ms(clock::now()), std::memory_order_relaxed);
                return true;
            }
            if (payload.rfind("purge-", 0) == 0) {
                {
                    std::lock_guard<std::mutex> lock(mutex_);
                    purge_marker_seen_ = std::max<std::uint64_t>(purge_marker_seen_,
                                                                 std::strtoull(payload.c_str() + 6, nullptr, 10));
                    ++version_;
                }
                cv_.notify_all();
                return true;
            }
            std::vector<std::string> confirm;
            bool ended = false;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                const bool second = payload.rfind("confirm-", 0) == 0;
                const auto seq = std::strtoull(payload.c_str() + (second ? 8 : 0), nullptr, 10);
                if (seq == marker_sent_ && sync_ == sync_state::syncing && connected_) {
                    if (second || tail_seen_ || tail_topic_.empty()) {
                        confirm = burst_ended_locked(seq, second);
                        ended = true;
                    } else {
                        // The burst ends with the tail, or (no tail) after a quiet period.
                        marker_back_at_ = std::chrono::steady_clock::now();
                    }
                }
                ++version_;
            }
            if (ended) after_burst(std::move(confirm));
            cv_.notify_all();
            return true;
        }
        if (!tail_topic_.empty() && topic == tail_topic_) {
            std::vector<std::string> confirm;
            bool ended = false;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                // Only the tail of this connection, from the retained store, says the burst is over.
                if (msg->is_retained() && msg->get_payload_str() == std::to_string(marker_sent_) && !tail_seen_) {
                    tail_seen_ = true;
                    wildcard_retained_ = true;
                    if (marker_back_at_ && sync_ == sync_state::syncing && connected_) {
                        confirm = burst_ended_locked(marker_sent_, false);
                        ended = true;
                    }
                }
                ++version_;
            }
            if (ended) after_burst(std::move(confirm));
            cv_.notify_all();
            return true;
        }
        if (topic == uptime_topic) return read_uptime(*msg);
        if (topic == broker_clients_topic) return read_broker_clients(*msg);
        if (!message_topic_.empty() && topic == message_topic_) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                deliveries_.push_back(delivery{change{}, {}, std::nullopt, msg->get_payload_str()});
            }
            delivery_cv_.notify_one();
            return true;
        }
        if (topic == dropped_topic) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                const auto n = std::strtoull(msg->get_payload_str().c_str(), nullptr, 10);
                if (!dropped_at_sync_) dropped_at_sync_ = n;
                dropped_now_ = n;
                if (*dropped_now_ > *dropped_at_sync_ && sync_ == sync_state::complete) sync_ = sync_state::unverified;
                ++version_;
            }
            cv_.notify_all();
            return true;
        }
        for (std::size_t i = 0; i < schemes_.size(); ++i) {
            const auto name = schemes_[i].match(topic);
            if (!name) continue;
            // Per-thread scratch: decoding reuses its strings' storage from message to message.
            thread_local status_record record;
            if (schemes_[i].sparkplug_nodes() && !msg->get_payload_str().empty()) read_sparkplug(*msg, record);
            else decode(msg->get_payload_str(), record);
            bool queued = false;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                last_status_message_ = std::chrono::steady_clock::now();
                if (msg->is_retained() && sync_ == sync_state::syncing) retained_in_burst_ = true;
                ++version_;
                if (on_change_) {  // the change is built in its place in the queue: in table order
                    deliveries_.emplace_back();
                    queued = table_.apply(*name, record, msg->is_retained(), clock::now(),
                                          static_cast<std::uint16_t>(i), &deliveries_.back().changed);
                    if (!queued) deliveries_.pop_back();
                } else {
                    table_.apply(*name, record, msg->is_retained(), clock::now(), static_cast<std::uint16_t>(i),
                                 nullptr);  // nobody listens: no row is built
                }
            }
            if (queued) delivery_cv_.notify_one();
            if (condition_waiters_.load(std::memory_order_relaxed) > 0) cv_.notify_all();
            return true;
        }
        // Under a status filter but fitting no template (a name deeper than a {client+} reads, an empty level, a
        // '$' first level): counted, and the first few kept for the user to see.
        bool want_example = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++unmatched_;
            want_example = unmatched_examples_.size() < max_unmatched_examples;
            ++version_;
        }
        if (want_example) {  // made printable outside the table's lock
            auto shown = detail::printable(topic, 120);
            std::lock_guard<std::mutex> lock(mutex_);
            if (unmatched_examples_.size() < max_unmatched_examples &&
                std::find(unmatched_examples_.begin(), unmatched_examples_.end(), shown) == unmatched_examples_.end())
                unmatched_examples_.push_back(std::move(shown));
        }
        return false;
    } catch (const std::exception& e) {
        status_line(std::string("message handling failed: ") + e.what(), true);
    }
    return false;
}

void scanner::queue_changes(std::vector<change>&& changes) const {
    if (changes.empty() || !on_change_) return;
    for (auto& c : changes) deliveries_.push_back(delivery{std::move(c), {}, std::nullopt, std::nullopt});
    delivery_cv_.notify_one();
}

// mosquitto's own count of its clients. A retained one was sampled before this connection (up to a sys_interval
// ago), so it neither includes this scanner nor is it current: said as such.
bool scanner::read_broker_clients(const mqtt::message& msg) {
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
bool scanner::read_uptime(const mqtt::message& msg) {
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

void scanner::queue_state() const {
    if (!on_state_) return;
    deliveries_.push_back(delivery{change{}, {}, status_locked(), std::nullopt});
    delivery_cv_.notify_one();
}

void scanner::judge_now() const { queue_changes(table_.expire(clock::now())); }

void scanner::status_line(std::string text, bool is_error) noexcept {
    try {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!on_status_ && !is_error) return;  // errors nobody handles still go to stderr
            deliveries_.push_back(delivery{change{}, std::move(text), std::nullopt, std::nullopt});
        }
        delivery_cv_.notify_one();
    } catch (...) {
        // out of memory for a status line: nothing better to do
    }
}

// The one delivery path: changes and status lines in the order they were queued, one call at a time.
void scanner::delivery_loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        delivery_cv_.wait(lock, [this] { return stopping_ || !deliveries_.empty(); });
        if (deliveries_.empty()) return;  // stopping, and everything delivered
        std::deque<delivery> batch;
        batch.swap(deliveries_);
        auto on_change = on_change_;
        auto on_status = on_status_;
        auto on_state = on_state_;
        auto on_message = on_message_;
        lock.unlock();
        // A status line, or what a callback threw, goes to on_status; with none set, to stderr.
        const auto say = [&on_status](const std::string& text) {
            if (!on_status) return detail::write_unhandled_error("scanner", text);
            try {
                on_status(text);
            } catch (...) {
                // the status callback itself failed: nowhere left to say it
            }
        };
        // Each callback fenced: what it throws becomes a status line, never reaches this loop.
        const auto fenced = [&say](const char* which, const auto& call) {
            try {
                call();
            } catch (const std::exception& e) {
                say(std::string(which) + " callback threw: " + e.what());
            } catch (...) {
                say(std::string(which) + " callback threw a non-standard exception");
            }
        };
        for (auto& d : batch) {
            if (d.message) {
                if (on_message) fenced("message", [&] { on_message(*d.message); });
            } else if (d.self) {
                if (on_state) fenced("state", [&] { on_state(*d.self); });
            } else if (!d.status.empty()) {
                say(d.status);
            } else if (on_change) {
                d.changed.current.topic = topic_of(d.changed.current);  // off the lock
                fenced("change", [&] { on_change(d.changed); });
            }
        }
        lock.lock();
        cv_.notify_all();  // wait_for() conditions may be about what was delivered
    }
}

void scanner::expiry_loop() {
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
void scanner::probe_broker(std::unique_lock<std::mutex>& lock) {
    const auto now = std::chrono::steady_clock::now();
    if (options_.probe_interval.count() <= 0 || !connected_ || !client_ || now - last_probe_ < options_.probe_interval)
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

bool scanner::wait_synced(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        if (marker_sent_ > 0 && sync_ != sync_state::syncing && connected_) return true;
        if (end_burst_if_tail_overdue(lock)) continue;
        const auto now = std::chrono::steady_clock::now();
        // Fallback when the marker does not come back (no permission to publish, a broker that reorders or
        // dropped it): a quiet period after the last status message ends the wait, unverified.
        if (connected_ && marker_sent_ > 0 && now - last_status_message_ >= options_.quiet_period &&
            now - subscribed_at_ >= 2 * options_.quiet_period) {
            if (sync_ != sync_state::unverified) {
                sync_ = sync_state::unverified;
                queue_state();
            }
            return true;
        }
        if (now >= deadline) return false;
        cv_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(50)));
    }
}

bool scanner::synced() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return sync_ == sync_state::complete;
}

bool scanner::wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
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

void scanner::on_change(change_callback callback) {
    std::lock_guard<std::mutex> lock(mutex_);
    on_change_ = std::move(callback);
}

void scanner::on_status(std::function<void(const std::string&)> callback) {
    std::lock_guard<std::mutex> lock(mutex_);
    on_status_ = std::move(callback);
}

void scanner::on_state(std::function<void(const scanner_status&)> callback) {
    std::lock_guard<std::mutex> lock(mutex_);
    on_state_ = std::move(callback);
}

void scanner::on_message(std::string topic, std::function<void(const std::string&)> callback) {
    if (topic.find_first_of("+#") != std::string::npos) throw error("on_message takes an exact topic, not " + topic);
    std::lock_guard<std::mutex> lock(mutex_);
    message_topic_ = std::move(topic);
    on_message_ = std::move(callback);
}

bool scanner::publish(const std::string& topic, const std::string& payload, int qos, bool retained) noexcept {
    try {
        if (!client_ || !client_->is_connected()) return false;
        client_->publish(mqtt::message::create(topic, payload, qos, retained));
        return true;
    } catch (...) {
        return false;
    }
}

bool scanner::wait_published(std::chrono::milliseconds timeout) noexcept {
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

std::size_t scanner::restore(std::vector<client_status> rows) {
    std::size_t restored = 0;
    std::lock_guard<std::mutex> lock(mutex_);
    table_.reserve(table_.size() + rows.size());
    for (auto& row : rows) {
        for (std::size_t i = 0; i < schemes_.size(); ++i) {
            const auto name = schemes_[i].match(row.topic);
            if (!name || *name != row.client) continue;
            row.source = static_cast<std::uint16_t>(i);
            table_.restore(row);
            ++restored;
            break;
        }
    }
    ++version_;
    return restored;
}

std::size_t scanner::pending_deliveries() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return deliveries_.size();
}

std::vector<client_status> scanner::snapshot(std::size_t limit) const {
    std::vector<client_status> rows;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        judge_now();
        rows = table_.snapshot(limit);
    }
    for (auto& r : rows) r.topic = topic_of(r);
    return rows;
}

std::uint64_t scanner::version() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return version_;
}

std::pair<table_counts, table_stats> scanner::for_each_sorted(
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
            chunk[i].topic = topic_of(chunk[i]);
            visit(chunk[i]);
        }
    }
    return counters;
}

std::optional<client_status> scanner::find(std::string_view client, std::uint16_t source) const {
    std::optional<client_status> row;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        judge_now();
        row = table_.find(client, source);
    }
    if (row) row->topic = topic_of(*row);
    return row;
}

table_counts scanner::counts() const {
    std::lock_guard<std::mutex> lock(mutex_);
    judge_now();
    return table_.counts();
}

scanner_status scanner::status() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return status_locked();
}

scanner_status scanner::status_locked() const {
    scanner_status s;
    s.connected = connected_;
    s.since = connection_since_;
    if (const auto heard = last_heard_ms_.load(std::memory_order_relaxed); heard > 0)
        s.last_heard = time_point(std::chrono::milliseconds(heard));
    s.sync = sync_;
    if (dropped_at_sync_ && dropped_now_ && *dropped_now_ > *dropped_at_sync_)
        s.broker_dropped = *dropped_now_ - *dropped_at_sync_;
    s.broker_clients = broker_clients_;
    s.broker_clients_at = broker_clients_at_;
    s.broker_clients_live = broker_clients_live_;
    s.unmatched_examples = unmatched_examples_;
    s.sync_tail_refused = tail_refused_;
    s.broker_started = table_.broker_started();
    s.broker_started_exact = table_.broker_started_exact();
    return s;
}

table_stats scanner::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_locked();
}

table_stats scanner::stats_locked() const {
    auto st = table_.stats();
    st.unmatched = unmatched_;
    return st;
}

bool scanner::connected() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return connected_;
}

std::string scanner::topic_of(const client_status& row) const { return topic_of(row.client, row.source); }

std::string scanner::topic_of(std::string_view client, std::uint16_t source) const {
    const auto& scheme = schemes_.at(source < schemes_.size() ? source : 0);
    try {
        return scheme.topic_for(client);
    } catch (const error&) {
        return {};
    }
}

scanner::purge_result scanner::purge(const std::function<bool(const client_status&)>& select, bool dry_run) {
    purge_result result;
    for (auto& row : snapshot())
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

}  // namespace mqtt_presence
