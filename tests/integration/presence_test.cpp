// The publisher's lifecycle against a real mosquitto, checked with an independent client (mosquitto_sub).
#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/presence_client.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>

#include "paho/clean_stop.hpp"
#include <mqtt_presence/reconnect_driver.hpp>
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
    private_broker broker;
    const int port = broker.port();
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    child sensor(sensor_args(port, name, {"--format", "json"}));
    std::uint64_t first = 0;
    {
        observer obs(port, topic);
        first = epoch_of(obs.expect(topic, contains("\"status\":1"), "connected before the restart"));
    }
    broker.restart();
    observer obs(port, topic);  // the broker has no persistence: only a republished status can appear
    // Paho may first resend a QoS 1 "connected" of the old connection that was in flight when the broker died;
    // the reconnect's own "connected" carries a newer epoch (and self-heal corrects the older one).
    const auto again = obs.expect(
        topic, [&](const std::string& p) { return p.find("\"status\":1") != std::string::npos && epoch_of(p) > first; },
        "connected with a newer epoch after the restart", 30s);
    EXPECT_FALSE(again.empty()) << "sensor log:\n" << sensor.stderr_text();
    sensor.signal(SIGINT);
    EXPECT_EQ(sensor.wait_exit(10s), 0);
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
    EXPECT_EQ(table.stats().stale_deaths_ignored, 1u) << "A's will came after B's \"connected\" and was ignored";
    // Applied in arrival order, A's will came after B's "connected" and was ignored.
    connection_table ordered;
    ordered.apply(name, decode(b_up), false, now);
    ordered.apply(name, decode(will), false, now);
    EXPECT_EQ(ordered.find(name)->status, state::connected);
    EXPECT_EQ(ordered.stats().stale_deaths_ignored, 1u);
}

TEST(presence, two_live_processes_with_one_name_stop_fighting_and_the_survivor_recovers) {
    const int port = broker_port();
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    observer obs(port, topic);
    child a(sensor_args(port, name, {"--format", "json", "--client-id", name + "-A"}));
    const auto a_up = obs.expect(topic, contains("\"status\":1"), "A connected");
    child b(sensor_args(port, name, {"--format", "json", "--client-id", name + "-B", "--heartbeat", "1"}));
    ASSERT_TRUE(a.wait_stderr(contains("name conflict"), 10s)) << "A must report the conflict:\n" << a.stderr_text();
    const auto b_up = obs.expect(topic, [&](const std::string& p) { return epoch_of(p) > epoch_of(a_up); },
                                 "B connected with a newer epoch");
    // No flapping: between B's heartbeats (one a second) nothing but B's own status appears.
    const auto settled = obs.payloads(topic).size();
    for (int beat = 0; beat < 2; ++beat)
        obs.expect(topic, [&](const std::string& p) { return epoch_of(p) == epoch_of(b_up); }, "B's heartbeat");
    const auto during = obs.payloads(topic);
    for (auto i = settled; i < during.size(); ++i)
        EXPECT_EQ(epoch_of(during[i]), epoch_of(b_up)) << "A keeps quiet while B lives: " << during[i];
    EXPECT_EQ(a.wait_exit(0ms), std::nullopt) << "A keeps running";

    // B dies: its will says "disconnected", and A, still alive, says "connected" again with its own epoch.
    b.signal(SIGKILL);
    obs.expect(topic, [&](const std::string& p) { return p.find("\"reason\":\"lost\"") != std::string::npos; },
               "B's will");
    const auto recovered = obs.expect(
        topic, [&](const std::string& p) { return p.find("\"status\":1") != std::string::npos && epoch_of(p) == epoch_of(a_up); },
        "A's \"connected\" again after B died");
    EXPECT_FALSE(recovered.empty()) << a.stderr_text();
}

