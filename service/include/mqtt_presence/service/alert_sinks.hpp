#pragma once
// alert_sinks: where alerts go, from a thread of their own (never the delivery thread, never Paho's):
//  - exec: a command run with the alert as JSON on stdin and in environment variables (MQTT_PRESENCE_ALERT,
//    _CLIENT, _TOPIC, _TIME, _SINCE, _JSON). The command line is the user's; the alert's text (names come from the
//    network) is only ever data on stdin and in the environment, never part of a command a shell parses. Bounded
//    run time: killed after `exec_timeout`.
//  - webhook: an HTTP(S) POST of the alert (or of `template_text` filled in), retried with backoff (1 s doubling to
//    60 s) until the receiver answers 2xx; https verifies the certificate. Alerts go out in order.
// Template placeholders (template_placeholders(): {{alert}} {{cause}} {{client}} {{topic}} {{scheme}} {{broker}}
// {{time}} {{since}} {{down_for}} {{down_for_s}} {{count}} {{sample}} {{title}} {{message}} {{url}} {{json}}) are
// replaced by the JSON-escaped text without quotes, so a template that is JSON stays JSON; an unknown one is an
// error at the start. Headers ("Name: value", e.g. a receiver's token) go with every POST.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <mqtt_presence/service/alert_engine.hpp>

namespace mqtt_presence {

struct alert_sink_options {
    std::string exec;                                   ///< a command (run by /bin/sh -c); empty: none
    std::chrono::milliseconds exec_timeout = std::chrono::seconds(10);
    std::string webhook;                                ///< http:// or https:// URL; empty: none
    /// A group's own receiver (GROUP, URL): an alert about a client of the group (or the group's outage) is posted
    /// there too, with the same template and headers.
    std::vector<std::pair<std::string, std::string>> group_webhooks;
    std::string template_text;                          ///< the webhook's body; empty: the alert's JSON
    std::string ca_file;                                ///< https: a CA file instead of the system's
    std::vector<std::string> headers;                   ///< "Name: value" for each POST
    std::string public_url;                             ///< the dashboard as people reach it: alerts link to it

    /// Throws mqtt_presence::error for a URL that is not http(s)://HOST[:PORT][/PATH], a header that is not
    /// "Name: value" (a token name, no line break), or a template placeholder that is not one of the list.
    void validate() const;
};

/// The placeholders a template may use, with their braces.
[[nodiscard]] std::vector<std::string> template_placeholders();
/// The client's panel on the dashboard reached at `base` (--public-url); the dashboard itself for an alert about no
/// one client; empty without a base.
[[nodiscard]] std::string client_link(const std::string& base, const std::string& client, const std::string& topic);
/// The template with the alert's fields filled in (see above).
[[nodiscard]] std::string fill_template(const std::string& text, const alert& a);

class alert_sinks {
public:
    /// `delivered`: called on the sinks' thread for each alert every sink took (a webhook's 2xx).
    alert_sinks(alert_sink_options options, std::function<void(const std::string&)> warn,
                std::function<void(const alert&)> delivered = {});
    ~alert_sinks() noexcept;
    alert_sinks(const alert_sinks&) = delete;
    alert_sinks& operator=(const alert_sinks&) = delete;

    /// Queues an alert. Never blocks.
    void send(alert a) noexcept;
    /// Delivers what is queued within about a second (a webhook given one more try), says what it could not,
    /// and stops. Idempotent.
    void stop() noexcept;
    [[nodiscard]] std::uint64_t delivered() const;
    struct backlog {
        std::size_t count = 0;             ///< alerts waiting or being delivered
        std::optional<time_point> oldest;  ///< the time of the oldest of them
        std::uint64_t given_up = 0;        ///< alerts never delivered (a stop, a failing command)
    };
    [[nodiscard]] backlog pending() const;

private:
    void loop();
    void deliver(const alert& a) noexcept;
    void run_exec(const alert& a);
    bool post(const alert& a, const std::string& webhook);  // true: delivered (2xx)
    bool post_until_taken(const alert& a, const std::string& webhook);  // retried; false: stopping, given up

    alert_sink_options options_;
    std::function<void(const std::string&)> warn_;
    std::function<void(const alert&)> delivered_callback_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<alert> queue_;
    std::uint64_t delivered_ = 0;
    std::uint64_t given_up_ = 0;
    bool in_flight_ = false;
    time_point in_flight_since_{};
    bool stopping_ = false;
    std::chrono::steady_clock::time_point stop_deadline_{};
    std::thread thread_;
    std::vector<std::pair<std::string, std::string>> headers_;  // options_.headers, parsed once
};

}  // namespace mqtt_presence
