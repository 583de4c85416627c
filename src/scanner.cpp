#include <mqtt_presence/scanner.hpp>

#include <unistd.h>

#include <random>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/status_codec.hpp>

#include "paho_util.hpp"
#include "uri.hpp"

namespace mqtt_presence {
namespace {

std::string default_client_id() {
    std::random_device rd;
    return "mqtt-presence-scanner-" + std::to_string(getpid()) + "-" + std::to_string(rd() % 100000);
}

}  // namespace

void scanner_options::validate() const {
    (void)detail::parse_server_uri(server_uri);
    if (topics.empty()) throw error("no topic template: give at least one, e.g. sensors/connected/{client}");
    for (const auto& t : topics) (void)topic_scheme::parse(t);
    if (qos < 0 || qos > 2) throw error("subscription qos " + std::to_string(qos) + " is invalid; use 0 or 1");
    if (mqtt_version != 4 && mqtt_version != 5)
        throw error("mqtt_version " + std::to_string(mqtt_version) + " is not supported; use 4 (3.1.1) or 5");
    if (topics.size() > 65535) throw error("too many topic templates");
}

scanner::scanner(scanner_options options) : options_(std::move(options)) {
    options_.validate();
    if (options_.client_id.empty()) options_.client_id = default_client_id();
    for (const auto& t : options_.topics) schemes_.push_back(topic_scheme::parse(t));
    owned_ = detail::make_client(options_.server_uri, options_.client_id, options_.mqtt_version);
    client_ = owned_.get();
    marker_topic_ = "mqtt-presence-sync/" + options_.client_id;
    init_callbacks();
}

scanner::scanner(mqtt::async_client& client, scanner_options options) : options_(std::move(options)) {
    options_.validate();
    if (options_.client_id.empty()) options_.client_id = client.get_client_id();
    for (const auto& t : options_.topics) schemes_.push_back(topic_scheme::parse(t));
    client_ = &client;
    marker_topic_ = "mqtt-presence-sync/" + options_.client_id;
    expiry_ = std::thread([this] { expiry_loop(); });
}

scanner::~scanner() noexcept { stop(); }

void scanner::init_callbacks() {
    owned_->set_connected_handler([this](const std::string&) {
        status("connected to " + options_.server_uri);
        on_connected();
    });
    owned_->set_connection_lost_handler([this](const std::string& cause) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            connected_ = false;
        }
        status("connection lost" + (cause.empty() ? std::string() : ": " + cause) + "; reconnecting");
    });
    owned_->set_message_callback([this](mqtt::const_message_ptr msg) { handle_message(msg); });
}

void scanner::start() {
    if (!owned_) throw error("start() is for a scanner that owns its client; with a borrowed client call on_connected()");
    auto opts = detail::base_connect_options(options_);
    // The scanner has no will, so Paho's reconnect (which reuses the first CONNECT) is fine here.
    opts.set_automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(30));
    try {
        auto token = owned_->connect(opts);
        if (!token->wait_for(options_.connect_timeout + std::chrono::seconds(1)))
            throw error("no answer from the broker at " + options_.server_uri + " within " +
                        std::to_string(options_.connect_timeout.count()) + " s");
    } catch (const mqtt::exception& e) {
        throw error("cannot connect to the broker at " + options_.server_uri + ": " + e.what() +
                    " (is it running? try mosquitto_sub -h HOST -p PORT -t '#')");
    }
    if (!expiry_.joinable()) expiry_ = std::thread([this] { expiry_loop(); });
}

void scanner::stop() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (expiry_.joinable()) expiry_.join();
    if (owned_) {
        try {
            if (owned_->is_connected()) owned_->disconnect()->wait_for(std::chrono::seconds(2));
        } catch (...) {
            // already disconnected
        }
    }
}

void scanner::on_connected() noexcept {
    std::uint64_t marker = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connected_ = true;
        marker = ++marker_sent_;
        subscribed_at_ = std::chrono::steady_clock::now();
        last_status_message_ = subscribed_at_;
    }
    try {
        // Status filters first, then the marker: the broker sends each filter's retained messages at its
        // SUBSCRIBE, so the marker coming back means the retained burst before it is complete.
        for (const auto& s : schemes_) client_->subscribe(s.filter(), options_.qos);
        client_->subscribe(marker_topic_, options_.qos);
        client_->publish(mqtt::message::create(marker_topic_, std::to_string(marker), options_.qos, false));
    } catch (const std::exception& e) {
        status(std::string("subscribe failed: ") + e.what());
    }
    cv_.notify_all();
}

