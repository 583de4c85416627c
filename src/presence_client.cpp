#include <mqtt_presence/presence_client.hpp>

#include <algorithm>
#include <random>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <mqtt_presence/connection_table.hpp>

#include <cstdio>

#include "clean_stop.hpp"
#include "error_log.hpp"
#include "net_util.hpp"
#include "paho_sockets.hpp"
#include "paho_util.hpp"

namespace mqtt_presence {
namespace {

// Runs a user handler on Paho's thread; an exception must not escape into Paho. `report` gets what it threw.
template <class Report, class F>
void fenced(const Report& report, const char* what, F&& fn) noexcept {
    try {
        fn();
    } catch (const std::exception& e) {
        try { report(std::string(what) + " threw: " + e.what()); } catch (...) {}
    } catch (...) {
        try { report(std::string(what) + " threw a non-standard exception"); } catch (...) {}
    }
}

}  // namespace

void presence_options::validate() const {
    broker.validate();
    status.validate();
    if (will_delay.count() < 0) throw error("will_delay must not be negative");
    if (will_delay.count() > 0 && broker.mqtt_version != 5)
        throw error("will_delay needs MQTT 5 (set mqtt_version = 5)");
    if (reconnect_min.count() <= 0 || reconnect_max < reconnect_min)
        throw error("reconnect bounds must satisfy 0 < reconnect_min <= reconnect_max");
    if (stop_timeout.count() <= 0) throw error("stop_timeout must be positive");
}

presence_client::presence_client(presence_options options)
    : options_((options.validate(), std::move(options))), announcer_([this] {
          // The address toward the broker, found once, before the announcer makes its first payload.
          auto status = options_.status;
          if (status.ip.empty()) status.ip = detail::local_address_for(options_.broker.server_uri);
          return status;
      }()) {
    const auto id = options_.broker.client_id.empty() ? announcer_.options().name : options_.broker.client_id;
    client_ = detail::make_client(options_.broker.server_uri, id, options_.broker.mqtt_version);
    client_->set_connected_handler([this](const std::string& cause) { on_connected(cause); });
    client_->set_connection_lost_handler([this](const std::string& cause) { on_lost(cause); });
    client_->set_message_callback([this](mqtt::const_message_ptr msg) { on_message(std::move(msg)); });
    // Only 3.1.1 needs the socket: to end a connection without DISCONNECT when the clean stop failed.
    if (options_.broker.mqtt_version != 5) detail::track_paho_sockets();
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
    if (options_.on_error) {
        try {
            options_.on_error(what);
        } catch (...) {
        }
        return;
    }
    // Nobody handles errors: the worker writes them to stderr (this may be Paho's thread: never write here).
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        if (unhandled_errors_.size() < 100) unhandled_errors_.push_back(what);
    } catch (...) {
    }
    wake_.notify_all();
}

namespace {
void write_errors(const std::string& topic, std::vector<std::string>& errors) {
    for (const auto& e : errors) detail::write_unhandled_error(topic, e);
    errors.clear();
}
}  // namespace

