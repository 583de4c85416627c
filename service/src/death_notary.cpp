#include <mqtt_presence/service/death_notary.hpp>

#include <unistd.h>
#include <random>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/paho_client.hpp>
#include <mqtt_presence/reconnect_driver.hpp>
#include <mqtt_presence/render.hpp>

namespace mqtt_presence {
namespace {

std::vector<std::string> levels(const std::string& filter) {
    std::vector<std::string> out;
    std::string level;
    std::istringstream in(filter);
    while (std::getline(in, level, '/')) out.push_back(level);
    if (!filter.empty() && filter.back() == '/') out.emplace_back();
    return out;
}

nlohmann::json time_or_null(const std::optional<time_point>& t) {
    return t ? nlohmann::json(format_iso8601(*t)) : nlohmann::json(nullptr);
}

std::string parent_of(const topic_scheme& scheme) {
    // The template without its {client} level: fewer levels than any record topic, so never one of them.
    const auto& t = scheme.template_text();
    const auto at = t.find("{client}");
    std::string before = t.substr(0, at), after = t.substr(at + 8);
    if (!before.empty() && before.back() == '/') before.pop_back();
    else if (!after.empty() && after.front() == '/') after.erase(0, 1);
    std::string parent = before.empty() ? after : after.empty() ? before : before + "/" + after;
    if (parent.empty())
        throw error("notary template " + t + " has no fixed level beside {client}; use e.g. " +
                    notary_options::default_template);
    return parent;
}

}  // namespace

bool filters_overlap(const std::string& a, const std::string& b) {
    const auto x = levels(a), y = levels(b);
    for (std::size_t i = 0;; ++i) {
        if (i < x.size() && x[i] == "#") return true;
        if (i < y.size() && y[i] == "#") return true;
        if (i == x.size() || i == y.size()) return x.size() == y.size();
        if (x[i] != "+" && y[i] != "+" && x[i] != y[i]) return false;
    }
}

death_notary::death_notary(broker_options broker, notary_options options)
    : broker_(std::move(broker)), options_(std::move(options)), scheme_(topic_scheme::parse(options_.topic_template)),
      lock_topic_(parent_of(scheme_)) {
    if (options_.qos < 0 || options_.qos > 2) throw error("notary qos must be 0, 1 or 2");
}

death_notary::~death_notary() noexcept { stop(); }

std::string death_notary::record_json(const client_status& row, cause why, const std::string& observer,
                                      time_point observed_since) {
    nlohmann::json j;
    j["state"] = why == cause::removed ? "removed" : std::string(to_string(row.status));
    j["stale"] = row.stale;
    j["since"] = time_or_null(row.since);
    j["last_seen"] = time_or_null(row.last_seen);
    j["cause"] = std::string(to_string(why));
    j["epoch"] = row.epoch ? nlohmann::json(*row.epoch) : nlohmann::json(nullptr);
    j["topic"] = row.topic;
    j["ip"] = row.ip.empty() ? nlohmann::json(nullptr) : nlohmann::json(row.ip);
    j["observer"] = observer;
    j["observed_since"] = format_iso8601(observed_since);
    // Names and payload text come from the network and may hold invalid UTF-8: replaced, never a throw.
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string death_notary::lock_json(bool held) const {
    nlohmann::json j;
    j["observer"] = options_.observer;
    j["state"] = held ? "connected" : "disconnected";
    j["observed_since"] = format_iso8601(observed_since_);
    j["records"] = scheme_.filter();
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void death_notary::start(time_point observed_since) {
    observed_since_ = observed_since;
    std::random_device rd;
    const std::string id = "mqtt-presence-notary-" + std::to_string(getpid()) + "-" + std::to_string(rd() % 100000);
    client_ = make_client(broker_.server_uri, id, broker_.mqtt_version);
    auto opts = base_connect_options(broker_);
    opts.set_will(mqtt::will_options(lock_topic_, lock_json(false), 1, true));
    // Tries after a loss come from the publishing thread, sooner than Paho's automatic reconnect.
    reconnect_ = std::make_unique<reconnect_driver>(*client_, opts);

    // Read the lock: its retained record arrives before the marker published after the SUBSCRIBE comes back.
    std::mutex m;
    std::condition_variable cv;
    std::optional<std::string> holder;
    bool marker_back = false;
    const std::string marker = "mqtt-presence-sync/" + id;
    client_->set_message_callback([&](mqtt::const_message_ptr msg) {
        std::lock_guard<std::mutex> lock(m);
        if (msg->get_topic() == marker) marker_back = true;
        else if (msg->get_topic() == lock_topic_) holder = msg->get_payload_str();
        cv.notify_all();
    });
    // Every way out of start() below before the lock is taken leaves no callback pointing at this frame.
    struct callbacks_off {
        mqtt::async_client& c;
        bool armed = true;
        ~callbacks_off() {
            if (armed) c.disable_callbacks();
        }
    } guard{*client_};
    try {
        if (!client_->connect(opts)->wait_for(broker_.connect_timeout + std::chrono::seconds(1)))
            throw error("the notary's connection to " + broker_.server_uri + " got no answer");
        client_->subscribe(lock_topic_, 1)->wait_for(std::chrono::seconds(5));
        client_->subscribe(marker, 1)->wait_for(std::chrono::seconds(5));
        client_->publish(mqtt::message::create(marker, "1", 1, false));
    } catch (const mqtt::exception& e) {
        throw error("the notary cannot connect to " + broker_.server_uri + ": " + e.what());
    }
    {
        std::unique_lock<std::mutex> lock(m);
        if (!cv.wait_for(lock, std::chrono::seconds(5), [&] { return marker_back; })) {
            try {
                client_->disconnect()->wait_for(std::chrono::seconds(2));
            } catch (...) {
            }
            throw error("the notary could not read its lock " + lock_topic_ + " (no answer within 5 s)");
        }
    }
    client_->set_message_callback([](mqtt::const_message_ptr) {});
    guard.armed = false;
    try {
        client_->unsubscribe(lock_topic_)->wait_for(std::chrono::seconds(5));
        client_->unsubscribe(marker)->wait_for(std::chrono::seconds(5));
    } catch (const mqtt::exception&) {
        // only tidiness
    }
    if (holder && !holder->empty()) {
        const auto j = nlohmann::json::parse(*holder, nullptr, false);
        // The lock is read from the network: a field of another type reads as absent, never a throw.
        const auto text = [&j](const char* key, const char* otherwise) {
            return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>()
                                                                          : std::string(otherwise);
        };
        const bool held = text("state", "") == "connected";
        const std::string other = text("observer", "");
        if (held && other != options_.observer) {
            try {  // a plain DISCONNECT: our will must not release the other notary's lock
                client_->disconnect()->wait_for(std::chrono::seconds(2));
            } catch (...) {
            }
            throw notary_conflict("another death notary (observer " + terminal_safe(other) + ", since " +
                        terminal_safe(text("observed_since", "?")) + ") holds " + lock_topic_ + " and writes " +
                        scheme_.filter() + "; two notaries would overwrite each other's records. Stop it, or give "
                        "this one another --notary template; if it is gone for good, release its lock: "
                        "mosquitto_pub -r -n -t '" + lock_topic_ + "'");
        }
    }
    take_lock_and_publish();
}

// Takes the lock (retained, with the will that releases it), watches the connection from Paho's callbacks and
// starts the publishing thread.
void death_notary::take_lock_and_publish() {
    const auto lock_payload = lock_json(true);
    // Paho's thread: flags only (a publish there is queued by Paho, never waited for).
    client_->set_connected_handler([this, lock_payload](const std::string&) {
        reconnect_->connected();
        try {  // after a reconnect, the lock again (the will may have released it)
            client_->publish(mqtt::message::create(lock_topic_, lock_payload, 1, true));
        } catch (...) {
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            connected_ = true;
        }
        cv_.notify_all();
    });
    client_->set_connection_lost_handler([this](const std::string& cause) {
        reconnect_->lost();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            connected_ = false;
            lost_cause_ = cause;
        }
        cv_.notify_all();
    });
    try {
        client_->publish(mqtt::message::create(lock_topic_, lock_payload, 1, true))->wait_for(std::chrono::seconds(5));
    } catch (const mqtt::exception& e) {
        throw error("the notary cannot take its lock " + lock_topic_ + ": " + e.what());
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connected_ = client_->is_connected();
        said_connected_ = true;
    }
    thread_ = std::thread([this] { publish_loop(); });
}

void death_notary::record(const change& c) noexcept {
    try {
        const auto topic = scheme_.topic_for(c.current.client);
        auto payload = record_json(c.current, cause_of(c), options_.observer, observed_since_);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            pending_[topic] = std::move(payload);
        }
        cv_.notify_one();
    } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.failed;  // a name no record topic can hold
    }
}

