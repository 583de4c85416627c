// The publisher's lifecycle against a real mosquitto, checked with an independent client (mosquitto_sub).
#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/presence_client.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <atomic>
#include <mutex>

#include "harness.hpp"

using namespace harness;
using namespace mqtt_presence;

namespace {

std::vector<std::string> sensor_args(int port, const std::string& name, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{SENSOR_BIN, "--broker", broker_uri(port), "--name", name, "--keepalive", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
}

std::uint64_t epoch_of(const std::string& payload) {
    const auto r = decode(payload);
    return r.epoch.value_or(0);
}

TEST(presence, connect_publishes_retained_status_and_sigint_publishes_clean_stop) {
    const int port = broker_port();
    const auto group = unique_prefix();
    observer obs(port, group + "/connected/+");
    struct form { std::string format, up, down; };
    for (const auto& f : std::vector<form>{{"plain", "1", "0"}, {"text", "online", "offline"},
                                           {"json", "\"status\":1", "\"status\":0"}}) {
        const auto name = "s-" + f.format;
        const auto topic = group + "/connected/" + name;
        child sensor(sensor_args(port, name, {"--topic", group + "/connected/{client}", "--format", f.format}));
        obs.expect(topic, contains(f.up), f.format + " \"connected\"");
        sensor.signal(SIGINT);
        const auto down = obs.expect(topic, contains(f.down), f.format + " \"disconnected\" after SIGINT");
        if (f.format == "json") {
            EXPECT_NE(down.find("\"reason\":\"clean\""), std::string::npos) << down;
            EXPECT_NE(down.find("\"ip\":\"127.0.0.1\""), std::string::npos) << down;
            EXPECT_NE(down.find("\"host\":"), std::string::npos) << down;
        }
        EXPECT_EQ(sensor.wait_exit(10s), 0) << sensor.stderr_text();
    }
    // The status is retained: a new subscriber sees the last one at once.
    observer late(port, group + "/connected/s-json");
    late.expect(group + "/connected/s-json", contains("\"reason\":\"clean\""), "retained clean stop");
}

TEST(presence, sigkill_fires_the_will_at_once) {
    const int port = broker_port();
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    observer obs(port, topic);
    child sensor(sensor_args(port, name, {"--format", "json"}));
    const auto up = obs.expect(topic, contains("\"status\":1"), "connected");
    const auto started = steady::now();
    sensor.signal(SIGKILL);
    const auto will = obs.expect(topic, contains("\"reason\":\"lost\""), "the will after SIGKILL", 10s);
    EXPECT_EQ(epoch_of(will), epoch_of(up)) << "the will belongs to the connection that died";
    EXPECT_LT(steady::now() - started, 5s) << "a closed socket is detected at once";
}

TEST(presence, sigstop_fires_the_will_after_the_keepalive) {
    const int port = broker_port();
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    observer obs(port, topic);
    child sensor(sensor_args(port, name));
    obs.expect(topic, equals("1"), "connected");
    sensor.signal(SIGSTOP);  // the socket stays open: only the keepalive (2 s) reveals the death
    obs.expect(topic, equals("0"), "the will about 1.5 x keepalive after SIGSTOP", 15s);
}

TEST(presence, broker_restart_brings_the_status_back_with_a_newer_epoch) {
    const std::string dir = std::string(TEST_TMP_DIR) + "/" + unique_prefix();
    child start({TEST_BROKER_SCRIPT, "start", dir});
    ASSERT_EQ(start.wait_exit(20s), 0) << start.stderr_text();
    const int port = broker_port(dir);
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    child sensor(sensor_args(port, name, {"--format", "json"}));
    std::uint64_t first = 0;
    {
        observer obs(port, topic);
        first = epoch_of(obs.expect(topic, contains("\"status\":1"), "connected before the restart"));
    }
    child restart({TEST_BROKER_SCRIPT, "restart", dir});
    ASSERT_EQ(restart.wait_exit(20s), 0) << restart.stderr_text();
    observer obs(port, topic);  // the broker has no persistence: only a republished status can appear
    // Paho may first resend a QoS 1 "connected" of the old connection that was in flight when the broker died;
    // the reconnect's own "connected" carries a newer epoch (and self-heal corrects the older one).
    const auto again = obs.expect(
        topic, [&](const std::string& p) { return p.find("\"status\":1") != std::string::npos && epoch_of(p) > first; },
        "connected with a newer epoch after the restart", 30s);
    EXPECT_FALSE(again.empty()) << "sensor log:\n" << sensor.stderr_text();
    sensor.signal(SIGINT);
    EXPECT_EQ(sensor.wait_exit(10s), 0);
    child stop({TEST_BROKER_SCRIPT, "stop", dir});
    stop.wait_exit(20s);
}

TEST(presence, stale_will_is_healed_and_ignored_by_epoch) {
    const int port = broker_port();
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    observer obs(port, topic);
    child a(sensor_args(port, name, {"--format", "json", "--client-id", name + "-X"}));
    const auto a_up = obs.expect(topic, contains("\"status\":1"), "A connected");
    a.signal(SIGSTOP);  // half-open: A's will comes only after its keepalive runs out
    child b(sensor_args(port, name, {"--format", "json", "--client-id", name + "-Y"}));
    const auto b_up = obs.expect(topic, [&](const std::string& p) { return epoch_of(p) > epoch_of(a_up); },
                                 "B connected with a newer epoch");
    const auto will = obs.expect(topic, contains("\"reason\":\"lost\""), "A's late will", 15s);
    EXPECT_EQ(epoch_of(will), epoch_of(a_up));
    obs.expect(topic, [&](const std::string& p) { return p.find("\"status\":1") != std::string::npos &&
                                                         epoch_of(p) == epoch_of(b_up); },
               "B's self-heal republishing \"connected\"");

    // A table fed with what the broker delivered ignores A's death by its epoch.
    connection_table table;
    const auto now = clock::now();
    for (const auto& p : obs.payloads(topic)) table.apply(name, decode(p), false, now);
    EXPECT_EQ(table.find(name)->status, state::connected);
    EXPECT_EQ(table.find(name)->epoch, epoch_of(b_up));
    EXPECT_GE(table.stats().stale_deaths_ignored, 0u);
    // Applied in arrival order, A's will came after B's "connected" and was ignored.
    connection_table ordered;
    ordered.apply(name, decode(b_up), false, now);
    ordered.apply(name, decode(will), false, now);
    EXPECT_EQ(ordered.find(name)->status, state::connected);
    EXPECT_EQ(ordered.stats().stale_deaths_ignored, 1u);
}

TEST(presence, two_live_processes_with_one_name_report_a_conflict_and_stop_fighting) {
    const int port = broker_port();
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    observer obs(port, topic);
    child a(sensor_args(port, name, {"--format", "json", "--client-id", name + "-A"}));
    obs.expect(topic, contains("\"status\":1"), "A connected");
    child b(sensor_args(port, name, {"--format", "json", "--client-id", name + "-B"}));
    ASSERT_TRUE(a.wait_stderr(contains("name conflict"), 10s)) << "A must report the conflict:\n" << a.stderr_text();
    const auto settled = obs.payloads(topic).size();
    // No endless flapping: within two seconds the status is quiet (a flap loop would publish hundreds of times).
    child quiet({"sleep", "2"});
    quiet.wait_exit(5s);
    EXPECT_LE(obs.payloads(topic).size(), settled + 2) << "status keeps flapping";
    EXPECT_EQ(a.wait_exit(0ms), std::nullopt) << "A keeps running";
}

TEST(presence, existing_app_gains_status_with_the_helpers_alone) {
    const int port = broker_port();
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    observer obs(port, topic);
    child app({EXISTING_APP_BIN, broker_uri(port), name});
    obs.expect(topic, equals("1"), "the existing app's \"connected\"");
    app.signal(SIGINT);
    obs.expect(topic, equals("0"), "the existing app's clean \"disconnected\"");
    EXPECT_EQ(app.wait_exit(10s), 0) << app.stderr_text();
    child killed({EXISTING_APP_BIN, broker_uri(port), name});
    obs.expect(topic, equals("1"), "connected again");
    killed.signal(SIGKILL);
    obs.expect(topic, equals("0"), "the existing app's will");
}

TEST(presence, presence_client_chains_the_apps_callbacks_and_stops_cleanly) {
    const int port = broker_port();
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    observer obs(port, topic);
    std::atomic<int> connected_calls{0}, app_messages{0};
    mqtt_presence::presence_options o;
    o.server_uri = broker_uri(port);
    o.status.name = name;
    o.status.format = payload_format::json;
    o.status.meta = R"({"fw":"2.1"})";
    o.on_connected = [&] { ++connected_calls; };
    o.on_message = [&](mqtt::const_message_ptr m) {
        if (m->get_payload_str() == "ping") ++app_messages;
        throw std::runtime_error("an app handler that throws must not reach Paho");
    };
    std::vector<std::string> errors;
    std::mutex errors_mutex;
    o.on_error = [&](const std::string& e) {
        std::lock_guard<std::mutex> lock(errors_mutex);
        errors.push_back(e);
    };
    {
        mqtt_presence::presence_client client(o);
        client.start();
        ASSERT_TRUE(client.wait_connected(10s));
        const auto up = obs.expect(topic, contains("\"status\":1"), "connected");
        EXPECT_NE(up.find("\"fw\":\"2.1\""), std::string::npos) << up;
        EXPECT_EQ(epoch_of(up), client.epoch());
        client.mqtt().subscribe(name + "/cmd", 1)->wait();
        client.mqtt().publish(name + "/cmd", "ping", 1, false)->wait();
        const auto deadline = steady::now() + 10s;
        while (app_messages.load() == 0 && steady::now() < deadline) client.wait_connected(50ms);
        EXPECT_EQ(app_messages.load(), 1) << "the app's own subscription reaches its handler";
        EXPECT_EQ(connected_calls.load(), 1);
        EXPECT_FALSE(client.conflict_detected());
        // The destructor performs the clean stop.
    }
    obs.expect(topic, contains("\"reason\":\"clean\""), "the destructor's clean \"disconnected\"");
    std::lock_guard<std::mutex> lock(errors_mutex);
    ASSERT_FALSE(errors.empty());
    EXPECT_NE(errors.front().find("on_message threw"), std::string::npos) << errors.front();
}

TEST(presence, mqtt5_will_delay_holds_the_will_back) {
    const int port = broker_port();
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    observer obs(port, topic);
    child sensor(sensor_args(port, name, {"--mqtt-version", "5", "--will-delay", "3", "--heartbeat", "5",
                                          "--format", "json"}));
    obs.expect(topic, contains("\"status\":1"), "connected over MQTT 5");
    const auto killed = steady::now();
    sensor.signal(SIGKILL);
    obs.expect(topic, contains("\"reason\":\"lost\""), "the delayed will", 15s);
    EXPECT_GE(steady::now() - killed, 2500ms) << "a 3 s will delay sends the will no sooner";
}

TEST(presence, two_processes_with_one_client_id_are_reported) {
    const int port = broker_port();
    const auto name = unique_prefix();
    const auto id = name + "-shared";
    child a(sensor_args(port, name + "-a", {"--client-id", id}));
    ASSERT_TRUE(a.wait_stderr(contains("connected, epoch"), 10s)) << a.stderr_text();
    child b(sensor_args(port, name + "-b", {"--client-id", id}));
    // The broker drops one when the other connects; both keep reconnecting. One of them reports it.
    const auto deadline = steady::now() + 40s;
    bool reported = false;
    while (!reported && steady::now() < deadline) {
        reported = a.wait_stderr(contains("another client probably uses the client id"), 500ms).has_value() ||
                   b.wait_stderr(contains("another client probably uses the client id"), 500ms).has_value();
    }
    EXPECT_TRUE(reported) << "A:\n" << a.stderr_text() << "B:\n" << b.stderr_text();
}

TEST(presence, bad_options_exit_2_with_a_clear_error) {
    struct bad { std::vector<std::string> args; std::string says; };
    for (const auto& c : std::vector<bad>{
             {{"--format", "xml"}, "unknown payload format"},
             {{"--broker", "localhost"}, "has no scheme"},
             {{"--broker", "tcp://host:99999"}, "outside 1-65535"},
             {{"--topic", "sensors/connected"}, "no {client} placeholder"},
             {{"--name", "a/b"}, "contains '+', '#' or '/'"},
             {{"--will-delay", "5"}, "needs MQTT 5"},
             {{"--meta", "[1]"}, "not a JSON object"},
             {{"--nosuch"}, "nosuch"},
             {{"--pw-env", "MQTT_PRESENCE_NO_SUCH_VAR"}, "not set"},
             // TLS asked for, but the URI is clear text: refused, never silently off.
             {{"--broker", "tcp://127.0.0.1:1", "--cafile", "/etc/hostname"}, "is not TLS"},
             {{"--broker", "tcp://127.0.0.1:1", "--insecure"}, "is not TLS"},
             {{"--broker", "ssl://127.0.0.1:1", "--cafile", "/nonexistent/ca.crt"}, "/nonexistent/ca.crt"},
             {{"--broker", "ssl://127.0.0.1:1", "--cert", "/nonexistent/c.crt"}, "/nonexistent/c.crt"},
             {{"--meta", R"({"status":2})"}, "status member"},
             {{"--meta", R"({"epoch":1})"}, "status member"},
             {{"--count", "0"}, "--count"},
             {{"--count", "1000000"}, "--count"},
             {{"--name", "tab\there"}, "control character"},
             {{"--name", "esc\x1b[2J"}, "control character"},
             {{"--name", "nonchar\xef\xbf\xbf"}, "non-character"},
             {{"--heartbeat", "604801"}, "longer than a week"},
             {{"--keepalive", "0"}, "keepalive"}}) {
        std::vector<std::string> args{SENSOR_BIN};
        args.insert(args.end(), c.args.begin(), c.args.end());
        child sensor(args);
        EXPECT_EQ(sensor.wait_exit(5s), 2) << c.args[0] << "\n" << sensor.stderr_text();
        EXPECT_NE(sensor.stderr_text().find(c.says), std::string::npos) << sensor.stderr_text();
    }
    child help({SENSOR_BIN, "--help"});
    EXPECT_EQ(help.wait_exit(5s), 0);
    EXPECT_NE(help.stdout_text().find("Examples:"), std::string::npos);
}

}  // namespace