bool scanner::handle_message(const mqtt::const_message_ptr& msg) noexcept {
    if (!msg) return false;
    try {
        const auto& topic = msg->get_topic();
        if (topic == marker_topic_) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                const auto seq = std::strtoull(msg->get_payload_str().c_str(), nullptr, 10);
                if (seq > marker_seen_) marker_seen_ = seq;
            }
            cv_.notify_all();
            return true;
        }
        for (std::size_t i = 0; i < schemes_.size(); ++i) {
            const auto name = schemes_[i].match(topic);
            if (!name) continue;
            // Per-thread scratch: decoding and applying reuse their strings' storage from message to message.
            thread_local status_record record;
            thread_local change c;
            decode(msg->get_payload_str(), record);
            std::shared_ptr<const change_callback> cb;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                last_status_message_ = std::chrono::steady_clock::now();
                change* out = on_change_ && *on_change_ ? &c : nullptr;  // nobody listens: no row is built
                if (table_.apply(*name, record, msg->is_retained(), clock::now(), static_cast<std::uint16_t>(i), out) &&
                    out != nullptr)
                    cb = on_change_;
            }
            if (cb) notify(*cb, c);
            return true;
        }
    } catch (const std::exception& e) {
        status(std::string("message handling failed: ") + e.what());
    }
    return false;
}

void scanner::dispatch(const std::vector<change>& changes) noexcept {
    std::shared_ptr<const change_callback> cb;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        cb = on_change_;
    }
    if (!cb || !*cb) return;
    for (const auto& c : changes) notify(*cb, c);
}

void scanner::notify(const change_callback& cb, const change& c) noexcept {
    try {
        cb(c);
    } catch (const std::exception& e) {
        status(std::string("change callback threw: ") + e.what());
    } catch (...) {
        status("change callback threw a non-standard exception");
    }
}

void scanner::status(const std::string& text) noexcept {
    std::function<void(const std::string&)> cb;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        cb = on_status_;
    }
    if (cb) try { cb(text); } catch (...) {}
}

void scanner::expiry_loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
        cv_.wait_for(lock, options_.expire_interval, [this] { return stopping_; });
        if (stopping_) break;
        auto changes = table_.expire(clock::now());
        if (changes.empty()) continue;
        lock.unlock();
        dispatch(changes);
        lock.lock();
    }
}

bool scanner::wait_synced(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        if (marker_sent_ > 0 && marker_seen_ >= marker_sent_) return true;
        const auto now = std::chrono::steady_clock::now();
        // Fallback when the marker does not come back (no permission to publish, broker reorders):
        // a quiet period after the last status message.
        if (connected_ && marker_sent_ > 0 && now - last_status_message_ >= options_.quiet_period &&
            now - subscribed_at_ >= 2 * options_.quiet_period)
            return true;
        if (now >= deadline) return false;
        cv_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(50)));
    }
}

bool scanner::synced() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return marker_sent_ > 0 && marker_seen_ >= marker_sent_;
}

void scanner::on_change(change_callback callback) {
    std::lock_guard<std::mutex> lock(mutex_);
    on_change_ = std::make_shared<const change_callback>(std::move(callback));
}

void scanner::on_status(std::function<void(const std::string&)> callback) {
    std::lock_guard<std::mutex> lock(mutex_);
    on_status_ = std::move(callback);
}

std::vector<client_status> scanner::snapshot(std::size_t limit) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return table_.snapshot(limit);
}

std::pair<table_counts, table_stats> scanner::for_each_sorted(
    const std::function<void(const client_status&)>& visit) const {
    std::lock_guard<std::mutex> lock(mutex_);
    table_.for_each_sorted(visit);
    return {table_.counts(), table_.stats()};
}

table_counts scanner::counts() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return table_.counts();
}

table_stats scanner::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return table_.stats();
}

bool scanner::connected() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return connected_;
}

std::string scanner::topic_of(const client_status& row) const {
    const auto& scheme = schemes_.at(row.source < schemes_.size() ? row.source : 0);
    try {
        return scheme.topic_for(row.client);
    } catch (const error&) {
        return {};
    }
}

std::vector<client_status> scanner::purge(const std::function<bool(const client_status&)>& select, bool dry_run) {
    std::vector<client_status> chosen;
    for (auto& row : snapshot())
        if (select(row)) chosen.push_back(std::move(row));
    if (dry_run) return chosen;
    std::vector<mqtt::delivery_token_ptr> tokens;
    try {
        for (const auto& row : chosen) {
            const auto topic = topic_of(row);
            if (!topic.empty()) tokens.push_back(client_->publish(mqtt::message::create(topic, "", 0, 1, true)));
        }
        for (auto& t : tokens) t->wait_for(std::chrono::seconds(10));
    } catch (const mqtt::exception& e) {
        throw error(std::string("purge failed: ") + e.what());
    }
    return chosen;
}

}  // namespace mqtt_presence