void death_notary::say(const std::string& line) noexcept {
    try {
        if (on_line_) on_line_(line);
    } catch (...) {
        // a line that cannot be shown
    }
}

// A line when the connection went or came back since the last one; called and returns with the lock held.
void death_notary::say_connection_change(std::unique_lock<std::mutex>& lock) {
    if (connected_ == said_connected_) return;
    said_connected_ = connected_;
    const auto line = connected_ ? "notary: reconnected; " + std::to_string(pending_.size()) + " records to publish"
                                 : "notary: connection lost" + (lost_cause_.empty() ? std::string() : ": " + lost_cause_) +
                                       "; " + std::to_string(pending_.size()) +
                                       " records wait for the broker (newer ones replace older)";
    lock.unlock();
    say(line);
    lock.lock();
}

void death_notary::publish_loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        lock.unlock();
        const auto wait = reconnect_->tick(std::chrono::milliseconds(100));  // Paho's call, without the lock
        lock.lock();
        // Wakes for a record while connected, a connection change or the stop; never spins while disconnected.
        cv_.wait_for(lock, wait, [this] {
            return stopping_ || connected_ != said_connected_ || (connected_ && !pending_.empty());
        });
        say_connection_change(lock);
        if (stopping_) return;
        if (connected_ && !pending_.empty()) publish_batch(lock, std::chrono::seconds(5));
    }
}

