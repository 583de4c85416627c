#include <mqtt_presence/presence_client.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <random>

#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/paho_client.hpp>
#include <mqtt_presence/status_codec.hpp>
#include <mqtt_presence/this_machine.hpp>

#include "client_id_claim.hpp"
#include "client_scheduler.hpp"
#include "connect_failure.hpp"
#include "error_log.hpp"
#include "paho/clean_stop.hpp"
#include "paho/paho_wake.hpp"
#include "publisher_policy.hpp"

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

// Backoff jitter must differ between clients: one random seed per process, and a stream of its own per client
// (a random_device per client costs system calls that showed in the start-up profile of large fleets).
void seed_jitter(std::minstd_rand& rng) {
    static const std::uint32_t process_seed = std::random_device{}();
    static std::atomic<std::uint32_t> clients{0};
    std::seed_seq seq{process_seed, clients.fetch_add(1)};
    rng.seed(seq);
}

std::uint64_t unix_ms_now() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
}

}  // namespace

struct presence_client::impl {
    explicit impl(presence_options options);
    ~impl();

    void start();
    bool wait_connected(std::chrono::milliseconds timeout);
    bool stop() noexcept;
    void begin_stop() noexcept;
    bool finish_stop(std::chrono::steady_clock::time_point deadline) noexcept;
    void subscribe(const std::string& filter, int qos);
    [[nodiscard]] bool stopped_by_client_id_conflict() const noexcept;
    [[nodiscard]] bool connected() const noexcept;
    [[nodiscard]] bool conflict_detected() const noexcept;

    void request_stop() noexcept;
    // finish_stop() in halves, so that stop_all() sends every DISCONNECT before it waits for any.
    bool begin_ending(std::chrono::steady_clock::time_point deadline, mqtt::token_ptr& ending) noexcept;
    void ended() noexcept;
    // Tasks on the scheduler's thread (see below); none blocks.
    void post(std::chrono::steady_clock::time_point when, void (impl::*task)());
    void post(std::chrono::steady_clock::time_point when, std::function<void()> task);
    void schedule_connect(std::chrono::milliseconds delay);
    void attempt_connect();
    void connect_failed(int rc, int reason_code, const char* what) noexcept;
    void after_failure();
    void say_failure(const std::string& text);
    void check_connect(std::uint64_t attempt, int check);
    void wake_round_trip();
    void retry_after_backoff();
    void heartbeat(std::uint64_t session, std::chrono::steady_clock::time_point due);
    void session_began();
    void session_ended();
    void stop_as_newcomer(const std::string& why);
    void flush_errors();
    void on_connected(const std::string& cause) noexcept;
    void subscribe_on_connect() noexcept;
    void on_lost(const std::string& cause) noexcept;
    void on_message(mqtt::const_message_ptr msg) noexcept;
    void on_own_status(const mqtt::message& msg);
    void publish_connected() noexcept;
    void publish_claim() noexcept;
    void on_claim(const mqtt::const_message_ptr& msg) noexcept;
    void report_error(const std::string& what) noexcept;
    template <class F>
    void fenced_handler(const char* what, F&& fn) noexcept {
        fenced([this](const std::string& m) { report_error(m); }, what, std::forward<F>(fn));
    }

    presence_options options_;
    status_announcer announcer_;
    std::unique_ptr<mqtt::async_client> client_;

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool running_ = false;
    bool stopping_ = false;
    bool connected_ = false;
    bool connect_in_flight_ = false;
    std::uint64_t attempts_ = 0;  // connect attempts so far: a check of a connect in flight belongs to one
    bool client_id_conflict_ = false;
    detail::own_status_watch own_status_;  // self-heal and name conflicts (mutex_)
    detail::takeover_watch takeover_;      // client id conflicts (mutex_)
    // The client id claim (client_id_claim.hpp): created at construction, claimed after a short session.
    const std::uint64_t created_ms_;
    std::string claim_topic_;          // empty: the client id cannot be a topic level, no claims
    std::uint64_t claim_token_ = 0;    // 0 until this client claims its id (after its first short session)
    bool claim_published_ = false;     // a clean stop clears it
    std::vector<std::string> unhandled_errors_;  // for stderr, written by a task (no on_error set)
    bool flush_posted_ = false;
    mqtt::delivery_token_ptr stop_token_;

