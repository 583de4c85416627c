#include <mqtt_presence/presence_client.hpp>

#include <random>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/status_codec.hpp>

#include "paho_util.hpp"
#include "uri.hpp"

namespace mqtt_presence {
namespace {

// Runs a user handler on Paho's thread; an exception must not escape into Paho.
template <class F>
void fenced(const std::function<void(const std::string&)>& on_error, const char* what, F&& fn) noexcept {
    try {
        fn();
    } catch (const std::exception& e) {
        if (on_error) try { on_error(std::string(what) + " threw: " + e.what()); } catch (...) {}
    } catch (...) {
        if (on_error) try { on_error(std::string(what) + " threw a non-standard exception"); } catch (...) {}
    }
}

}  // namespace

void presence_options::validate() const {
    (void)detail::parse_server_uri(server_uri);
    status.validate();
    if (mqtt_version != 4 && mqtt_version != 5)
        throw error("mqtt_version " + std::to_string(mqtt_version) + " is not supported; use 4 (3.1.1) or 5");
    if (keepalive.count() < 1 || keepalive.count() > 65535)
        throw error("keepalive " + std::to_string(keepalive.count()) + " s is outside 1-65535 s");
    if (will_delay.count() < 0) throw error("will_delay must not be negative");
    if (will_delay.count() > 0 && mqtt_version != 5)
        throw error("will_delay needs MQTT 5 (set mqtt_version = 5)");
    if (reconnect_min.count() <= 0 || reconnect_max < reconnect_min)
        throw error("reconnect bounds must satisfy 0 < reconnect_min <= reconnect_max");
    detail::validate_tls(server_uri, cafile, certfile, keyfile, insecure);
    if (stop_timeout.count() <= 0) throw error("stop_timeout must be positive");
}

presence_client::presence_client(presence_options options)
    : options_((options.validate(), std::move(options))), announcer_(options_.status) {
    if (options_.status.ip.empty()) announcer_.set_ip(local_address_for(options_.server_uri));
    const auto id = options_.client_id.empty() ? options_.status.name : options_.client_id;
    client_ = detail::make_client(options_.server_uri, id, options_.mqtt_version);
    client_->set_connected_handler([this](const std::string& cause) { on_connected(cause); });
    client_->set_connection_lost_handler([this](const std::string& cause) { on_lost(cause); });
    client_->set_message_callback([this](mqtt::const_message_ptr msg) { on_message(std::move(msg)); });
}

presence_client::~presence_client() noexcept {
    stop();
}

void presence_client::start() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (running_) return;
    running_ = true;
    stopping_ = false;
    worker_ = std::thread([this] { run(); });
}

bool presence_client::wait_connected(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return wake_.wait_for(lock, timeout, [this] { return connected_ || stopping_; }) && connected_;
}

bool presence_client::connected() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return connected_;
}

bool presence_client::conflict_detected() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return conflict_;
}

void presence_client::report_error(const std::string& what) noexcept {
    if (!options_.on_error) return;
    try {
        options_.on_error(what);
    } catch (...) {
    }
}

// The worker thread: connects, waits for a loss, backs off with jitter, reconnects with a fresh epoch and will.
// Also drives the heartbeat. It is the only place that waits on Paho tokens (never a Paho callback).
void presence_client::run() {
    std::mt19937_64 rng(std::random_device{}());
    auto backoff = options_.reconnect_min;
    // Two live processes with one client id make the broker drop each in turn: sessions that end within seconds,
    // again and again. Report it once; the backoff keeps the loop slow.
    int short_sessions = 0;
    bool takeover_reported = false;
    for (;;) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_) return;
            lost_ = false;
        }
        if (connect_once()) {
            const auto session_start = std::chrono::steady_clock::now();
            std::unique_lock<std::mutex> lock(mutex_);
            const auto hb = options_.status.heartbeat;
            while (!stopping_ && !lost_) {
                if (hb.count() > 0) {
                    if (!wake_.wait_for(lock, hb, [this] { return stopping_ || lost_; })) {
                        lock.unlock();
                        publish_connected();
                        lock.lock();
                    }
                } else {
                    wake_.wait(lock, [this] { return stopping_ || lost_; });
                }
            }
            if (stopping_) return;
            lock.unlock();
            if (std::chrono::steady_clock::now() - session_start < std::chrono::seconds(5)) {
                ++short_sessions;
            } else {
                short_sessions = 0;
                backoff = options_.reconnect_min;
            }
            if (short_sessions >= 3 && !takeover_reported) {
                takeover_reported = true;
                report_error("the connection was lost " + std::to_string(short_sessions) +
                             " times within seconds of connecting: another client probably uses the client id \"" +
                             client_->get_client_id() + "\" (give each process its own --client-id)");
            }
        }
        // Full jitter: a random wait in [backoff/2, backoff], so a fleet does not reconnect in lockstep.
        std::uniform_int_distribution<long long> jitter(backoff.count() / 2, backoff.count());
        const auto wait = std::chrono::milliseconds(jitter(rng));
        std::unique_lock<std::mutex> lock(mutex_);
        if (wake_.wait_for(lock, wait, [this] { return stopping_; })) return;
        backoff = std::min(options_.reconnect_max, backoff * 2);
    }
}