// Heartbeats keep their interval: each is due one interval after the one before (they were once rounded up to the
// next grid point after "now + interval": a beat every 5 s for --heartbeat 4), and the first comes one to two
// intervals after the connect (on the process's grid; "stale" is three intervals).
TEST(presence, heartbeats_keep_their_interval) {
    const int port = broker_port();
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    observer obs(port, topic);
    child sensor(sensor_args(port, name, {"--format", "json", "--heartbeat", "4"}));
    const auto ms_of = [](const std::string& p) {
        const auto ts = decode(p).timestamp;
        return ts ? std::chrono::duration_cast<std::chrono::milliseconds>(ts->time_since_epoch()).count() : 0LL;
    };
    std::vector<long long> beats{ms_of(obs.expect(topic, contains("\"status\":1"), "connected"))};
    for (int i = 0; i < 3; ++i)
        beats.push_back(ms_of(obs.expect(
            topic, [&](const std::string& p) { return ms_of(p) > beats.back(); }, "heartbeat " + std::to_string(i + 1),
            12s)));
    EXPECT_GE(beats[1] - beats[0], 3800) << "the first beat one interval after the connect at least";
    EXPECT_LE(beats[1] - beats[0], 8200) << "the first beat within two intervals of the connect";
    EXPECT_NEAR(static_cast<double>(beats[3] - beats[1]) / 2.0, 4000.0, 200.0) << "a beat every 4 s";
}

// MQTT 5 too: there the self-heal subscription is no-local (no echo of the client's own heartbeats), and what
// others publish on its topic still reaches it.
TEST(presence, a_forged_epoch_does_not_silence_the_real_client) {
    for (const std::string version : {"4", "5"}) {
        SCOPED_TRACE("MQTT version " + version);
        const int port = broker_port();
        const auto name = unique_prefix();
        const auto topic = "sensors/connected/" + name;
        observer obs(port, topic);
        child sensor(sensor_args(port, name, {"--format", "json", "-V", version}));
        const auto up = obs.expect(topic, contains("\"status\":1"), "connected");
        // Someone forges the largest epoch there is, then a "0".
        for (const char* forged : {R"({"status":1,"epoch":18446744073709551615})", "0"}) {
            child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-r", "-q", "1", "-t", topic,
                       "-m", forged});
            ASSERT_EQ(pub.wait_exit(10s), 0);
            obs.expect(topic, equals(forged), "the forged status");
            obs.expect(topic, [&](const std::string& p) { return p.find("\"status\":1") != std::string::npos &&
                                                                 epoch_of(p) == epoch_of(up); },
                       "the real client healing its status");
        }
        EXPECT_EQ(sensor.stderr_text().find("name conflict"), std::string::npos) << "a forgery is not a conflict";
        child check({SCANNER_BIN, "--broker", broker_uri(port), "--once", "--require", name});
        EXPECT_EQ(check.wait_exit(20s), 0) << check.stderr_text();
    }
}

TEST(presence, a_clean_stop_that_is_not_acknowledged_keeps_the_will) {
    for (const char* version : {"3", "5"}) {
        const int port = broker_port();
        const auto name = unique_prefix() + "-v" + version;
        const auto topic = "sensors/connected/" + name;
        observer obs(port, topic);
        tcp_proxy net(port);  // the sensor's network: it will stop carrying the sensor's packets for a while
        child sensor({SENSOR_BIN, "--broker", broker_uri(net.port()), "--name", name, "--format", "json", "-V",
                      version, "--keepalive", "60"});
        obs.expect(topic, contains("\"status\":1"), "connected");
        net.hold();  // the clean "disconnected" cannot reach the broker: no acknowledgement comes
        const auto stopped = steady::now();
        sensor.signal(SIGTERM);
        const auto code = sensor.wait_exit(15s);
        const auto took = steady::now() - stopped;
        EXPECT_EQ(code, 0) << sensor.stderr_text();
        EXPECT_LT(took, 4s) << "stop() is bounded by stop_timeout (2 s)";
        std::cerr << "MQTT " << version << ": stop without an acknowledgement took "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
        net.release();  // the network comes back and delivers what the sensor sent, in order
        // The clean status arrives late; then the connection ends in a way that keeps the will (3.1.1: no
        // DISCONNECT packet; 5: DISCONNECT with reason 0x04), so the broker publishes it. A clean DISCONNECT
        // would drop the will and leave the late "clean" standing.
        obs.expect(topic, contains("\"reason\":\"clean\""), "the clean status, read late");
        obs.expect(topic, contains("\"reason\":\"lost\""), "the will: the connection ended without dropping it");
    }
}