    // Scheduler state: touched by this client's tasks, which run one at a time.
    std::shared_ptr<detail::task_guard> guard_;  // retired at stop: no task of this client runs after
    // Backoff jitter, seeded per client from one random seed of the process. A small engine: a fleet has one per
    // client (std::mt19937_64 is 2.5 KB, two thirds of a presence_client).
    std::minstd_rand rng_;
    detail::reconnect_backoff backoff_;
    int last_failure_rc_ = 0;  // Paho's return code of the last failed connect (a refusal: its CONNACK code)
    std::string last_failure_;
    // The failure last said: the same one again is said once a minute at most, with how often it recurred.
    std::string said_failure_;
    std::chrono::steady_clock::time_point said_failure_at_{};
    std::uint64_t said_failure_session_ = 0;
    unsigned failures_unsaid_ = 0;
    std::uint64_t session_ = 0;  // connections so far (mutex_): a heartbeat belongs to one
    std::chrono::steady_clock::time_point session_start_{};

    // Paho reports a failed connect here (its thread): the retry is a task.
    struct connect_listener final : mqtt::iaction_listener {
        explicit connect_listener(impl& c) : client(c) {}
        void on_failure(const mqtt::token& tok) override {
            client.connect_failed(tok.get_return_code(), tok.get_reason_code(), nullptr);
        }
        void on_success(const mqtt::token&) override {}
        impl& client;
    } connect_listener_{*this};
};

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

presence_client::impl::impl(presence_options options)
    : options_((options.validate(), std::move(options))), announcer_([this] {
          // The address toward the broker, found once, before the announcer makes its first payload (only JSON
          // carries it).
          auto status = options_.status;
          if (status.ip.empty() && status.format == payload_format::json)
              status.ip = local_address_for(options_.broker.server_uri);
          return status;
      }()),
      own_status_(options_.broker.mqtt_version == 5),
      created_ms_(unix_ms_now()),
      backoff_(options_.reconnect_min, options_.reconnect_max) {
    seed_jitter(rng_);
    const auto id = options_.broker.client_id.empty() ? announcer_.options().name : options_.broker.client_id;
    claim_topic_ = detail::claim_topic(id);
    client_ = make_client(options_.broker.server_uri, id, options_.broker.mqtt_version);
    client_->set_connected_handler([this](const std::string& cause) { on_connected(cause); });
    client_->set_connection_lost_handler([this](const std::string& cause) { on_lost(cause); });
    client_->set_message_callback([this](mqtt::const_message_ptr msg) { on_message(std::move(msg)); });
}

presence_client::impl::~impl() {
    stop();
    try {
        client_->disable_callbacks();
    } catch (...) {
    }
    client_.reset();  // before the connect listener it may still call
}

void presence_client::impl::start() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (running_) return;
        running_ = true;
        stopping_ = false;
        backoff_.reset();
        guard_ = std::make_shared<detail::task_guard>();
    }
    schedule_connect(std::chrono::milliseconds(0));
}

bool presence_client::impl::wait_connected(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return wake_.wait_for(lock, timeout, [this] { return connected_ || stopping_; }) && connected_;
}

bool presence_client::impl::connected() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return connected_;
}

bool presence_client::impl::conflict_detected() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return own_status_.conflict();
}

void presence_client::impl::report_error(const std::string& what) noexcept {
    if (options_.on_error) {
        try {
            options_.on_error(what);
        } catch (...) {
        }
        return;
    }
    // Nobody handles errors: a task writes them to stderr (this may be Paho's thread: never write here).
    try {
        bool post_flush = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (unhandled_errors_.size() < 100) unhandled_errors_.push_back(what);
            post_flush = running_ && !flush_posted_;
            flush_posted_ = flush_posted_ || post_flush;
        }
        if (post_flush) post(std::chrono::steady_clock::now(), &impl::flush_errors);
    } catch (...) {
    }
}

namespace {
void write_errors(const std::string& topic, std::vector<std::string>& errors) {
    for (const auto& e : errors) detail::write_unhandled_error(topic, e);
    errors.clear();
}
}  // namespace