// The worker thread: connects, waits for a loss, backs off with jitter, reconnects with a fresh epoch and will.
// Also drives the heartbeat and writes unhandled errors. It is the only place that waits on Paho tokens (never a
// Paho callback).
void presence_client::run() {
    std::mt19937_64 rng(std::random_device{}());
    auto backoff = options_.reconnect_min;
    // Two live processes with one client id make the broker drop each in turn: sessions that end within seconds.
    // The newcomer (no long session yet) stops; the incumbent reports it once. The backoff keeps the loop slow.
    int short_sessions = 0;
    bool had_long_session = false;
    bool takeover_reported = false;
    std::vector<std::string> errors;
    const auto flush_errors = [&](std::unique_lock<std::mutex>& lock) {
        if (unhandled_errors_.empty()) return;
        errors.swap(unhandled_errors_);
        lock.unlock();
        write_errors(announcer_.topic(), errors);
        lock.lock();
    };
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            flush_errors(lock);
            if (stopping_) return;
            lost_ = false;
        }
        if (connect_once()) {
            const auto session_start = std::chrono::steady_clock::now();
            std::unique_lock<std::mutex> lock(mutex_);
            const auto hb = options_.status.heartbeat;
            auto next_beat = session_start + hb;
            while (!stopping_ && !lost_) {
                flush_errors(lock);
                const auto woken = [this] { return stopping_ || lost_ || !unhandled_errors_.empty(); };
                if (hb.count() > 0) {
                    if (!wake_.wait_until(lock, next_beat, woken)) {
                        next_beat += hb;
                        lock.unlock();
                        publish_connected();
                        lock.lock();
                    }
                } else {
                    wake_.wait(lock, woken);
                }
            }
            if (stopping_) return;
            lock.unlock();
            const bool short_session = std::chrono::steady_clock::now() - session_start < std::chrono::seconds(3);
            if (short_session) {
                ++short_sessions;
            } else {
                short_sessions = 0;
                had_long_session = true;
                backoff = options_.reconnect_min;
            }
            const auto id = client_->get_client_id();
            if (!had_long_session && options_.stop_on_client_id_conflict &&
                short_sessions >= 2) {
                const auto description =
                    "another client connected with the client id \"" + id + "\" (" + std::to_string(short_sessions) +
                    " sessions in a row ended within seconds of connecting); this client, the newcomer, stops "
                    "(give each process its own client id)";
                {
                    std::lock_guard<std::mutex> guard(mutex_);
                    client_id_conflict_ = true;
                }
                if (options_.on_client_id_conflict)
                    fenced([this](const std::string& m) { report_error(m); }, "on_client_id_conflict",
                           [&] { options_.on_client_id_conflict(description); });
                else
                    report_error(description);
                std::unique_lock<std::mutex> flush(mutex_);
                flush_errors(flush);
                return;
            }
            if (short_sessions >= 3 && !takeover_reported) {
                takeover_reported = true;
                report_error("the connection was lost " + std::to_string(short_sessions) +
                             " times within seconds of connecting: another client probably uses the client id \"" +
                             id + "\" (give each process its own --client-id)");
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
    auto opts = detail::base_connect_options(options_.broker);
    opts.set_automatic_reconnect(false);  // our own loop: a fresh will per connection
    announcer_.add_will(opts);  // a fresh epoch for this connection
    if (options_.broker.mqtt_version == 5 && options_.will_delay.count() > 0) {
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
        const auto deadline = std::chrono::steady_clock::now() + options_.broker.connect_timeout + std::chrono::seconds(2);
        while (!token->wait_for(std::chrono::milliseconds(100))) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_ || std::chrono::steady_clock::now() > deadline) return false;
        }
        return true;
    } catch (const mqtt::exception& e) {
        // Once: a broker that refuses MQTT 5 is told apart from one that is down (a probe connection).
        if (options_.broker.mqtt_version == 5 && !version_probed_) {
            version_probed_ = true;
            mqtt5_refused_ = detail::accepts_mqtt311(options_.broker);
        }
        report_error(mqtt5_refused_ ? detail::connect_failure_text(options_.broker, e.what(), "")
                                    : "connect to " + options_.broker.server_uri + " failed: " + e.what());
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
        if (options_.broker.mqtt_version == 5 && options_.status.heartbeat.count() > 0) {
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
    std::vector<std::pair<std::string, int>> subscriptions;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connected_ = true;
        conflict_ = false;  // a new connection looks again: the other publisher may be gone
        try {
            subscriptions = options_.subscriptions;
        } catch (...) {
        }
    }
    try {
        client_->subscribe(announcer_.topic(), options_.status.qos);  // self-heal watches our own status
    } catch (const std::exception& e) {
        report_error(std::string("subscribing to the status topic failed: ") + e.what());
    }
    // The session is clean: the app's subscriptions are made again at every connect.
    for (const auto& [filter, qos] : subscriptions) {
        try {
            client_->subscribe(filter, qos);
        } catch (const std::exception& e) {
            report_error("subscribing to " + filter + " failed: " + e.what());
        }
    }
    publish_connected();
    wake_.notify_all();
    if (options_.on_connected) fenced([this](const std::string& m) { report_error(m); }, "on_connected", [&] { options_.on_connected(); });
}

void presence_client::on_lost(const std::string& cause) noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!connected_) return;  // already told
        connected_ = false;
        lost_ = true;
    }
    wake_.notify_all();
    if (options_.on_connection_lost)
        fenced([this](const std::string& m) { report_error(m); }, "on_connection_lost", [&] { options_.on_connection_lost(cause); });
}