// The mechanism under a 3.1.1 clean stop that was not acknowledged, held directly: Paho C sends a PUBLISH to a
// wildcard topic (it does not check), and the broker closes the connection on it and publishes the will. Fails if
// either changes.
TEST(presence, a_wildcard_publish_ends_a_311_connection_with_its_will) {
    const int port = broker_port();
    const auto topic = "sensors/connected/" + unique_prefix();
    observer obs(port, topic);
    mqtt::async_client client(broker_uri(port), unique_prefix());
    mqtt::connect_options opts;
    opts.set_mqtt_version(MQTTVERSION_3_1_1);
    opts.set_will(mqtt::will_options(topic, std::string("0"), 1, true));
    client.connect(opts)->wait();
    client.publish(topic, "1", 1, true)->wait();
    obs.expect(topic, equals("1"), "connected");
    ASSERT_TRUE(mqtt_presence::detail::end_keeping_will_311(client, 5s)) << "the broker kept the connection";
    obs.expect(topic, equals("0"), "the will, published by the broker that closed the connection");
}

// The pid a sensor's supervisor logged for worker `index` ("worker 2 (pid 1234)" or "worker 2 restarted (pid 1234)").
pid_t worker_pid(child& sensors, int index, const std::string& how, std::chrono::milliseconds timeout = 15s) {
    const auto line = sensors.wait_stderr(contains("worker " + std::to_string(index) + how + "(pid "), timeout);
    if (!line) return -1;
    return static_cast<pid_t>(std::stol(line->substr(line->find("(pid ") + 5)));
}

TEST(presence, a_dead_worker_is_restarted_and_its_clients_come_back) {
    private_broker broker;
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name + "-000150";  // a client of worker 2
    observer obs(broker.port(), topic);
    child sensors(sensor_args(broker.port(), name, {"--count", "300", "--per-process", "100"}));
    const pid_t second = worker_pid(sensors, 2, " ");
    ASSERT_GT(second, 0) << sensors.stderr_text();
    obs.expect(topic, equals("1"), "worker 2's client connected");
    ASSERT_EQ(kill(second, SIGKILL), 0);
    obs.expect(topic, equals("0"), "its will");
    EXPECT_TRUE(sensors.wait_stderr(contains("restarting it in 1 s"), 5s)) << sensors.stderr_text();
    EXPECT_GT(worker_pid(sensors, 2, " restarted "), 0) << sensors.stderr_text();
    obs.expect(topic, equals("1"), "connected again, from the restarted worker", 20s);
    sensors.signal(SIGTERM);
    EXPECT_EQ(sensors.wait_exit(15s), 1) << "a worker died during the run:\n" << sensors.stderr_text();
}

TEST(presence, a_worker_that_keeps_dying_ends_the_supervisor_at_once) {
    private_broker broker;
    const auto name = unique_prefix();
    child sensors(sensor_args(broker.port(), name, {"--count", "200", "--per-process", "100"}));
    pid_t pid = worker_pid(sensors, 2, " ");
    for (int death = 1; death <= 3; ++death) {
        ASSERT_GT(pid, 0) << "death " << death << ":\n" << sensors.stderr_text();
        ASSERT_EQ(kill(pid, SIGKILL), 0);
        if (death < 3) pid = worker_pid(sensors, 2, " restarted ");
    }
    const auto started = steady::now();
    EXPECT_EQ(sensors.wait_exit(15s), 1) << sensors.stderr_text();
    EXPECT_LT(steady::now() - started, 12s) << "the supervisor ends at once, not at a stop";
    EXPECT_NE(sensors.stderr_text().find("died 3 times in a row"), std::string::npos) << sensors.stderr_text();
}

TEST(presence, stopping_many_clients_is_parallel) {
    private_broker broker;
    const int port = broker.port();
    const auto name = unique_prefix();
    observer obs(port, "sensors/connected/" + name + "-000030");
    child sensors(sensor_args(port, name, {"--count", "30"}));
    obs.expect("sensors/connected/" + name + "-000030", equals("1"), "the 30th sensor connected");
    ASSERT_EQ(kill(broker.pid(), SIGSTOP), 0);
    const auto stopped = steady::now();
    sensors.signal(SIGTERM);
    const auto code = sensors.wait_exit(60s);
    const auto took = steady::now() - stopped;
    kill(broker.pid(), SIGCONT);
    EXPECT_EQ(code, 0) << sensors.stderr_text();
    // One after another this took 30 x 2 s; together it is one stop_timeout.
    EXPECT_LT(took, 10s) << sensors.stderr_text();
    std::cerr << "30 clients stopped against a frozen broker in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
}