// The client's timed work runs as short tasks on the process's one scheduler thread (client_scheduler): a connect
// attempt, the backoff before the next one, the heartbeat, the writing of unhandled errors. Nothing here waits on
// a Paho token; Paho's callbacks only record what happened and post a task.

void presence_client::impl::post(std::chrono::steady_clock::time_point when, void (impl::*task)()) {
    post(when, [this, task] { (this->*task)(); });
}

void presence_client::impl::post(std::chrono::steady_clock::time_point when, std::function<void()> task) {
    std::shared_ptr<detail::task_guard> guard;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        guard = guard_;
    }
    if (guard) detail::client_scheduler::instance().at(when, std::move(guard), std::move(task));
}

void presence_client::impl::schedule_connect(std::chrono::milliseconds delay) {
    // Paced process-wide: never earlier than the next free connect slot.
    const auto when = std::max(std::chrono::steady_clock::now() + delay,
                               detail::client_scheduler::instance().reserve_connect());
    post(when, &impl::attempt_connect);
}

namespace {
constexpr std::chrono::milliseconds connect_check{100};  // how often a connect in flight looks at its progress
constexpr int connect_checks = 9;  // for its first second: Paho's poll times out after a second anyway
}  // namespace

void presence_client::impl::attempt_connect() {
    flush_errors();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;
    }
    auto opts = base_connect_options(options_.broker);
    opts.set_automatic_reconnect(false);  // our own loop: a fresh will per connection
    // A fresh epoch for this connection (add_will() is for an app's own connect options).
    announcer_.next_epoch();
    auto will = announcer_.will();
    if (options_.broker.mqtt_version == 5 && options_.will_delay.count() > 0) {
        // The broker sends a delayed will only while the session lives: session expiry >= will delay.
        will.set_properties({{mqtt::property::WILL_DELAY_INTERVAL, static_cast<int>(options_.will_delay.count())}});
        opts.set_properties(
            {{mqtt::property::SESSION_EXPIRY_INTERVAL, static_cast<int>(options_.will_delay.count())}});
    }
    opts.set_will(std::move(will));
    std::uint64_t attempt = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connect_in_flight_ = true;
        attempt = ++attempts_;
    }
    try {
        // Paho's connect timeout bounds the attempt; its failure comes to connect_failed through the listener.
        client_->connect(opts, nullptr, connect_listener_);
    } catch (const mqtt::exception& e) {
        connect_failed(e.get_return_code(), e.get_reason_code(), e.what());
        return;
    }
    post(std::chrono::steady_clock::now() + connect_check, [this, attempt] { check_connect(attempt, 1); });
}

// A connect still in flight may wait on Paho's poll (paho_wake.hpp): a connected client of the process wakes it.
void presence_client::impl::check_connect(std::uint64_t attempt, int check) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!connect_in_flight_ || attempts_ != attempt || stopping_) return;
    }
    detail::paho_wake::instance().request();
    if (check < connect_checks)
        post(std::chrono::steady_clock::now() + connect_check,
             [this, attempt, check] { check_connect(attempt, check + 1); });
}

// A task of a connected client, asked for by another client's connect (paho_wake.hpp).
void presence_client::impl::wake_round_trip() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!connected_ || stopping_) return;
    }
    try {
        client_->unsubscribe(detail::paho_wake::filter);
    } catch (const std::exception&) {
        // not connected after all: another connected client wakes Paho at the next request
    }
}

// Paho's thread (the connect listener) or the scheduler's: records the failure, the next attempt is a task.
// `what`: Paho's text, or null for the one Paho's return and reason codes make.
void presence_client::impl::connect_failed(int rc, int reason_code, const char* what) noexcept {
    std::string text;
    try {
        text = what ? what : mqtt::exception(rc, static_cast<mqtt::ReasonCode>(reason_code)).what();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            connect_in_flight_ = false;
            if (stopping_) return;
            last_failure_rc_ = rc;
            last_failure_ = text;
        }
        post(std::chrono::steady_clock::now(), &impl::after_failure);
    } catch (...) {
        // out of memory for a task: the client stays down, and says so below if it can
        report_error("connect to " + options_.broker.server_uri + " failed: " + text + "; no retry scheduled");
    }
}

