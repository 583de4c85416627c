#pragma once
// status_announcer: the one-line helpers that give an existing Paho app a connection status:
//
//   mqtt_presence::status_announcer status("sensor-1");   // sensors/connected/sensor-1, payload "1"/"0"
//   status.add_will(conn_opts);                            // before connect(): the retained "0" Last Will
//   cli.set_connected_handler([&](const std::string&) { status.announce(cli); });   // retained "1"
//   status.disconnect(cli);                                // instead of cli.disconnect(): "0", then DISCONNECT
//
// Thread rules: announce() never blocks and never throws, so it is safe inside any Paho callback. add_will() and
// disconnect() are for the app's own thread (disconnect() waits, bounded, for the broker's acknowledgement).
// With Paho's automatic reconnect the will of the first CONNECT is reused; announce() keeps the same epoch, so
// the will and the "connected" payload stay a matching pair.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <mqtt/async_client.h>
#include <mqtt/connect_options.h>

#include <mqtt_presence/status_record.hpp>
#include <mqtt_presence/topic_scheme.hpp>

namespace mqtt_presence {

/// What to publish where; shared by the helpers and presence_client.
struct status_options {
    std::string name;  ///< the client's name in the topic; empty: this machine's host name
    std::string topic_template = "sensors/connected/{client}";        ///< one {client} level
    payload_format format = payload_format::plain;
    int qos = 1;                                                     ///< for the status and the will
    std::string ip;    ///< JSON "ip"; empty: the local address of the route to the broker
    std::string host;  ///< JSON "host"; empty: this machine's host name
    std::string meta;  ///< extra JSON members as a JSON object text, e.g. {"fw":"1.4"}
    std::chrono::seconds heartbeat{0};  ///< JSON "hb"; 0: none (presence_client republishes at this interval)

    /// Throws mqtt_presence::error naming the bad field and value.
    void validate() const;
};

class status_announcer {
public:
    /// `name` in the default scheme sensors/connected/{client}, plain payloads.
    explicit status_announcer(std::string_view name);
    explicit status_announcer(status_options options);

    /// Starts a new connection epoch and sets its "disconnected" payload as the retained QoS 1 will.
    void add_will(mqtt::connect_options& options);
    /// The retained "disconnected" will of the current epoch (what add_will() sets, after next_epoch()).
    [[nodiscard]] mqtt::will_options will() const;
    /// Publishes the retained "connected" payload without waiting. Safe in any Paho callback; never throws
    /// (returns false when the client is not connected or the publish could not be queued).
    bool announce(mqtt::async_client& client) noexcept;
    /// Publishes the retained "disconnected" payload (reason "clean"), waits for it to be acknowledged, then
    /// disconnects, all within `timeout`. Never throws; returns false if the status could not be delivered: then
    /// the connection ends so that the broker keeps and publishes the will (MQTT 5: reason 0x04; 3.1.1: no
    /// DISCONNECT packet, which needs add_will() to have been called before connect()).
    bool disconnect(mqtt::async_client& client, std::chrono::milliseconds timeout = std::chrono::seconds(2)) noexcept;

    [[nodiscard]] const std::string& topic() const noexcept { return topic_; }
    [[nodiscard]] std::uint64_t epoch() const noexcept { return epoch_.load(); }
    /// The payload for a state in this announcer's format, with the current epoch and a fresh time stamp.
    [[nodiscard]] std::string payload(state s, std::string_view reason = {}) const;
    [[nodiscard]] const status_options& options() const noexcept { return options_; }

    /// Starts a new epoch (larger than any before: max(last + 1, now in ms)); returns it.
    std::uint64_t next_epoch() noexcept;

private:
    status_options options_;
    std::string topic_;
    std::atomic<std::uint64_t> epoch_{0};
    std::atomic<std::int64_t> epoch_started_ms_{0};  // when the current epoch began (the will's "ts")
    std::atomic<bool> mqtt5_{false};  // the connect options add_will() saw: how disconnect() keeps the will
};

}  // namespace mqtt_presence