TEST(presence, the_apps_subscriptions_survive_a_broker_restart) {
    private_broker broker;
    const int port = broker.port();
    const auto name = unique_prefix();
    std::mutex m;
    std::condition_variable cv;
    int connects = 0;
    std::vector<std::string> received;
    presence_options o;
    o.broker.server_uri = broker_uri(port);
    o.status.name = name;
    o.on_connected = [&] {
        std::lock_guard<std::mutex> lock(m);
        ++connects;
        cv.notify_all();
    };
    o.on_message = [&](mqtt::const_message_ptr msg) {
        std::lock_guard<std::mutex> lock(m);
        received.push_back(msg->get_payload_str());
        cv.notify_all();
    };
    presence_client client(o);
    client.start();
    ASSERT_TRUE(client.wait_connected(10s));
    client.subscribe(name + "/cmd", 1);
    const auto send = [&](const std::string& text) {  // retained: it reaches a subscription made after it
        child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-r", "-q", "1", "-t",
                   name + "/cmd", "-m", text});
        EXPECT_EQ(pub.wait_exit(10s), 0);
    };
    const auto wait_for = [&](const std::function<bool()>& pred, const char* what) {
        std::unique_lock<std::mutex> lock(m);
        EXPECT_TRUE(cv.wait_for(lock, 30s, pred)) << "waited 30 s for " << what;
    };
    send("before");
    wait_for([&] { return !received.empty() && received.back() == "before"; }, "the message before the restart");
    broker.restart();  // no persistence: the broker forgets every subscription
    wait_for([&] { return connects >= 2; }, "the reconnect");
    send("after");
    wait_for([&] { return received.back() == "after"; }, "the message after the restart (subscription restored)");
    client.stop();
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
    o.broker.server_uri = broker_uri(port);
    o.status.name = name;
    o.status.format = payload_format::json;
    o.status.meta = R"({"fw":"2.1"})";
    o.on_connected = [&] { ++connected_calls; };
    std::mutex app_mutex;
    std::condition_variable app_cv;
    o.on_message = [&](mqtt::const_message_ptr m) {
        if (m->get_payload_str() == "ping") {
            std::lock_guard<std::mutex> lock(app_mutex);
            ++app_messages;
            app_cv.notify_all();
        }
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
        {
            std::unique_lock<std::mutex> lock(app_mutex);
            EXPECT_TRUE(app_cv.wait_for(lock, 10s, [&] { return app_messages.load() > 0; }))
                << "the app's own subscription never reached its handler";
        }
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

TEST(presence, an_error_nobody_handles_reaches_stderr_from_the_clients_thread) {
    const int port = broker_port();
    const auto name = unique_prefix();
    // This process's stderr, caught in a pipe for the length of the test.
    int pipe_fds[2];
    ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK), 0);
    fflush(stderr);
    const int saved = dup(2);
    dup2(pipe_fds[1], 2);
    std::string caught;
    {
        presence_options o;
        o.broker.server_uri = broker_uri(port);
        o.status.name = name;
        o.on_message = [](mqtt::const_message_ptr) { throw std::runtime_error("the app's handler failed"); };
        presence_client client(o);  // no on_error
        client.start();
        ASSERT_TRUE(client.wait_connected(10s));
        client.subscribe(name + "/cmd", 1);
        child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-r", "-q", "1", "-t",
                   name + "/cmd", "-m", "go"});
        EXPECT_EQ(pub.wait_exit(10s), 0);
        const auto deadline = steady::now() + 10s;
        while (caught.find("the app's handler failed") == std::string::npos && steady::now() < deadline) {
            pollfd p{pipe_fds[0], POLLIN, 0};
            poll(&p, 1, 100);
            char buf[4096];
            const auto n = read(pipe_fds[0], buf, sizeof buf);
            if (n > 0) caught.append(buf, static_cast<std::size_t>(n));
        }
        client.stop();
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    EXPECT_NE(caught.find("on_message threw: the app's handler failed"), std::string::npos)
        << "stderr said: " << caught;
    EXPECT_NE(caught.find("sensors/connected/" + name), std::string::npos) << "names the client: " << caught;
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