void presence_client::impl::after_failure() {
    detail::connect_failure failure;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        failure = {last_failure_rc_, last_failure_};
    }
    // A version-5 connect the broker did not answer: refused MQTT 5, or down? One probe per broker for the whole
    // process, on a thread of its own; until it answers, the failure is reported as it is.
    std::optional<bool> speaks_311;
    if (detail::unanswered_mqtt5(options_.broker, failure))
        speaks_311 = detail::speaks_mqtt311_cached(options_.broker, client_->get_client_id() + "-probe");
    say_failure(detail::connect_failure_text(options_.broker, failure, speaks_311,
                                             "connect to " + options_.broker.server_uri + " failed", ""));
    retry_after_backoff();
}

// A failure is said when it is new (another text, or the first since a connection); the same one again once a
// minute at most, saying how often it recurred: a refusal that lasts is not a line every few seconds forever.
void presence_client::impl::say_failure(const std::string& text) {
    std::uint64_t session = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        session = session_;
    }
    const auto now = std::chrono::steady_clock::now();
    if (text != said_failure_ || session != said_failure_session_) {
        said_failure_ = text;
        said_failure_session_ = session;
        failures_unsaid_ = 0;
        said_failure_at_ = now;
        report_error(text);
    } else if (now - said_failure_at_ >= std::chrono::minutes(1)) {
        report_error(text + " (again; " + std::to_string(failures_unsaid_ + 1) + " tries since it was last said)");
        failures_unsaid_ = 0;
        said_failure_at_ = now;
    } else {
        ++failures_unsaid_;
    }
}

void presence_client::impl::retry_after_backoff() {
    const auto wait = backoff_.next(rng_);
    flush_errors();
    schedule_connect(wait);
}

namespace {
// Heartbeats fall on a grid shared by the process (publisher_policy.hpp), at a phase drawn once per process so that
// processes do not beat together. The first beat comes one to two intervals after the connect; each next one is due
// exactly one interval after the one before.
std::chrono::steady_clock::time_point next_beat(std::chrono::steady_clock::time_point now,
                                                std::chrono::seconds interval) {
    static const double phase = [] {
        std::random_device seed;
        return std::uniform_real_distribution<double>(0.0, 1.0)(seed);
    }();
    return detail::next_beat(now, interval, phase);
}
}  // namespace

// The heartbeat of one session: it ends with the session.
void presence_client::impl::heartbeat(std::uint64_t session, std::chrono::steady_clock::time_point due) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ || !connected_ || session_ != session) return;
    }
    publish_connected();
    auto next = due + options_.status.heartbeat;
    const auto now = std::chrono::steady_clock::now();
    if (next <= now) next = next_beat(now, options_.status.heartbeat);  // far behind (a suspended machine): rejoin
    post(next, [this, session, next] { heartbeat(session, next); });
}

// A session began (scheduled by on_connected): its heartbeat starts.
void presence_client::impl::session_began() {
    std::uint64_t session = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ || !connected_) return;
        session = session_;
    }
    flush_errors();
    if (options_.status.heartbeat.count() > 0) {
        // One interval after the connect at least, like the beats after it: a fleet that is still connecting is not
        // also beating.
        const auto due = next_beat(std::chrono::steady_clock::now() + options_.status.heartbeat,
                                   options_.status.heartbeat);
        post(due, [this, session, due] { heartbeat(session, due); });
    }
}

// A session ended (scheduled by on_lost). Two live processes with one client id make the broker drop each in turn:
// sessions that end within seconds. From the first such session on, this client claims its id at each connect; the
// newcomer (publisher_policy.hpp, takeover_watch) stops, the incumbent reports it once.
void presence_client::impl::session_ended() {
    bool short_session = false;
    bool newcomer = false;
    bool warn = false;
    int short_sessions = 0;
    std::string why;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;
        short_session = takeover_.session_ended(std::chrono::steady_clock::now() - session_start_);
        while (short_session && claim_token_ == 0 && !claim_topic_.empty())
            claim_token_ = (static_cast<std::uint64_t>(rng_()) << 32) ^ rng_() ^ created_ms_;
        newcomer = options_.stop_on_client_id_conflict &&
                   takeover_.is_newcomer({created_ms_, claim_token_, 0}, unix_ms_now(), claim_topic_, why);
        warn = !newcomer && takeover_.should_warn();
        short_sessions = takeover_.short_sessions();
        if (newcomer) client_id_conflict_ = true;
    }
    if (newcomer) return stop_as_newcomer(why);
    if (!short_session) backoff_.reset();
    if (warn)
        report_error("the connection was lost " + std::to_string(short_sessions) +
                     " times within seconds of connecting: another client probably uses the client id \"" +
                     client_->get_client_id() + "\" (give each process its own --client-id)");
    retry_after_backoff();
}