// Publishes what is pending, without the lock; what does not go out goes back (newer records win). Called and
// returns with the lock held.
void death_notary::publish_batch(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds ack_wait) {
    std::map<std::string, std::string> batch;
    batch.swap(pending_);
    lock.unlock();
    mqtt::delivery_token_ptr tail;
    std::uint64_t ok = 0, failed = 0;
    auto it = batch.begin();
    try {
        for (; it != batch.end(); ++it) {
            tail = client_->publish(mqtt::message::create(it->first, it->second, options_.qos, true));
            ++ok;
        }
        // Pace by the broker: the last token acknowledged means those before it are too (in-order delivery). In
        // slices: a token of a connection that went may never complete, and the reconnect waits for this thread.
        const auto until = std::chrono::steady_clock::now() + ack_wait;
        while (tail && !tail->wait_for(std::chrono::milliseconds(100)) && client_->is_connected() &&
               std::chrono::steady_clock::now() < until) {
        }
    } catch (const std::exception&) {
        ++failed;  // too many in flight, or the connection just went: the rest waits for the next round
    }
    lock.lock();
    for (; it != batch.end(); ++it) pending_.emplace(it->first, std::move(it->second));
    stats_.published += ok;
    stats_.failed += failed;
    if (failed > 0 && !stopping_) cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stopping_; });
}

notary_stats death_notary::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto s = stats_;
    s.pending = pending_.size();
    s.connected = connected_;
    return s;
}

void death_notary::wake_paho() noexcept {
    if (client_) mqtt_presence::wake_paho(*client_);
}

void death_notary::stop() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ || !thread_.joinable()) return;
        stopping_ = true;
    }
    reconnect_->stop();
    cv_.notify_all();
    thread_.join();
    // The last records, the lock's release and the DISCONNECT, each bounded: a frozen broker costs about 1.5 s.
    std::unique_lock<std::mutex> lock(mutex_);
    if (connected_ && !pending_.empty()) publish_batch(lock, std::chrono::milliseconds(500));
    const auto unpublished = stats_.unpublished_at_stop = pending_.size();
    const bool connected = connected_;
    lock.unlock();
    if (unpublished > 0)
        say("notary: stopped with " + std::to_string(unpublished) + " records not published (the broker " +
            (connected ? "did not acknowledge in time" : "is gone") + "); the history has every change");
    try {
        client_->disable_callbacks();
        if (connected) {
            client_->publish(mqtt::message::create(lock_topic_, lock_json(false), 1, true))
                ->wait_for(std::chrono::milliseconds(500));
            client_->disconnect()->wait_for(std::chrono::milliseconds(500));
        }
    } catch (...) {
        // the will releases the lock
    }
}

}  // namespace mqtt_presence