TEST(presence, the_newcomer_of_two_processes_with_one_client_id_stops) {
    for (const char* version : {"3", "5"}) {
        const int port = broker_port();
        const auto name = unique_prefix() + "-v" + version;
        const auto id = name + "-shared";
        const auto topic_a = "sensors/connected/" + name + "-a";
        observer obs(port, topic_a);
        child a(sensor_args(port, name + "-a", {"--client-id", id, "-V", version, "--heartbeat", "1"}));
        // A is the incumbent: up for a while (its fifth "1", four heartbeats later) before B comes.
        for (int beat = 0; beat < 5; ++beat) obs.expect(topic_a, equals("1"), "A's status " + std::to_string(beat));
        child b(sensor_args(port, name + "-b", {"--client-id", id, "-V", version}));
        // The broker drops A when B connects; A reconnects and drops B; B, which never had a long session, stops
        // with a clear error instead of taking turns forever (each turn would fire the other's will).
        const auto started = steady::now();
        EXPECT_EQ(b.wait_exit(30s), 1) << "MQTT " << version << ", B:\n" << b.stderr_text();
        EXPECT_NE(b.stderr_text().find("client id conflict"), std::string::npos) << b.stderr_text();
        std::cerr << "MQTT " << version << ": the newcomer stopped after "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started).count() << " ms\n";
        EXPECT_EQ(a.wait_exit(0ms), std::nullopt) << "A keeps running";
        obs.expect(topic_a, equals("1"), "A connected again after the takeovers");
        a.signal(SIGINT);
        EXPECT_EQ(a.wait_exit(10s), 0) << a.stderr_text();
    }
}

// `sensor -n twin & sleep 1; sensor -n twin &`: the first process's first session is short too (the second ended
// it), so who stops must not depend on who counts two short sessions first but on who started last.
TEST(presence, the_process_started_last_stops_even_when_the_first_had_no_long_session) {
    for (const char* version : {"3", "5"}) {
        const int port = broker_port();
        const auto name = unique_prefix() + "-twin-v" + version;
        const auto topic = "sensors/connected/" + name;
        const auto claim = "mqtt-presence/claim/" + name;
        observer obs(port, topic);
        observer claims(port, claim);
        child first(sensor_args(port, name, {"-V", version}));
        obs.expect(topic, equals("1"), "the first process connected");
        child second(sensor_args(port, name, {"-V", version}));  // within a second: the first's session is short
        const auto started = steady::now();
        EXPECT_EQ(second.wait_exit(30s), 1) << "MQTT " << version << ", the second:\n" << second.stderr_text()
                                             << "\nthe first:\n" << first.stderr_text();
        EXPECT_NE(second.stderr_text().find("the newcomer, stops"), std::string::npos) << second.stderr_text();
        EXPECT_NE(second.stderr_text().find("by its claim on " + claim), std::string::npos) << second.stderr_text();
        std::cerr << "MQTT " << version << ": the process started last stopped after "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started).count() << " ms\n";
        EXPECT_EQ(first.wait_exit(0ms), std::nullopt) << "the first keeps running:\n" << first.stderr_text();
        EXPECT_EQ(first.stderr_text().find("newcomer"), std::string::npos) << first.stderr_text();
        claims.expect(claim, contains("\"started\""), "the claims of the takeover");
        first.signal(SIGINT);
        EXPECT_EQ(first.wait_exit(10s), 0) << first.stderr_text();
        claims.expect(claim, equals("(null)"), "the claim cleared by the clean stop (mosquitto_sub prints an empty payload so)");
        obs.expect(topic, equals("0"), "the first's clean stop");
    }
}

// A fleet's statuses as an independent subscriber sees them: the last payload of every topic under a prefix.
class fleet_view {
public:
    fleet_view(int port, const std::string& prefix)
        : sub_({"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(port), "-t", prefix + "/+", "-v", "-q",
                "1"}) {}
    /// Waits until `n` topics say `payload` (and, with `exactly`, no other topic does); fails the test on timeout.
    bool wait(std::size_t n, const std::string& payload, std::chrono::seconds timeout, const std::string& what) {
        const auto says = [&] {
            std::size_t count = 0;
            for (const auto& [topic, p] : last_) count += p == payload ? 1 : 0;
            return count;
        };
        const bool ok = sub_.wait_stdout(
                            [&](const std::string& line) {
                                const auto space = line.find(' ');
                                if (space != std::string::npos) last_[line.substr(0, space)] = line.substr(space + 1);
                                return says() >= n;
                            },
                            timeout)
                            .has_value();
        if (!ok) ADD_FAILURE() << "waited " << timeout.count() << " s for " << what << ": " << says() << " of " << n;
        return ok;
    }
    /// The topics whose last payload is `payload`.
    std::vector<std::string> saying(const std::string& payload) {
        sub_.wait_stdout([&](const std::string& line) {
            const auto space = line.find(' ');
            if (space != std::string::npos) last_[line.substr(0, space)] = line.substr(space + 1);
            return false;
        }, 300ms);  // what has arrived by now
        std::vector<std::string> out;
        for (const auto& [topic, p] : last_)
            if (p == payload) out.push_back(topic);
        return out;
    }

private:
    child sub_;
    std::map<std::string, std::string> last_;
};