// This process is the newcomer of two with one client id: it stops reconnecting and says why.
void presence_client::impl::stop_as_newcomer(const std::string& why) {
    const auto description = "another client connected with the client id \"" + client_->get_client_id() + "\" (" +
                             why + "); this client, the newcomer, stops (give each process its own client id)";
    if (options_.on_client_id_conflict)
        fenced_handler("on_client_id_conflict", [&] { options_.on_client_id_conflict(description); });
    else
        report_error(description);
    flush_errors();
}

// Unhandled errors go to stderr from the scheduler's thread or the owner's, never from Paho's.
void presence_client::impl::flush_errors() {
    std::vector<std::string> errors;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        errors.swap(unhandled_errors_);
        flush_posted_ = false;
    }
    write_errors(announcer_.topic(), errors);
}

void presence_client::impl::publish_connected() noexcept {
    try {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (own_status_.conflict() || stopping_ || !connected_) return;
        }
        auto msg = mqtt::message::create(announcer_.topic(), announcer_.payload(state::connected),
                                         options_.status.qos, true);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            own_status_.sent_connected();  // before the publish: its echo may come before publish() returns
        }
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

// After a short session (a takeover suspected): subscribe to the claim topic, whose retained message is the other
// process's claim, then claim the id for this client (client_id_claim.hpp). Paho's thread: nothing waits.
void presence_client::impl::publish_claim() noexcept {
    detail::client_id_claim claim{created_ms_, 0, unix_ms_now()};
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (claim_token_ == 0) return;
        claim.token = claim_token_;
        claim_published_ = true;
    }
    try {
        client_->subscribe(claim_topic_, 1);
        auto msg = mqtt::message::create(claim_topic_, detail::encode_claim(claim), 1, true);
        if (options_.broker.mqtt_version == 5)  // a dead process's claim does not stay on the broker
            msg->set_properties({{mqtt::property::MESSAGE_EXPIRY_INTERVAL,
                                  static_cast<int>(2 * detail::claim_freshness.count())}});
        client_->publish(msg);
    } catch (const std::exception& e) {
        report_error(std::string("claiming the client id failed: ") + e.what());
    }
}

// A claim on our claim topic: our own echo (our token), or the other process's.
void presence_client::impl::on_claim(const mqtt::const_message_ptr& msg) noexcept {
    const auto claim = detail::decode_claim(msg->get_payload_str());
    if (!claim) return;  // cleared, or not a claim: nothing to weigh
    std::lock_guard<std::mutex> lock(mutex_);
    if (claim->token != claim_token_) takeover_.rival_claim(*claim);
}

void presence_client::impl::on_connected(const std::string&) noexcept {
    std::shared_ptr<detail::task_guard> guard;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connected_ = true;
        connect_in_flight_ = false;
        guard = guard_;
        ++session_;
        session_start_ = std::chrono::steady_clock::now();
        own_status_.connected();  // a new connection looks again: the other publisher may be gone
    }
    subscribe_on_connect();
    publish_connected();
    try {
        detail::paho_wake::instance().connected(guard, [this] { wake_round_trip(); });
    } catch (...) {
        // out of memory: this client does not wake Paho for others' connects; they wait for its poll to time out
    }
    wake_.notify_all();
    try {
        post(std::chrono::steady_clock::now(), &impl::session_began);
    } catch (...) {
        report_error("out of memory: the heartbeat of this connection did not start");
    }
    if (options_.on_connected) fenced_handler("on_connected", [&] { options_.on_connected(); });
}

