#pragma once
// presence_client: an MQTT client that owns its connection status for its whole life (RAII).
//
//   mqtt_presence::presence_options opts;
//   opts.status.name = "sensor-1";
//   mqtt_presence::presence_client client(opts);
//   client.start();           // connects in the background; retained "1" on every (re)connect
//   client.mqtt().publish(...);
//   // ~presence_client: publishes "0" (reason clean), waits (bounded), disconnects
//
// Lifecycle (DESIGN.md): a fresh epoch and will at every CONNECT; its own reconnect loop with backoff and jitter
// (not Paho's automatic reconnect, which would reuse the first will); self-heal: it watches its own status topic
// and republishes "connected" when it sees a "disconnected" or an older epoch while connected; a newer epoch from
// another process is a name conflict, reported once, after which this client stops fighting.
//
// Threads: the handlers in presence_options run on Paho's callback thread; they must not block (never wait on a
// token there). Exceptions they throw are caught and reported through on_error. start()/stop() are for the owner's
// thread. Everything else is safe from any thread.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <mqtt/async_client.h>

#include <mqtt_presence/presence.hpp>

namespace mqtt_presence {

struct presence_options {
    std::string server_uri = "tcp://localhost:1883";
    std::string client_id;  ///< empty: the status name (a stable id per status topic)
    status_options status;
    std::chrono::seconds keepalive{30};
    int mqtt_version = 4;                 ///< 4 (MQTT 3.1.1) or 5
    std::chrono::seconds will_delay{0};   ///< MQTT 5 only: the broker waits this long before sending the will
    std::chrono::milliseconds reconnect_min{500};
    std::chrono::milliseconds reconnect_max{30'000};
    std::chrono::milliseconds stop_timeout{2'000};  ///< bound on the clean stop
    std::chrono::seconds connect_timeout{10};
    // TLS (used when server_uri is ssl:// or mqtts://) and authentication, passed through to Paho.
    std::string username;
    std::string password;
    std::string cafile;
    std::string certfile;
    std::string keyfile;
    bool insecure = false;  ///< do not verify the server's certificate host name

    /// Called for each message on the app's own subscriptions (not the status topic). Paho's thread.
    std::function<void(mqtt::const_message_ptr)> on_message;
    /// Called after each (re)connect, after "connected" is queued. Paho's thread.
    std::function<void()> on_connected;
    /// Called when the connection is lost (not on stop()). Paho's thread.
    std::function<void(const std::string& cause)> on_connection_lost;
    /// Another process publishes this name with a newer epoch. Called once. Paho's thread.
    std::function<void(const std::string& description)> on_conflict;
    /// Errors that have no caller to throw to (failed publish, exceptions from the handlers above).
    std::function<void(const std::string& message)> on_error;

    /// Throws mqtt_presence::error naming the bad field and value.
    void validate() const;
};

class presence_client {
public:
    /// Validates the options and creates the Paho client; throws mqtt_presence::error. Does not connect.
    explicit presence_client(presence_options options);
    /// The clean stop, bounded by stop_timeout (Paho's own destructor would drop the will and leave "1").
    ~presence_client() noexcept;
    presence_client(const presence_client&) = delete;
    presence_client& operator=(const presence_client&) = delete;

    /// Starts connecting in the background (and keeps reconnecting). Returns at once.
    void start();
    /// Waits until connected and "connected" is published; false on timeout.
    bool wait_connected(std::chrono::milliseconds timeout);
    /// The clean stop: "disconnected" (reason clean), wait for its acknowledgement (bounded), disconnect.
    /// Idempotent. Returns false when the status could not be delivered.
    bool stop() noexcept;

    [[nodiscard]] bool connected() const noexcept;
    [[nodiscard]] std::uint64_t epoch() const noexcept { return announcer_.epoch(); }
    [[nodiscard]] const std::string& topic() const noexcept { return announcer_.topic(); }
    [[nodiscard]] bool conflict_detected() const noexcept;
    /// The underlying client, for the app's own publishes and subscriptions (do not connect/disconnect it).
    [[nodiscard]] mqtt::async_client& mqtt() noexcept { return *client_; }

private:
    void run();
    bool connect_once();
    void on_connected(const std::string& cause) noexcept;
    void on_lost(const std::string& cause) noexcept;
    void on_message(mqtt::const_message_ptr msg) noexcept;
    void publish_connected() noexcept;
    void report_error(const std::string& what) noexcept;

    presence_options options_;
    status_announcer announcer_;
    std::unique_ptr<mqtt::async_client> client_;

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool running_ = false;
    bool stopping_ = false;
    bool connected_ = false;
    bool lost_ = false;
    bool conflict_ = false;
    std::thread worker_;
};

}  // namespace mqtt_presence