void presence_client::on_message(mqtt::const_message_ptr msg) noexcept {
    if (!msg) return;
    if (msg->get_topic() != announcer_.topic()) {
        if (options_.on_message) fenced([this](const std::string& m) { report_error(m); }, "on_message", [&] { options_.on_message(msg); });
        return;
    }
    const auto record = decode(msg->get_payload_str());
    const auto mine = announcer_.epoch();
    // An epoch beyond our clock plus the skew the scanner allows is forged (or a broken clock): never a reason to
    // keep quiet.
    const auto horizon = std::chrono::duration_cast<std::chrono::milliseconds>(
        (clock::now() + connection_table::default_max_clock_skew).time_since_epoch());
    const bool forged = record.epoch && *record.epoch > static_cast<std::uint64_t>(horizon.count());
    const bool newer_live = record.status == state::connected && record.epoch && *record.epoch > mine && !forged;
    bool heal = false;
    std::function<void(const std::string&)> report;
    std::string description;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ || !connected_) return;
        if (newer_live) {
            if (!conflict_) {  // another live process uses this name: report, keep quiet while it lives
                conflict_ = true;
                description = "another client publishes \"" + options_.status.name + "\" on " + announcer_.topic() +
                              " with a newer epoch (" + std::to_string(*record.epoch) + " > " + std::to_string(mine) +
                              "); this client stops republishing its status until that one goes away";
                report = options_.on_conflict;
            }
        } else if (record.status != state::connected || record.cleared || forged ||
                   (record.epoch && *record.epoch < mine)) {
            // A late will, an older epoch, a cleared, unreadable or forged status while we are up; or, in a
            // conflict, the other publisher's status went away: say "connected" again.
            conflict_ = false;
            heal = true;
        }
    }
    if (!description.empty()) {
        if (report) fenced([this](const std::string& m) { report_error(m); }, "on_conflict", [&] { report(description); });
        else report_error(description);
    }
    if (heal) publish_connected();
}

bool presence_client::stop() noexcept {
    const auto deadline = std::chrono::steady_clock::now() + options_.stop_timeout;
    begin_stop();
    return finish_stop(deadline);
}

void presence_client::request_stop() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!running_) return;
        stopping_ = true;
    }
    wake_.notify_all();
}

void presence_client::begin_stop() noexcept {
    request_stop();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!running_) return;
        running_ = false;
    }
    if (worker_.joinable()) worker_.join();
    try {
        if (client_->is_connected() && !stopped_by_client_id_conflict())
            stop_token_ = client_->publish(mqtt::message::create(
                announcer_.topic(), announcer_.payload(state::disconnected, "clean"), options_.status.qos, true));
    } catch (const std::exception& e) {
        report_error(std::string("publishing the clean \"disconnected\" failed: ") + e.what());
    }
}

bool presence_client::finish_stop(std::chrono::steady_clock::time_point deadline) noexcept {
    std::string problem;
    const bool delivered =
        detail::finish_clean_stop(*client_, stop_token_, options_.broker.mqtt_version == 5, deadline, problem);
    stop_token_.reset();
    if (!problem.empty()) report_error(problem);
    std::vector<std::string> errors;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connected_ = false;
        errors.swap(unhandled_errors_);
    }
    write_errors(announcer_.topic(), errors);  // the owner's thread: writing is fine here
    return delivered;
}

void presence_client::subscribe(const std::string& filter, int qos) {
    bool now = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        options_.subscriptions.emplace_back(filter, qos);
        now = connected_;
    }
    if (now) {
        try {
            client_->subscribe(filter, qos);
        } catch (const mqtt::exception& e) {
            throw error("subscribing to " + filter + " failed: " + e.what());
        }
    }
}

bool presence_client::stopped_by_client_id_conflict() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return client_id_conflict_;
}

std::size_t stop_all(const std::vector<presence_client*>& clients) noexcept {
    // Every reconnect loop ends at once, every clean "disconnected" is sent, then all are awaited together.
    auto longest = std::chrono::milliseconds(0);
    for (auto* c : clients) {
        c->request_stop();
        longest = std::max(longest, c->options_.stop_timeout);
    }
    const auto deadline = std::chrono::steady_clock::now() + longest;
    for (auto* c : clients) c->begin_stop();
    std::size_t delivered = 0;
    for (auto* c : clients) delivered += c->finish_stop(deadline) ? 1 : 0;
    return delivered;
}

}  // namespace mqtt_presence