// The status topic (self-heal), the claim (after a short session), and the app's subscriptions: the session is
// clean, so they are made again at every connect. Paho's thread: nothing waits.
void presence_client::impl::subscribe_on_connect() noexcept {
    std::vector<std::pair<std::string, int>> subscriptions;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        try {
            subscriptions = options_.subscriptions;
        } catch (...) {
        }
    }
    try {
        // Self-heal watches our own status. QoS 0: nothing is lost that matters (a lost connection is a reconnect
        // with a fresh "connected" anyway). MQTT 5's no-local spares the echo of every heartbeat: what is left is
        // what others publish on our topic, wills of connections under another client id included (a late will of
        // this client id is sent by the broker before it accepts this connection).
        if (options_.broker.mqtt_version == 5)
            client_->subscribe(announcer_.topic(), 0, mqtt::subscribe_options(true));
        else
            client_->subscribe(announcer_.topic(), 0);
    } catch (const std::exception& e) {
        report_error(std::string("subscribing to the status topic failed: ") + e.what());
    }
    publish_claim();
    for (const auto& [filter, qos] : subscriptions) {
        try {
            client_->subscribe(filter, qos);
        } catch (const std::exception& e) {
            report_error("subscribing to " + filter + " failed: " + e.what());
        }
    }
}

void presence_client::impl::on_lost(const std::string& cause) noexcept {
    std::shared_ptr<detail::task_guard> guard;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!connected_) return;  // already told
        connected_ = false;
        guard = guard_;
    }
    detail::paho_wake::instance().gone(guard);
    wake_.notify_all();
    try {
        post(std::chrono::steady_clock::now(), &impl::session_ended);
    } catch (...) {
        report_error("out of memory: no reconnect scheduled after the connection was lost");
    }
    if (options_.on_connection_lost)
        fenced_handler("on_connection_lost", [&] { options_.on_connection_lost(cause); });
}

void presence_client::impl::on_message(mqtt::const_message_ptr msg) noexcept {
    if (!msg) return;
    if (!claim_topic_.empty() && msg->get_topic().rfind(detail::claim_topic_prefix, 0) == 0) return on_claim(msg);
    if (msg->get_topic() != announcer_.topic()) {
        if (options_.on_message) fenced_handler("on_message", [&] { options_.on_message(msg); });
        return;
    }
    fenced_handler("reading the client's own status", [&] { on_own_status(*msg); });
}

// A status on our own topic (own_status_watch): heal, or report another publisher of this name.
void presence_client::impl::on_own_status(const mqtt::message& msg) {
    const auto record = decode(msg.get_payload_str());
    const auto mine = announcer_.epoch();
    using verdict = detail::own_status_watch::verdict;
    verdict heard = verdict::nothing;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ || !connected_) return;
        heard = own_status_.heard(record, msg.is_retained(), mine, clock::now());
    }
    if (heard == verdict::heal) return publish_connected();
    std::string description;
    if (heard == verdict::newer_publisher)
        description = "another client publishes \"" + options_.status.name + "\" on " + announcer_.topic() +
                      " with a newer epoch (" + std::to_string(record.epoch.value_or(0)) + " > " +
                      std::to_string(mine) + "); this client stops republishing its status until that one goes away";
    else if (heard == verdict::plain_publisher)
        description = "another client publishes \"connected\" on " + announcer_.topic() +
                      " (a status this client did not send; a payload without an epoch cannot say which is newer): "
                      "two processes may use the name \"" + options_.status.name + "\"; give each its own name, or "
                      "use a JSON payload";
    else
        return;
    if (options_.on_conflict) fenced_handler("on_conflict", [&] { options_.on_conflict(description); });
    else report_error(description);
}

bool presence_client::impl::stop() noexcept {
    const auto deadline = std::chrono::steady_clock::now() + options_.stop_timeout;
    begin_stop();
    return finish_stop(deadline);
}

void presence_client::set_connect_rate(double per_second) {
    detail::client_scheduler::instance().set_connect_rate(per_second);
}

void presence_client::impl::request_stop() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!running_) return;
        stopping_ = true;
    }
    wake_.notify_all();
}