std::size_t threads_of(pid_t pid) {
    std::size_t n = 0;
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("Threads:", 0) == 0) n = std::stoul(line.substr(8));
    return n;
}

// A connect in flight wakes Paho's poll with a connected client's UNSUBSCRIBE of a filter nobody uses
// (src/paho/paho_wake.hpp). A fleet of MQTT 5 clients in one process connects, and the round trips change
// nothing anybody sees: no message but the statuses and the app's, every client keeps its own subscription, and
// self-heal still answers a forged "0".
TEST(presence, a_fleet_in_one_process_connects_and_waking_paho_changes_nothing_visible) {
    private_broker broker;
    const int port = broker.port();
    const auto name = unique_prefix();
    observer all(port, "#");
    constexpr int n = 100;
    std::mutex m;
    std::condition_variable cv;
    int received = 0;
    std::vector<std::unique_ptr<presence_client>> clients;
    for (int i = 0; i < n; ++i) {
        presence_options o;
        o.broker.server_uri = broker_uri(port);
        o.broker.mqtt_version = 5;
        o.status.name = name + "-" + std::to_string(i);
        o.subscriptions = {{name + "/cmd", 1}};
        o.on_message = [&](mqtt::const_message_ptr) {
            std::lock_guard<std::mutex> lock(m);
            ++received;
            cv.notify_all();
        };
        clients.push_back(std::make_unique<presence_client>(std::move(o)));
    }
    // Paced: each connect begins while Paho polls the quiet sockets of those before it (the stall the wake ends).
    presence_client::set_connect_rate(50);
    for (auto& c : clients) c->start();
    for (int i = 0; i < n; ++i) ASSERT_TRUE(clients[i]->wait_connected(60s)) << "client " << i << " never connected";
    presence_client::set_connect_rate(0);

    child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-r", "-q", "1", "-t",
               name + "/cmd", "-m", "go"});
    ASSERT_EQ(pub.wait_exit(10s), 0);
    {
        std::unique_lock<std::mutex> lock(m);
        EXPECT_TRUE(cv.wait_for(lock, 30s, [&] { return received == n; }))
            << received << " of " << n << " clients got the message on their own subscription";
    }
    const auto topic = "sensors/connected/" + name + "-0";
    child forge({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-r", "-q", "1", "-t", topic,
                 "-m", "0"});
    ASSERT_EQ(forge.wait_exit(10s), 0);
    all.expect(topic, equals("0"), "the forged \"0\"");
    all.expect(topic, equals("1"), "self-heal answering it");

    const auto status_prefix = "sensors/connected/" + name + "-";
    for (const auto& line : all.lines()) {
        const auto topic_of_line = line.substr(0, line.find(' '));
        EXPECT_TRUE(topic_of_line.rfind(status_prefix, 0) == 0 || topic_of_line == name + "/cmd")
            << "a message nobody published: " << line;
    }
    std::vector<presence_client*> all_clients;
    for (auto& c : clients) all_clients.push_back(c.get());
    EXPECT_EQ(stop_all(all_clients), static_cast<std::size_t>(n));
}