bool presence_client::connect_once() {
    auto opts = detail::base_connect_options(options_);
    opts.set_automatic_reconnect(false);  // our own loop: a fresh will per connection
    announcer_.add_will(opts);  // a fresh epoch for this connection
    if (options_.mqtt_version == 5 && options_.will_delay.count() > 0) {
        // The broker sends a delayed will only while the session lives: session expiry >= will delay.
        mqtt::will_options will(announcer_.topic(), announcer_.payload(state::disconnected, "lost"),
                                options_.status.qos, true);
        will.set_properties({{mqtt::property::WILL_DELAY_INTERVAL, static_cast<int>(options_.will_delay.count())}});
        opts.set_will(std::move(will));
        opts.set_properties(
            {{mqtt::property::SESSION_EXPIRY_INTERVAL, static_cast<int>(options_.will_delay.count())}});
    }
    try {
        auto token = client_->connect(opts);
        // Bounded by Paho's connect timeout; poll so that stop() is not held up by a slow broker.
        const auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout + std::chrono::seconds(2);
        while (!token->wait_for(std::chrono::milliseconds(100))) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_ || std::chrono::steady_clock::now() > deadline) return false;
        }
        return true;
    } catch (const mqtt::exception& e) {
        report_error("connect to " + options_.server_uri + " failed: " + e.what());
        return false;
    }
}

void presence_client::publish_connected() noexcept {
    try {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (conflict_ || stopping_ || !connected_) return;
        }
        auto msg = mqtt::message::create(announcer_.topic(), announcer_.payload(state::connected),
                                         options_.status.qos, true);
        if (options_.mqtt_version == 5 && options_.status.heartbeat.count() > 0) {
            // A retained "connected" must not outlive a client that died while the broker was down.
            msg->set_properties({{mqtt::property::MESSAGE_EXPIRY_INTERVAL,
                                  static_cast<int>(3 * options_.status.heartbeat.count())}});
        }
        client_->publish(msg);  // no wait: this may run on Paho's thread
    } catch (const std::exception& e) {
        report_error(std::string("publishing \"connected\" failed: ") + e.what());
    }
}

void presence_client::on_connected(const std::string&) noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connected_ = true;
    }
    try {
        client_->subscribe(announcer_.topic(), options_.status.qos);  // self-heal watches our own status
    } catch (const std::exception& e) {
        report_error(std::string("subscribing to the status topic failed: ") + e.what());
    }
    publish_connected();
    wake_.notify_all();
    if (options_.on_connected) fenced(options_.on_error, "on_connected", [&] { options_.on_connected(); });
}

void presence_client::on_lost(const std::string& cause) noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connected_ = false;
        lost_ = true;
    }
    wake_.notify_all();
    if (options_.on_connection_lost)
        fenced(options_.on_error, "on_connection_lost", [&] { options_.on_connection_lost(cause); });
}

void presence_client::on_message(mqtt::const_message_ptr msg) noexcept {
    if (!msg) return;
    if (msg->get_topic() != announcer_.topic()) {
        if (options_.on_message) fenced(options_.on_error, "on_message", [&] { options_.on_message(msg); });
        return;
    }
    const auto record = decode(msg->get_payload_str());
    const auto mine = announcer_.epoch();
    bool heal = false;
    std::function<void(const std::string&)> report;
    std::string description;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ || conflict_ || !connected_) return;
        if (record.status == state::connected && record.epoch && *record.epoch > mine) {
            conflict_ = true;  // another live process uses this name: report once, stop fighting
            description = "another client publishes \"" + options_.status.name + "\" on " + announcer_.topic() +
                          " with a newer epoch (" + std::to_string(*record.epoch) + " > " + std::to_string(mine) +
                          "); this client stops republishing its status";
            report = options_.on_conflict;
        } else if (record.status != state::connected || (record.epoch && *record.epoch < mine) || record.cleared) {
            heal = true;  // a late will, an older epoch, a cleared or unreadable status while we are up
        }
    }
    if (!description.empty()) {
        if (report) fenced(options_.on_error, "on_conflict", [&] { report(description); });
        else report_error(description);
    }
    if (heal) publish_connected();
}

bool presence_client::stop() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!running_) return true;
        running_ = false;
        stopping_ = true;
    }
    wake_.notify_all();
    if (worker_.joinable()) worker_.join();
    bool delivered = false;
    try {
        if (client_->is_connected()) {
            auto token = client_->publish(mqtt::message::create(
                announcer_.topic(), announcer_.payload(state::disconnected, "clean"), options_.status.qos, true));
            delivered = token->wait_for(options_.stop_timeout);
        }
    } catch (const std::exception& e) {
        report_error(std::string("publishing the clean \"disconnected\" failed: ") + e.what());
    }
    try {
        client_->disconnect()->wait_for(options_.stop_timeout);
    } catch (...) {
        // not connected: nothing to disconnect
    }
    std::lock_guard<std::mutex> lock(mutex_);
    connected_ = false;
    return delivered;
}

}  // namespace mqtt_presence