void presence_client::impl::begin_stop() noexcept {
    request_stop();
    std::shared_ptr<detail::task_guard> guard;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!running_) return;
        running_ = false;
        guard = guard_;
    }
    if (guard) {  // after this, none of this client's tasks runs now or later
        detail::paho_wake::instance().gone(guard);
        std::lock_guard<std::mutex> hold(guard->mutex);
        guard->alive = false;
    }
    bool clear_claim = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        clear_claim = claim_published_ && !client_id_conflict_;
    }
    try {
        if (clear_claim && client_->is_connected())  // acknowledged before the status below (one QoS 1 stream)
            client_->publish(mqtt::message::create(claim_topic_, std::string(), 1, true));
    } catch (const std::exception& e) {
        report_error(std::string("clearing the client id claim failed: ") + e.what());
    }
    try {
        if (client_->is_connected() && !stopped_by_client_id_conflict())
            stop_token_ = client_->publish(mqtt::message::create(
                announcer_.topic(), announcer_.payload(state::disconnected, "clean"), options_.status.qos, true));
    } catch (const std::exception& e) {
        report_error(std::string("publishing the clean \"disconnected\" failed: ") + e.what());
    }
}

bool presence_client::impl::finish_stop(std::chrono::steady_clock::time_point deadline) noexcept {
    mqtt::token_ptr ending;
    const bool delivered = begin_ending(deadline, ending);
    detail::wait_end_of_connection(ending, deadline);
    ended();
    return delivered;
}

bool presence_client::impl::begin_ending(std::chrono::steady_clock::time_point deadline, mqtt::token_ptr& ending) noexcept {
    std::string problem;
    const bool delivered = detail::begin_end_of_connection(*client_, stop_token_, options_.broker.mqtt_version == 5,
                                                           deadline, problem, ending);
    stop_token_.reset();
    if (!problem.empty()) report_error(problem);
    return delivered;
}

void presence_client::impl::ended() noexcept {
    std::vector<std::string> errors;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connected_ = false;
        errors.swap(unhandled_errors_);
    }
    write_errors(announcer_.topic(), errors);  // the owner's thread: writing is fine here
}

void presence_client::impl::subscribe(const std::string& filter, int qos) {
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

bool presence_client::impl::stopped_by_client_id_conflict() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return client_id_conflict_;
}

// The public face: each call goes to the private state.
presence_client::presence_client(presence_options options) : impl_(std::make_unique<impl>(std::move(options))) {}
presence_client::~presence_client() noexcept = default;
void presence_client::start() { impl_->start(); }
bool presence_client::wait_connected(std::chrono::milliseconds timeout) { return impl_->wait_connected(timeout); }
bool presence_client::stop() noexcept { return impl_->stop(); }
void presence_client::begin_stop() noexcept { impl_->begin_stop(); }
bool presence_client::finish_stop(std::chrono::steady_clock::time_point deadline) noexcept {
    return impl_->finish_stop(deadline);
}
void presence_client::subscribe(const std::string& filter, int qos) { impl_->subscribe(filter, qos); }
bool presence_client::stopped_by_client_id_conflict() const noexcept { return impl_->stopped_by_client_id_conflict(); }
bool presence_client::connected() const noexcept { return impl_->connected(); }
std::uint64_t presence_client::epoch() const noexcept { return impl_->announcer_.epoch(); }
const std::string& presence_client::topic() const noexcept { return impl_->announcer_.topic(); }
bool presence_client::conflict_detected() const noexcept { return impl_->conflict_detected(); }
mqtt::async_client& presence_client::mqtt() noexcept { return *impl_->client_; }

std::size_t stop_all(const std::vector<presence_client*>& clients) noexcept {
    // Every reconnect loop ends at once, every clean "disconnected" is sent, then all are awaited together.
    auto longest = std::chrono::milliseconds(0);
    for (auto* c : clients) {
        c->impl_->request_stop();
        longest = std::max(longest, c->impl_->options_.stop_timeout);
    }
    const auto deadline = std::chrono::steady_clock::now() + longest;
    for (auto* c : clients) c->impl_->begin_stop();
    // Every DISCONNECT is on its way before any is awaited.
    std::size_t delivered = 0;
    std::vector<mqtt::token_ptr> endings(clients.size());
    for (std::size_t i = 0; i < clients.size(); ++i)
        delivered += clients[i]->impl_->begin_ending(deadline, endings[i]) ? 1 : 0;
    for (std::size_t i = 0; i < clients.size(); ++i) {
        detail::wait_end_of_connection(endings[i], deadline);
        clients[i]->impl_->ended();
    }
    return delivered;
}

}  // namespace mqtt_presence