// 2,000 sensors in one command (four worker processes of the default 500, connecting in turn): every birth, every
// will when the process is SIGKILLed (its workers die with it), every clean stop on SIGINT; a handful of threads per
// process.
TEST(presence, a_fleet_of_2000_is_born_dies_by_its_wills_and_stops_cleanly) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    {
        fleet_view view(port, prefix);
        child fleet(sensor_args(port, "k", {"--topic", prefix + "/{client}", "--count", "2000"}));
        ASSERT_TRUE(view.wait(2000, "1", 60s, "all 2,000 births")) << fleet.stderr_text();
        EXPECT_LE(threads_of(fleet.pid()), 4u) << "the supervisor";
        std::size_t workers = 0;
        for (const auto& line : fleet.stderr_lines()) {
            const auto at = line.find("(pid ");
            if (at == std::string::npos || line.find("worker") == std::string::npos) continue;
            ++workers;
            const pid_t pid = std::stoi(line.substr(at + 5));
            EXPECT_LE(threads_of(pid), 8u) << "a worker of 500 clients: Paho's threads and one scheduler";
        }
        EXPECT_EQ(workers, 4u) << fleet.stderr_text();
        // The workers connect in turn: each starts its clients after the one before it has started.
        std::vector<int> started;
        for (const auto& line : fleet.stderr_lines()) {
            const auto at = line.find(": started ");
            const auto worker = line.find("worker ");
            if (at != std::string::npos && worker != std::string::npos && worker < at)
                started.push_back(std::stoi(line.substr(worker + 7)));
        }
        EXPECT_EQ(started, (std::vector<int>{1, 2, 3, 4})) << fleet.stderr_text();
        fleet.signal(SIGKILL);
        EXPECT_TRUE(view.wait(2000, "0", 30s, "all 2,000 wills after SIGKILL")) << fleet.stderr_text();
    }
    fleet_view view(port, prefix);
    child fleet(sensor_args(port, "k", {"--topic", prefix + "/{client}", "--count", "2000"}));
    ASSERT_TRUE(view.wait(2000, "1", 60s, "all 2,000 births again"));
    fleet.signal(SIGINT);
    EXPECT_EQ(fleet.wait_exit(30s), 0) << fleet.stderr_text();
    EXPECT_TRUE(view.wait(2000, "0", 10s, "all 2,000 clean stops"));
}

// Workers connect in turn: the next one starts when the one before has half of its clients up, or after 2 s when it
// cannot (here nothing listens on the port), so a worker that cannot connect does not hold up the rest for good.
TEST(presence, workers_connect_in_turn_and_one_that_cannot_connect_holds_up_the_next_for_2_s) {
    child fleet(sensor_args(free_port(), "t", {"--count", "2", "--per-process", "1"}));
    const auto first = fleet.wait_stderr(contains("worker 1: started "), 10s);
    ASSERT_TRUE(first) << fleet.stderr_text();
    EXPECT_FALSE(fleet.wait_stderr(contains("worker 2: started "), 1500ms))
        << "worker 2 waits for its turn while worker 1 is down: " << fleet.stderr_text();
    EXPECT_TRUE(fleet.wait_stderr(contains("worker 2: started "), 5s)) << fleet.stderr_text();
    fleet.signal(SIGINT);
    EXPECT_EQ(fleet.wait_exit(20s), 0) << fleet.stderr_text();
}

// A worker killed alone takes exactly its own clients down (the broker sends their wills); the supervisor says so
// and the others keep running until SIGINT.
TEST(presence, a_killed_worker_fires_exactly_its_clients_wills_and_is_reported) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    fleet_view view(port, prefix);
    child fleet(sensor_args(port, "w", {"--topic", prefix + "/{client}", "--count", "300", "--per-process", "100"}));
    ASSERT_TRUE(view.wait(300, "1", 30s, "all 300 births")) << fleet.stderr_text();
    const auto line = fleet.wait_stderr(contains("worker 2 (pid "), 5s);
    ASSERT_TRUE(line) << fleet.stderr_text();
    const pid_t second = std::stoi(line->substr(line->find("(pid ") + 5));
    ASSERT_EQ(kill(second, SIGKILL), 0);
    ASSERT_TRUE(view.wait(100, "0", 15s, "worker 2's 100 wills"));
    EXPECT_TRUE(fleet.wait_stderr(contains("worker 2 (pid " + std::to_string(second) + ") was killed by signal 9: "
                                           "the broker sends the wills of its 100 clients, w-000101 ... w-000200"),
                                  10s))
        << fleet.stderr_text();
    auto dead = view.saying("0");
    ASSERT_EQ(dead.size(), 100u);
    EXPECT_EQ(dead.front(), prefix + "/w-000101");
    EXPECT_EQ(dead.back(), prefix + "/w-000200");
    EXPECT_EQ(view.saying("1").size(), 200u) << "workers 1 and 3 keep running";
    fleet.signal(SIGINT);
    EXPECT_EQ(fleet.wait_exit(20s), 1) << "a worker was lost: " << fleet.stderr_text();
    EXPECT_TRUE(view.wait(300, "0", 10s, "the other 200 stopped cleanly"));
}

TEST(presence, bad_options_exit_2_with_a_clear_error) {
    struct bad { std::vector<std::string> args; std::string says; };
    for (const auto& c : std::vector<bad>{
             {{"--format", "xml"}, "unknown payload format"},
             {{"--broker", "localhost"}, "has no scheme"},
             {{"--broker", "tcp://host:99999"}, "outside 1-65535"},
             {{"--broker", "tcp://127.0.0.1:1", "--broker", "localhost"}, "has no scheme"},  // a cluster's next node
             {{"--broker", "ssl://127.0.0.1:1", "--broker", "tcp://127.0.0.1:2", "--insecure"}, "is not TLS"},
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
             {{"--per-process", "0"}, "--per-process"},
             {{"--connect-rate", "-1"}, "--connect-rate"},
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
    for (const auto& line : help.stdout_lines())  // not a terminal: 100 columns, descriptions wrapped at words
        EXPECT_LE(line.size(), 100u) << line;
}

}  // namespace

// The reconnect driver behind the scanner and the notary: after a loss, a try at once, then 50-250 ms apart (never a
// storm of CONNECTs at a dead broker), and none once the connection is back.
TEST(reconnect_driver, tries_at_once_then_spaced_and_none_once_connected) {
    private_broker broker;
    mqtt::async_client client(broker_uri(broker.port()), unique_prefix());
    mqtt::connect_options opts;
    opts.set_clean_session(true);
    opts.set_connect_timeout(2);
    mqtt_presence::reconnect_driver driver(client, opts);
    std::atomic<bool> lost{false};
    client.set_connection_lost_handler([&](const std::string&) {
        driver.lost();
        lost = true;
    });
    client.set_connected_handler([&](const std::string&) { driver.connected(); });
    client.connect(opts)->wait_for(5s);
    ASSERT_TRUE(client.is_connected());
    EXPECT_EQ(driver.tick(100ms), 100ms) << "connected: nothing due";
    broker.crash();
    const auto lost_until = steady::now() + 5s;
    while (!lost && steady::now() < lost_until) std::this_thread::sleep_for(10ms);  // Paho's callback, awaited
    ASSERT_TRUE(lost) << "Paho did not report the lost connection";
    // The owner's loop, for 3 s of a dead broker: the tries it makes.
    const auto until = steady::now() + 3s;
    while (steady::now() < until) std::this_thread::sleep_for(driver.tick(100ms));
    const auto tries = driver.tries();
    EXPECT_GE(tries, 4u) << "first at once, then at most 250 ms apart: about 15 in 3 s";
    EXPECT_LE(tries, 31u) << "at least 50 ms apart and one at a time";
    broker.restart();
    const auto back_until = steady::now() + 5s;
    while (!client.is_connected() && steady::now() < back_until) std::this_thread::sleep_for(driver.tick(100ms));
    ASSERT_TRUE(client.is_connected()) << "no try reached the broker's return";
    const auto at_return = driver.tries();
    for (int i = 0; i < 5; ++i) std::this_thread::sleep_for(driver.tick(100ms));
    EXPECT_EQ(driver.tries(), at_return) << "tries after the connection came back";
    client.disconnect()->wait_for(2s);
}

// Two processes under one name with a plain payload ("1"/"0", no epoch): the status this client did not send is
// reported (MQTT 3.1.1, which echoes our own, and MQTT 5); alone, its own beats never are.
TEST(presence, a_plain_payload_name_conflict_is_reported_and_a_lone_client_never_is) {
    const int port = broker_port();
    for (const char* version : {"4", "5"}) {
        SCOPED_TRACE(std::string("MQTT version ") + version);
        const auto name = unique_prefix() + "-twin" + version;
        observer watch(port, "sensors/connected/" + name);
        child first(sensor_args(port, name, {"-V", version, "--heartbeat", "1", "--client-id", name + "-a"}));
        watch.expect("sensors/connected/" + name, equals("1"), "the first one's status");
        for (int beat = 0; beat < 3; ++beat)  // its own beats, echoed (3.1.1) or not (5)
            watch.expect("sensors/connected/" + name, equals("1"), "a beat");
        EXPECT_EQ(first.stderr_text().find("another client publishes"), std::string::npos) << first.stderr_text();
        child second(sensor_args(port, name, {"-V", version, "--client-id", name + "-b"}));
        const auto line = first.wait_stderr(contains("another client publishes \"connected\""), 10s);
        EXPECT_TRUE(line) << "no word of the other publisher:\n" << first.stderr_text();
        second.signal(SIGINT);
        second.wait_exit(10s);
        first.signal(SIGINT);
        first.wait_exit(10s);
    }
}
