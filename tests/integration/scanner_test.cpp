// The scanner tool and class against a real mosquitto, with statuses written by our sensor, by clients that are
// not ours (python paho, mosquitto_pub), and by hand (malformed ones).
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/scanner.hpp>

#include <atomic>
#include <fstream>
#include <map>

#include <poll.h>
#include <pty.h>
#include <sys/wait.h>

#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include "harness.hpp"

using namespace harness;
using json = nlohmann::json;

namespace {

struct scan_output {
    int code = -1;
    std::string out, err;
};

scan_output run_scanner(int port, std::vector<std::string> args) {
    std::vector<std::string> argv{SCANNER_BIN, "--broker", broker_uri(port)};
    argv.insert(argv.end(), args.begin(), args.end());
    child c(argv);
    scan_output o;
    o.code = c.wait_exit(60s).value_or(-1);
    o.out = c.stdout_text();
    o.err = c.stderr_text();
    return o;
}

// A tool on a terminal of its own (forkpty): what it writes, read as it comes.
struct on_terminal {
    on_terminal(const std::vector<std::string>& argv, unsigned short rows, unsigned short cols) {
        winsize size{};
        size.ws_row = rows;
        size.ws_col = cols;
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        pid = forkpty(&fd, nullptr, nullptr, &size);
        if (pid < 0) throw std::runtime_error("forkpty failed");
        if (pid == 0) {
            execv(args[0], args.data());
            _exit(127);
        }
    }
    ~on_terminal() {
        if (pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
        if (fd >= 0) close(fd);
    }
    on_terminal(const on_terminal&) = delete;
    on_terminal& operator=(const on_terminal&) = delete;

    /// Reads until `done` or the timeout; stops early when the tool has closed its terminal (EIO).
    void read_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
        const auto deadline = steady::now() + timeout;
        while (!done() && steady::now() < deadline) {
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0) continue;
            char buf[65536];
            const auto n = read(fd, buf, sizeof buf);
            if (n <= 0) return;
            out.append(buf, static_cast<std::size_t>(n));
        }
    }
    /// Reads to the end of its output and reaps it: its exit code, or -1 (killed after `timeout`).
    int finish(std::chrono::milliseconds timeout) {
        read_until([] { return false; }, timeout);
        int status = 0;
        const auto exit_deadline = steady::now() + 5s;  // its terminal closes a moment before it can be reaped
        while (waitpid(pid, &status, WNOHANG) != pid) {
            if (steady::now() > exit_deadline) {
                ADD_FAILURE() << "the tool did not exit:\n" << out;
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                pid = -1;
                return -1;
            }
            std::this_thread::sleep_for(10ms);  // polling a child's exit, as harness::child::wait_exit does
        }
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

    std::string out;
    pid_t pid = -1;
    int fd = -1;
};

json once_json(int port, std::vector<std::string> args) {
    args.insert(args.end(), {"--once", "--format", "json"});
    const auto o = run_scanner(port, args);
    EXPECT_EQ(o.code, 0) << o.err;
    auto j = json::parse(o.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << o.out.substr(0, 300);
    return j;
}

json client_of(const json& snapshot, const std::string& name) {
    for (const auto& c : snapshot["clients"])
        if (c["client"] == name) return c;
    return json();
}

TEST(scanner, ten_thousand_retained_statuses_are_all_in_the_first_snapshot) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    // Paho buffers 100 unsent messages by default; let it hold the whole seed and wait once.
    mqtt::async_client seeder(broker_uri(port), prefix + "-seeder", mqtt::create_options(MQTTVERSION_3_1_1, 20000));
    seeder.connect()->wait();
    mqtt::delivery_token_ptr last;
    for (int i = 0; i < 10000; ++i) last = seeder.publish(prefix + "/c" + std::to_string(i), i % 2 ? "1" : "0", 1, true);
    ASSERT_TRUE(last->wait_for(30s));
    seeder.disconnect()->wait();

    const auto started = steady::now();
    const auto j = once_json(port, {"--topic", prefix + "/{client}"});
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started);
    ASSERT_EQ(j["clients"].size(), 10000u);
    EXPECT_EQ(j["counts"]["connected"], 5000);
    EXPECT_EQ(j["counts"]["disconnected"], 5000);
    EXPECT_EQ(j["stats"]["messages"], 10000);
    EXPECT_EQ(j["clients"][0]["client"], "c0") << "sorted by name";
    EXPECT_EQ(j["clients"][0]["retained"], true);
    EXPECT_TRUE(j["clients"][0]["since"].is_null()) << "a retained \"0\" has no known time";
    std::cerr << "10,000 retained clients: --once took " << took.count() << " ms (whole process)\n";
}

TEST(scanner, live_transitions_appear_as_events_with_since) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    child events({SCANNER_BIN, "--broker", broker_uri(port), "--topic", templ, "--events"});
    ASSERT_TRUE(events.wait_stderr(contains("connected to"), 10s)) << events.stderr_text();
    child sensor({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "s1", "--format", "json",
                  "--keepalive", "2"});
    auto added = events.wait_stdout(contains("\"event\":\"added\""), 10s);
    ASSERT_TRUE(added) << events.stdout_text();
    auto a = json::parse(*added);
    EXPECT_EQ(a["client"]["state"], "connected");
    EXPECT_FALSE(a["client"]["since"].is_null());
    EXPECT_EQ(a["client"]["retained"], false);

    sensor.signal(SIGKILL);
    auto died = events.wait_stdout(contains("\"previous\":\"connected\""), 10s);
    ASSERT_TRUE(died) << events.stdout_text();
    auto d = json::parse(*died);
    EXPECT_EQ(d["event"], "changed");
    EXPECT_EQ(d["client"]["state"], "disconnected");
    EXPECT_EQ(d["client"]["detail"], "lost");
    EXPECT_NE(d["client"]["since"], a["client"]["since"]) << "since is the receive time of the death";

    child clean({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "s1", "--format", "json"});
    ASSERT_TRUE(events.wait_stdout(contains("\"previous\":\"disconnected\""), 10s));
    clean.signal(SIGTERM);
    auto stopped = events.wait_stdout(contains("\"detail\":\"clean\""), 10s);
    ASSERT_TRUE(stopped) << events.stdout_text();
    EXPECT_EQ(clean.wait_exit(10s), 0);
}

TEST(scanner, reads_clients_that_are_not_ours_and_every_convention) {
    const int port = broker_port();
    const auto p = unique_prefix();
    // Debian's python3-paho-mqtt, the classic pattern.
    child py({"/usr/bin/python3", std::string(TEST_SOURCE_DIR) + "/tests/integration/classic_client.py",
              std::to_string(port), "sensors/connected/" + p + "-py"});
    ASSERT_TRUE(py.wait_stdout(equals("up"), 10s)) << py.stderr_text();
    publish_retained(port, "homie/" + p + "-homie/$state", "ready");
    publish_retained(port, "homie/" + p + "-sleepy/$state", "sleeping");
    publish_retained(port, "tele/" + p + "-tasmota/LWT", "Online");
    publish_retained(port, p + "-esp/status", "offline");
    publish_retained(port, p + "-z2m/bridge/state", R"({"state":"online"})");
    publish_retained(port, "spBv1.0/STATE/" + p + "-scada", R"({"online":true,"timestamp":1700000000000})");
    publish_retained(port, p + "-smarthome/connected", "2");
    publish_retained(port, "homie/" + p + "-twin/$state", "ready");  // one name, two conventions: two devices
    publish_retained(port, "tele/" + p + "-twin/LWT", "Offline");

    const auto j = once_json(port, {"--convention", "sensors", "--convention", "homie", "--convention", "tasmota",
                                    "--convention", "esphome", "--convention", "zigbee2mqtt", "--convention",
                                    "sparkplug", "--convention", "smarthome"});
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"-py", "connected"},      {"-homie", "connected"}, {"-sleepy", "disconnected"},
        {"-tasmota", "connected"}, {"-esp", "disconnected"}, {"-z2m", "connected"},
        {"-scada", "connected"},   {"-smarthome", "connected"}};
    for (const auto& [suffix, st] : expected) {
        const auto c = client_of(j, p + suffix);
        ASSERT_FALSE(c.is_null()) << p + suffix << " missing";
        EXPECT_EQ(c["state"], st) << p + suffix;
    }
    EXPECT_EQ(client_of(j, p + "-sleepy")["detail"], "sleeping");
    EXPECT_EQ(client_of(j, p + "-smarthome")["detail"], "device-ok");
    EXPECT_EQ(client_of(j, p + "-scada")["since"], "2023-11-14T22:13:20.000Z");
    std::map<std::string, std::string> twins;  // topic -> state
    for (const auto& c : j["clients"])
        if (c["client"] == p + "-twin") twins[c["topic"].get<std::string>()] = c["state"].get<std::string>();
    EXPECT_EQ(twins, (std::map<std::string, std::string>{{"homie/" + p + "-twin/$state", "connected"},
                                                         {"tele/" + p + "-twin/LWT", "disconnected"}}));

    // The python client stops cleanly: its own "0".
    py.signal(SIGTERM);
    EXPECT_EQ(py.wait_exit(10s), 0) << py.stderr_text();
    EXPECT_EQ(client_of(once_json(port, {}), p + "-py")["state"], "disconnected");
    publish_retained(port, "homie/" + p + "-homie/$state", "");
    const auto after = once_json(port, {"--convention", "homie"});
    EXPECT_TRUE(client_of(after, p + "-homie").is_null()) << "an empty retained payload removes the client";
}

// The newer presets through a real broker, in one scanner (--convention all): each project's own topic and payload.
TEST(scanner, convention_all_reads_every_preset_and_multi_level_names) {
    const int port = broker_port();
    const auto p = unique_prefix();
    publish_retained(port, "zigbee2mqtt/" + p + "/living room/lamp/availability", R"({"state":"online"})");
    publish_retained(port, "homie/5/" + p + "-h5/$state", "ready");
    publish_retained(port, "valetudo/" + p + "-robot/$state", "lost");
    publish_retained(port, "shellies/" + p + "-plug/online", "true");
    publish_retained(port, p + "-plus1/online", "false");
    publish_retained(port, p + "-frigate/available", "online");
    publish_retained(port, "home/" + p + "-omg/LWT", "online");
    publish_retained(port, "zwave/_CLIENTS/ZWAVE_GATEWAY-" + p + "/status", R"({"value":true,"time":1548683523859})");
    const auto j = once_json(port, {"--convention", "all"});
    const std::vector<std::pair<std::string, std::string>> expected = {
        {p + "/living room/lamp", "connected"}, {p + "-h5", "connected"},     {p + "-robot", "disconnected"},
        {p + "-plug", "connected"},             {p + "-plus1", "disconnected"}, {p + "-frigate", "connected"},
        {p + "-omg", "connected"},              {"ZWAVE_GATEWAY-" + p, "connected"}};
    for (const auto& [name, st] : expected) {
        const auto c = client_of(j, name);
        ASSERT_FALSE(c.is_null()) << name << " missing";
        EXPECT_EQ(c["state"], st) << name;
    }
    EXPECT_EQ(client_of(j, "ZWAVE_GATEWAY-" + p)["since"], "2019-01-28T13:52:03.859Z") << "zwave-js-ui's time";
    EXPECT_EQ(client_of(j, p + "/living room/lamp")["topic"],
              "zigbee2mqtt/" + p + "/living room/lamp/availability");
}

// A topic under a status filter that fits no template is counted and shown, never dropped without a word; the
// broker's own count of its clients stands beside the table.
TEST(scanner, unmatched_topics_are_counted_with_examples_and_the_brokers_count_is_shown) {
    const int port = broker_port();
    const auto p = unique_prefix();
    const auto templ = p + "/z2m/{client+}/availability";
    publish_retained(port, p + "/z2m//availability", "online");       // an empty level: under the filter, no name
    publish_retained(port, p + "/z2m/a//b/availability", "offline");  // the same two levels down
    // A sensor whose name spans two levels, connected for the whole test (the broker's count includes it).
    observer birth(port, p + "/z2m/kitchen/lamp/availability");
    child sensor({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "kitchen/lamp"});
    birth.expect(p + "/z2m/kitchen/lamp/availability", equals("1"), "the sensor's birth");
    const auto j = once_json(port, {"--topic", templ});
    EXPECT_EQ(j["clients"].size(), 1u) << j.dump();
    EXPECT_EQ(client_of(j, "kitchen/lamp")["state"], "connected");
    EXPECT_EQ(j["stats"]["unmatched"], 2) << j.dump();
    EXPECT_EQ(j["scanner"]["unmatched_examples"],
              json::array({p + "/z2m//availability", p + "/z2m/a//b/availability"}))
        << j.dump();
    ASSERT_TRUE(j["scanner"]["broker_clients"].is_number()) << "mosquitto's $SYS count: " << j.dump();

    // mosquitto renews its $SYS every sys_interval (10 s): the retained count a snapshot reads was sampled before
    // the scanner connected, and is said to be.
    EXPECT_EQ(j["scanner"]["broker_clients_live"], false) << j.dump();
    const auto t = run_scanner(port, {"--topic", templ, "--once"});
    ASSERT_EQ(t.code, 0) << t.err;
    EXPECT_NE(t.out.find("2 unmatched topics (e.g. "), std::string::npos) << t.out;
    EXPECT_NE(t.out.find(" clients before this scanner connected ($SYS's last sample; a new one comes every "
                         "sys_interval); 1 announce a status"),
              std::string::npos)
        << t.out;
}

// Sparkplug B edge nodes through mosquitto: NBIRTH makes one row per node; an NDEATH of another session (bdSeq)
// is ignored; the node's real will, an NDEATH with its NBIRTH's bdSeq, ends it. Payloads: Sparkplug B protobuf,
// the bdSeq metric alone (name 1, datatype 4 = Int64, long_value 11), as the specification's NDEATH example.
TEST(scanner, sparkplug_nodes_are_one_row_and_a_death_must_match_its_birth) {
    const int port = broker_port();
    const auto group = unique_prefix();
    const auto bd_seq = [](char n) { return std::string("\x12\x0b\x0a\x05" "bdSeq" "\x20\x04\x58", 12) + n; };
    child events({SCANNER_BIN, "events", "--broker", broker_uri(port), "--convention", "sparkplug-nodes"});
    ASSERT_TRUE(events.wait_stdout(contains("\"event\":\"scanner\""), 15s)) << events.stderr_text();
    // The edge node's session: a connection whose will is its NDEATH (bdSeq 5).
    // It prints the retained "ping" once it is connected and subscribed, so its will is registered.
    publish_retained(port, group + "/NCMD", "ping");
    child node({"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(port), "-t", group + "/NCMD",
                "--will-topic", "spBv1.0/" + group + "/NDEATH/press", "--will-payload", bd_seq('\x05'),
                "--will-qos", "1"});
    ASSERT_TRUE(node.wait_stdout(equals("ping"), 10s)) << node.stderr_text();
    const auto publish = [&](const std::string& topic, const std::string& payload) {
        child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-q", "1", "-t", topic, "-m",
                   payload});
        ASSERT_EQ(pub.wait_exit(10s), 0) << pub.stderr_text();
    };
    publish("spBv1.0/" + group + "/NBIRTH/press", bd_seq('\x05'));
    const auto row = group + "/press";
    ASSERT_TRUE(events.wait_stdout(
        [&](const std::string& l) {
            return l.find("\"client\":\"" + row + "\"") != std::string::npos &&
                   l.find("\"state\":\"connected\"") != std::string::npos &&
                   l.find("\"detail\":\"bdSeq 5\"") != std::string::npos;
        },
        10s))
        << events.stdout_text() << events.stderr_text();
    publish("spBv1.0/" + group + "/NDEATH/press", bd_seq('\x04'));  // another session's death: ignored
    publish("spBv1.0/" + group + "/NBIRTH/other", bd_seq('\x01'));  // after it, in order
    ASSERT_TRUE(events.wait_stdout(contains("\"client\":\"" + group + "/other\""), 10s)) << events.stdout_text();
    EXPECT_EQ(events.stdout_text().find("\"disconnected\""), std::string::npos)
        << "the mismatched NDEATH was applied: " << events.stdout_text();
    node.signal(SIGKILL);
    EXPECT_TRUE(events.wait_stdout(
        [&](const std::string& l) {
            return l.find("\"client\":\"" + row + "\"") != std::string::npos &&
                   l.find("\"state\":\"disconnected\"") != std::string::npos;
        },
        10s))
        << "the node's will, with its birth's bdSeq: " << events.stdout_text();
}

TEST(scanner, malformed_payloads_are_unknown_counted_and_never_crash) {
    const int port = broker_port();
    const auto p = unique_prefix();
    publish_retained(port, p + "/garbage", "garbage");
    publish_retained(port, p + "/badjson", R"({"status":"1")");
    publish_retained(port, p + "/wrongtype", R"({"status":"1"})");
    publish_retained(port, p + "/utf8", "on\xff\xfeline");
    publish_retained(port, p + "/huge", std::string(100000, 'x'));
    publish_retained(port, p + "/good", "1");
    const auto j = once_json(port, {"--topic", p + "/{client}"});
    ASSERT_EQ(j["clients"].size(), 6u) << j.dump();
    EXPECT_EQ(j["counts"]["unknown"], 5);
    EXPECT_EQ(j["stats"]["malformed"], 5);
    EXPECT_EQ(client_of(j, "good")["state"], "connected");
    EXPECT_NE(client_of(j, "wrongtype")["detail"].get<std::string>().find("without quotes"), std::string::npos);
    EXPECT_NE(client_of(j, "utf8")["detail"].get<std::string>().find("\\xff"), std::string::npos);
    EXPECT_NE(client_of(j, "huge")["detail"].get<std::string>().find("too large"), std::string::npos);
    // Every output format copes with them.
    for (const char* f : {"table", "csv", "ndjson", "prometheus"}) {
        const auto o = run_scanner(port, {"--topic", p + "/{client}", "--once", "--format", f});
        EXPECT_EQ(o.code, 0) << f << ": " << o.err;
        EXPECT_NE(o.out.find("garbage"), std::string::npos) << f;
    }
}

TEST(scanner, require_exit_codes) {
    const int port = broker_port();
    const auto p = unique_prefix();
    publish_retained(port, p + "/up1", "1");
    publish_retained(port, p + "/up2", "online");
    publish_retained(port, p + "/down", "0");
    const std::vector<std::string> base{"--topic", p + "/{client}", "--once"};
    auto with = [&](std::vector<std::string> extra) {
        auto a = base;
        a.insert(a.end(), extra.begin(), extra.end());
        return run_scanner(port, a);
    };
    EXPECT_EQ(with({"--require", "up1,up2"}).code, 0);
    const auto down = with({"--require", "up1,down"});
    EXPECT_EQ(down.code, 3);
    EXPECT_NE(down.err.find("required client down is disconnected"), std::string::npos) << down.err;
    EXPECT_EQ(with({"--require", "nobody"}).code, 3);
    EXPECT_EQ(run_scanner(port, {"--require", "x"}).code, 2) << "--require needs --once";
}

TEST(scanner, purge_clears_old_disconnected_statuses_with_dry_run_first) {
    const int port = broker_port();
    const auto p = unique_prefix();
    const auto old_ms = std::to_string(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count() - 10LL * 24 * 3600 * 1000);
    publish_retained(port, p + "/old-clean", R"({"status":0,"reason":"clean","ts":)" + old_ms + "}");
    publish_retained(port, p + "/recent-clean", R"({"status":0,"reason":"clean","ts":)" +
                                                    std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                        std::chrono::system_clock::now().time_since_epoch()).count()) + "}");
    publish_retained(port, p + "/up", R"({"status":1,"ts":)" + old_ms + "}");
    publish_retained(port, p + "/plain-down", "0");
    // A will's ts is when its connection began, not when it died: its age is unknown, as for a plain 0.
    publish_retained(port, p + "/old-will", R"({"status":0,"reason":"lost","ts":)" + old_ms + "}");
    const std::vector<std::string> topic{"--topic", p + "/{client}"};

    auto dry = run_scanner(port, {"--topic", p + "/{client}", "--purge-older-than", "7d", "--dry-run"});
    EXPECT_EQ(dry.code, 0) << dry.err;
    EXPECT_NE(dry.out.find("would clear " + p + "/old-clean"), std::string::npos) << dry.out;
    EXPECT_EQ(dry.out.find("recent-clean"), std::string::npos) << "younger than 7d";
    EXPECT_EQ(dry.out.find("/up"), std::string::npos) << "connected is never purged";
    EXPECT_EQ(dry.out.find("plain-down"), std::string::npos) << "a plain 0 has no age";
    EXPECT_EQ(dry.out.find("old-will"), std::string::npos) << "a will does not say when the client died";
    EXPECT_EQ(once_json(port, topic)["clients"].size(), 5u) << "a dry run clears nothing";

    auto real = run_scanner(port, {"--topic", p + "/{client}", "--purge-older-than", "7d"});
    EXPECT_EQ(real.code, 0) << real.err;
    auto after = once_json(port, topic);
    EXPECT_EQ(after["clients"].size(), 4u);
    EXPECT_TRUE(client_of(after, "old-clean").is_null());

    auto all = run_scanner(port, {"--topic", p + "/{client}", "--purge-all-disconnected"});
    EXPECT_EQ(all.code, 0) << all.err;
    after = once_json(port, topic);
    ASSERT_EQ(after["clients"].size(), 1u) << after.dump();
    EXPECT_EQ(after["clients"][0]["client"], "up");
}

TEST(scanner, live_table_on_a_terminal_fits_the_window) {
    const int port = broker_port();
    const auto p = unique_prefix();
    for (int i = 0; i < 10; ++i) publish_retained(port, p + "/c" + std::to_string(i), i % 2 ? "1" : "0");
    // script(1) gives the scanner a terminal; stty makes it 10 rows high: title, the rows shown, header, 4 rows,
    // counts, the broker's count and the cursor's line.
    const std::string command = "stty rows 10 cols 120; exec " + std::string(SCANNER_BIN) + " --broker " +
                                broker_uri(port) + " --topic '" + p + "/{client}' --no-color --sort name";
    child terminal({"script", "-qfc", command, "/dev/null"});
    // A whole frame: its counts line is its end.
    ASSERT_TRUE(terminal.wait_stdout(contains("5 connected, 5 disconnected"), 10s)) << terminal.stdout_text();
    EXPECT_NE(terminal.stdout_text().find("rows 1-4 of 10"), std::string::npos)
        << "no line saying which rows a 10-row terminal shows:\n" << terminal.stdout_text();
    const auto all = terminal.stdout_text();
    EXPECT_NE(all.find(broker_uri(port) + "  " + p + "/+"), std::string::npos) << "title: broker and filter\n" << all;
    EXPECT_NE(all.find("5 connected, 5 disconnected"), std::string::npos) << "counts cover every client\n" << all;
    bool fourth_shown = false, fifth_shown = false;  // rows are sorted by name: c0 ... c3 fit, c4 ... c9 do not
    for (const auto& line : terminal.stdout_lines()) {
        fourth_shown = fourth_shown || line.rfind("c3 ", 0) == 0;
        fifth_shown = fifth_shown || line.rfind("c4 ", 0) == 0;
    }
    EXPECT_TRUE(fourth_shown) << all;
    EXPECT_FALSE(fifth_shown) << all;
    terminal.signal(SIGTERM);
    EXPECT_TRUE(terminal.wait_exit(10s).has_value());
}

TEST(scanner, dollar_connected_scheme_is_read) {
    const int port = broker_port();
    const auto name = unique_prefix();
    child sensor({SENSOR_BIN, "--broker", broker_uri(port), "--topic", "$CONNECTED/{client}", "--name", name});
    observer obs(port, "$CONNECTED/" + name);
    obs.expect("$CONNECTED/" + name, equals("1"), "the sensor's status under $CONNECTED");
    const auto j = once_json(port, {"--topic", "$CONNECTED/{client}"});
    EXPECT_EQ(client_of(j, name)["state"], "connected");
    EXPECT_EQ(client_of(j, name)["topic"], "$CONNECTED/" + name);
}

TEST(scanner, bad_options_and_unreachable_broker) {
    EXPECT_EQ(run_scanner(1, {"--once"}).code, 4) << "port 1: nothing listens";
    struct bad_case {
        std::vector<std::string> args;
        std::string says;
    };
    for (const auto& bad : std::vector<bad_case>{
             {{"--format", "xml"}, "xml"}, {{"--topic", "a/b"}, "{client}"}, {{"--convention", "nosuch"}, "nosuch"},
             {{"--activity", "a/b"}, "{client}"},
             {{"--expect", "soon"}, "--expect"}, {{"--expect", "x="}, "write e.g."},
             {{"--timeout", "5 parsecs"}, "invalid duration"}, {{"--purge-older-than", "soon"}, "invalid duration"},
             {{"--dry-run"}, "--dry-run"},
             // TLS asked for over a clear-text URI, or with a file that is not there: refused, naming it.
             {{"--cafile", "/etc/hostname"}, "is not TLS"},
             {{"--broker", "ssl://127.0.0.1:1", "--cafile", "/nonexistent/ca.crt"}, "/nonexistent/ca.crt"},
             {{"--broker", "ssl://127.0.0.1:1", "--cert", "/nonexistent/c.crt"}, "/nonexistent/c.crt"},
             {{"-h", "127.0.0.1", "-p", "0"}, "port"},
             // Durations that would overflow the clock: refused, not wrapped into "a second ago".
             {{"--purge-older-than", "200000d", "--dry-run"}, "100 years"},
             {{"--once", "--timeout", "200000d"}, "100 years"},
             {{"--keepalive", "0"}, "keepalive"},
             {{"--allow-partial"}, "goes with once"},
             {{"--require", "x"}, "goes with once"},
             {{"events", "--require", "x"}, "goes with once"},
             {{"once", "--dry-run"}, "goes with purge"},
             // --format where it makes no sense is refused, not ignored.
             {{"events", "--format", "csv"}, "for snapshots"},
             {{"--events", "--format", "prometheus"}, "for snapshots"},
             {{"purge", "--all-disconnected", "--format", "prometheus"}, "not for a purge"},
             {{"purge"}, "--older-than"},
             {{"purge", "--older-than", "1d", "--all-disconnected"}, "excludes"},
             {{"--once", "--events"}, "excludes"},
             {{"--broker", "tcp://127.0.0.1:1", "-h", "127.0.0.1"}, "excludes"}}) {
        std::vector<std::string> argv{SCANNER_BIN};
        if (std::find(bad.args.begin(), bad.args.end(), "-h") == bad.args.end() &&
            std::find(bad.args.begin(), bad.args.end(), "--broker") == bad.args.end())
            argv.insert(argv.end(), {"--broker", broker_uri(1)});
        argv.insert(argv.end(), bad.args.begin(), bad.args.end());
        child c(argv);
        EXPECT_EQ(c.wait_exit(10s), 2) << bad.args[0] << ": " << c.stderr_text();
        EXPECT_NE(c.stderr_text().find(bad.says), std::string::npos) << bad.args[0] << ": " << c.stderr_text();
    }
    child help({SCANNER_BIN, "--help"});
    EXPECT_EQ(help.wait_exit(5s), 0);
    for (const char* mode : {"once", "events", "purge", "--require", "--older-than", "prometheus"})
        EXPECT_NE(help.stdout_text().find(mode), std::string::npos) << "help lacks an example of " << mode;
    // Not a terminal: 80 columns, descriptions wrapped at words (the presets' list was one line of 250).
    child serve_help({SCANNER_BIN, "serve", "--help"});
    EXPECT_EQ(serve_help.wait_exit(5s), 0);
    for (auto* h : {&help, &serve_help})
        for (const auto& line : h->stdout_lines()) EXPECT_LE(line.size(), 80u) << line;
    EXPECT_NE(help.stdout_text().find("Preset, repeatable: sensors, connected"), std::string::npos)
        << help.stdout_text();
}

// Each subcommand declares its own options: its --help lists them with its own examples (and not another mode's),
// within 80 columns; another mode's option names the mode it goes with; a mistyped subcommand names the one meant.
TEST(scanner, subcommands_have_their_own_options_examples_and_suggestions) {
    struct own {
        const char* subcommand;
        std::vector<const char*> has, lacks;
    };
    for (const auto& sub : std::vector<own>{{"watch", {"--timeout", "watch --format ndjson"}, {"--require"}},
                                            {"once", {"--require", "--allow-partial", "--db", "once -F json"},
                                             {"--listen", "--dry-run"}},
                                            {"events", {"events --format table"}, {"--timeout", "--require"}},
                                            {"purge", {"--older-than", "--all-disconnected", "--dry-run"},
                                             {"--require", "--db"}},
                                            {"serve", {"--listen", "--notary", "--alert-webhook", "serve --db"},
                                             {"--require", "--timeout", "--since"}},
                                            {"history", {"--since", "--db", "history kitchen"}, {"--listen"}},
                                            {"uptime", {"--window", "--sort", "uptime --window 7d"}, {"--since"}}}) {
        child help({SCANNER_BIN, sub.subcommand, "--help"});
        ASSERT_EQ(help.wait_exit(5s), 0) << sub.subcommand;
        const auto text = help.stdout_text();
        for (const char* word : sub.has)
            EXPECT_NE(text.find(word), std::string::npos) << sub.subcommand << " --help lacks " << word << ":\n" << text;
        for (const char* word : sub.lacks)
            EXPECT_EQ(text.find(word), std::string::npos) << sub.subcommand << " --help lists " << word << ":\n" << text;
        for (const auto& line : help.stdout_lines()) EXPECT_LE(line.size(), 80u) << sub.subcommand << ": " << line;
    }
    child sensor_help({SENSOR_BIN, "--help"});
    ASSERT_EQ(sensor_help.wait_exit(5s), 0);
    for (const auto& line : sensor_help.stdout_lines()) EXPECT_LE(line.size(), 80u) << "sensor: " << line;

    struct bad_case {
        std::vector<std::string> args;
        std::string says;
    };
    for (const auto& bad : std::vector<bad_case>{{{"serv"}, "did you mean serve?"},
                                                 {{"onec"}, "did you mean once?"},
                                                 {{"hist", "kitchen"}, "did you mean history?"},
                                                 {{"serve", "--require", "x"}, "--require goes with once"},
                                                 {{"--listen", "127.0.0.1:0"}, "--listen goes with serve"},
                                                 {{"history", "x", "--window", "7d"}, "--window goes with uptime"},
                                                 {{"serve", "--timeout", "5s"}, "--timeout goes with watch, once or "
                                                                                "purge"},
                                                 {{"events", "--db", "x.db"},
                                                  "--db goes with watch, once, serve, history or uptime"}}) {
        std::vector<std::string> argv{SCANNER_BIN, "--broker", broker_uri(1)};
        argv.insert(argv.end(), bad.args.begin(), bad.args.end());
        child c(argv);
        EXPECT_EQ(c.wait_exit(10s), 2) << bad.args[0] << ": " << c.stderr_text();
        EXPECT_NE(c.stderr_text().find(bad.says), std::string::npos) << bad.args[0] << ": " << c.stderr_text();
    }
}

// --exclude leaves out a name or a topic that fits a glob, in every mode, and counts it: "+/status" (ESPHome's
// convention) also catches Home Assistant's own status.
TEST(scanner, exclude_leaves_out_names_and_topics_that_fit_a_glob_and_counts_them) {
    const int port = broker_port();
    const auto p = unique_prefix();
    for (const char* name : {"-ha", "-kitchen", "-octo"}) publish_retained(port, p + name + "/status", "online");
    const auto j = once_json(port, {"--topic", "{client}/status", "--exclude", p + "-ha", "--exclude",
                                    "*-octo/status"});
    EXPECT_EQ(client_of(j, p + "-kitchen")["state"], "connected") << j.dump();
    EXPECT_TRUE(client_of(j, p + "-ha").is_null()) << "excluded by its name";
    EXPECT_TRUE(client_of(j, p + "-octo").is_null()) << "excluded by its topic";
    EXPECT_GE(j["stats"]["excluded"].get<int>(), 2) << j.dump();
    const auto empty = run_scanner(port, {"once", "--exclude", ""});
    EXPECT_EQ(empty.code, 2) << empty.err;
}

// The flags that chose a mode before subcommands existed still choose it, with the subcommand's options.
TEST(scanner, old_mode_flags_are_aliases_of_their_subcommands) {
    const int port = broker_port();
    const auto p = unique_prefix();
    publish_retained(port, p + "/up", "1");
    publish_retained(port, p + "/down", "0");
    const std::vector<std::string> topic{"--topic", p + "/{client}"};
    const auto with = [&](std::vector<std::string> args) {
        args.insert(args.begin(), topic.begin(), topic.end());
        return run_scanner(port, args);
    };
    const auto once_new = with({"once", "--format", "json", "--require", "up"});
    const auto once_old = with({"--once", "--format", "json", "--require", "up"});
    ASSERT_EQ(once_new.code, 0) << once_new.err;
    ASSERT_EQ(once_old.code, 0) << once_old.err;
    const auto clients = [](const scan_output& o) { return json::parse(o.out, nullptr, false)["clients"].dump(); };
    EXPECT_EQ(clients(once_old), clients(once_new));
    EXPECT_EQ(with({"--once", "--require", "down"}).code, 3) << "--require goes with --once as with once";
    for (const auto& args : std::vector<std::vector<std::string>>{{"purge", "--all-disconnected", "--dry-run"},
                                                                  {"--purge-all-disconnected", "--dry-run"},
                                                                  {"purge", "--purge-all-disconnected", "--dry-run"}}) {
        const auto dry = with(args);
        EXPECT_EQ(dry.code, 0) << args[0] << ": " << dry.err;
        EXPECT_EQ(dry.out, "would clear " + p + "/down\n") << args[0];
    }
    child events({SCANNER_BIN, "--broker", broker_uri(port), "--topic", p + "/{client}", "--events"});
    ASSERT_TRUE(events.wait_stdout(contains("\"event\":\"scanner\""), 10s)) << events.stderr_text();
    // Like the sensor, the scanner takes its signals with sigwait: SIGHUP (a closed terminal) ends a stream cleanly.
    events.signal(SIGHUP);
    EXPECT_EQ(events.wait_exit(10s), 0) << events.stderr_text();
}

// once --format prometheus: the families and names of the service's /metrics, one series per client whatever its
// state, and Prometheus' own linter (Debian's promtool) finds nothing to say.
TEST(scanner, prometheus_snapshot_passes_promtool) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    publish_retained(port, prefix + "/up", "1");
    publish_retained(port, prefix + "/down", "0");
    publish_retained(port, prefix + "/q\"uote\\back", "1");
    const auto r = run_scanner(port, {"once", "--topic", prefix + "/{client}", "--format", "prometheus"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("mqtt_presence_up{client=\"down\",topic=\"" + prefix + "/down\"} 0"), std::string::npos)
        << r.out;
    for (const char* family : {"mqtt_presence_clients{state=\"disconnected\"} 1", "mqtt_presence_stale_clients 0",
                               "mqtt_presence_malformed_messages_total 0", "mqtt_presence_late_wills_ignored_total 0",
                               "mqtt_presence_scanner_synced 1", "mqtt_presence_unmatched_messages_total 0"})
        EXPECT_NE(r.out.find(family), std::string::npos) << family << " missing:\n" << r.out;
    const std::string file = std::string(TEST_TMP_DIR) + "/" + prefix + ".prom";
    std::ofstream(file) << r.out;
    child lint({"sh", "-c", "promtool check metrics < '" + file + "'"});
    EXPECT_EQ(lint.wait_exit(20s), 0) << lint.stdout_text() << lint.stderr_text() << "\n" << r.out;
}

// A snapshot of a convention whose births are not retained says what it cannot see.
TEST(scanner, a_snapshot_of_sparkplug_nodes_says_their_births_are_not_retained) {
    const auto r = run_scanner(broker_port(), {"once", "--convention", "sparkplug-nodes"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("NBIRTH is not retained"), std::string::npos) << r.err;
    const auto plain = run_scanner(broker_port(), {"once", "--topic", unique_prefix() + "/{client}"});
    EXPECT_EQ(plain.err.find("NBIRTH"), std::string::npos) << plain.err;
}

TEST(scanner, modes_are_subcommands_and_the_old_flags_still_work) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    publish_retained(port, prefix + "/up", "1");
    publish_retained(port, prefix + "/down", "0");
    const std::vector<std::string> topic{"--topic", prefix + "/{client}"};
    auto with = [&](std::vector<std::string> args) {
        args.insert(args.end(), topic.begin(), topic.end());
        return run_scanner(port, args);
    };
    const auto sub = with({"once", "--format", "json"});
    const auto flag = with({"--once", "--format", "json"});
    ASSERT_EQ(sub.code, 0) << sub.err;
    ASSERT_EQ(flag.code, 0) << flag.err;
    EXPECT_EQ(json::parse(sub.out)["clients"], json::parse(flag.out)["clients"]);
    EXPECT_EQ(with({"once", "--require", "up"}).code, 0);
    EXPECT_EQ(with({"once", "--require", "down"}).code, 3);
    const auto csv = with({"once", "--format", "csv"});
    EXPECT_EQ(csv.out.rfind("client,state,", 0), 0u) << csv.out;
    const auto dry = with({"purge", "--all-disconnected", "--dry-run"});
    EXPECT_EQ(dry.code, 0) << dry.err;
    EXPECT_NE(dry.out.find("would clear " + prefix + "/down"), std::string::npos) << dry.out;
    const auto old = with({"--purge-all-disconnected", "--dry-run", "--format", "json"});
    EXPECT_EQ(json::parse(old.out)["clients"].size(), 1u) << old.out;
}

TEST(scanner, heartbeat_overdue_shows_stale_before_the_will) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    child events({SCANNER_BIN, "--broker", broker_uri(port), "--topic", templ, "--events"});
    ASSERT_TRUE(events.wait_stderr(contains("connected to"), 10s)) << events.stderr_text();
    // Keepalive 60 s: the broker would take ~90 s to send the will; the 1 s heartbeat reveals it in ~3 s.
    child sensor({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "hb", "--format", "json",
                  "--heartbeat", "1", "--keepalive", "60"});
    ASSERT_TRUE(events.wait_stdout(contains("\"event\":\"added\""), 10s)) << events.stdout_text();
    sensor.signal(SIGSTOP);
    auto stale = events.wait_stdout(contains("\"event\":\"stale\""), 10s);
    ASSERT_TRUE(stale) << "no stale event:\n" << events.stdout_text();
    EXPECT_NE(stale->find("\"stale\":true"), std::string::npos);
    sensor.signal(SIGCONT);
    EXPECT_TRUE(events.wait_stdout(contains("\"event\":\"fresh\""), 10s)) << events.stdout_text();
}

// --expect: a Tasmota-like device whose will says Online but whose readings stopped is overdue, and back when a
// reading comes; a device of a glob with a longer interval is not; the JSON says each one's expectation.
TEST(scanner, a_device_whose_readings_stop_is_overdue_and_back_when_one_comes) {
    const int port = broker_port();
    const auto p = unique_prefix();
    publish_retained(port, p + "/plug/LWT", "Online");
    publish_retained(port, p + "/lamp/LWT", "Online");
    child events({SCANNER_BIN, "--broker", broker_uri(port), "--topic", p + "/{client}/LWT", "--activity",
                  p + "/{client}/STATE", "--expect", "2s", "--expect", "lamp=1h", "events"});
    const auto about = [](const std::string& kind, const std::string& name) {
        return [kind, name](const std::string& l) {
            return l.find("\"event\":\"" + kind + "\"") != std::string::npos &&
                   l.find("\"client\":\"" + name + "\"") != std::string::npos;
        };
    };
    ASSERT_TRUE(events.wait_stdout(about("added", "plug"), 10s)) << events.stdout_text() << events.stderr_text();
    const auto reading = [&] {
        child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-t", p + "/plug/STATE", "-m",
                   "{\"POWER\":\"ON\"}"});
        return pub.wait_exit(10s) == 0;
    };
    ASSERT_TRUE(reading());
    const auto overdue = events.wait_stdout(about("overdue", "plug"), 10s);
    ASSERT_TRUE(overdue) << "no overdue event:\n" << events.stdout_text();
    const auto row = json::parse(*overdue)["client"];
    EXPECT_EQ(row["overdue"], true);
    EXPECT_EQ(row["state"], "connected") << "still connected by its will";
    EXPECT_EQ(row["expect_s"], 2.0);
    EXPECT_FALSE(row["last_seen"].is_null()) << "when its reading came";
    ASSERT_TRUE(reading());
    EXPECT_TRUE(events.wait_stdout(about("back", "plug"), 10s)) << events.stdout_text();
    EXPECT_EQ(events.stdout_text().find("\"event\":\"overdue\",\"previous\":\"connected\",\"client\":{\"client\":\"lamp\""),
              std::string::npos)
        << "lamp is expected within an hour";
    // The snapshot says each one's expectation, and the table's footer counts the overdue.
    const auto j = once_json(port, {"--topic", p + "/{client}/LWT", "--expect", "lamp=1h", "--expect", "auto"});
    EXPECT_EQ(client_of(j, "lamp")["expect_s"], 3600.0) << j.dump();
    EXPECT_EQ(client_of(j, "lamp")["expect"], "fixed");
    EXPECT_EQ(client_of(j, "plug")["expect"], "auto");
    EXPECT_TRUE(client_of(j, "plug")["expect_s"].is_null()) << "nothing learned yet";
    EXPECT_EQ(j["counts"]["overdue"], 0);
}

// A convention's readings speak of its own clients only: Tasmota's tele/X/STATE moves the last_seen of tele/X/LWT's
// row, never that of an X under another convention's status topic.
TEST(scanner, a_reading_is_a_sign_of_life_only_in_its_own_scheme) {
    const int port = broker_port();
    const auto p = unique_prefix();
    publish_retained(port, p + "/tele/dev/LWT", "Online");
    publish_retained(port, p + "/other/dev", "1");
    mqtt_presence::scanner_options o;
    o.broker.server_uri = broker_uri(port);
    o.topics = {p + "/tele/{client}/LWT", p + "/other/{client}"};
    o.activity = {p + "/tele/{client}/STATE"};
    o.activity_statuses[p + "/tele/{client}/STATE"] = {p + "/tele/{client}/LWT"};
    mqtt_presence::scanner scan(o);
    scan.start();
    ASSERT_TRUE(scan.wait_synced(20s));
    ASSERT_TRUE(scan.wait_for([&] { return scan.find("dev", 0) && scan.find("dev", 1); }, 10s)) << "both rows";
    child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-t", p + "/tele/dev/STATE", "-m", "{}"});
    ASSERT_EQ(pub.wait_exit(10s), 0) << pub.stderr_text();
    ASSERT_TRUE(scan.wait_for([&] { return scan.stats().activity == 1; }, 10s)) << "the reading";
    EXPECT_TRUE(scan.find("dev", 0)->last_seen) << "Tasmota's own row was seen";
    EXPECT_FALSE(scan.find("dev", 1)->last_seen) << "another convention's dev was not";
    scan.stop();
    mqtt_presence::scanner_options bad = o;
    bad.activity_statuses[p + "/tele/{client}/STATE"] = {"nowhere/{client}"};
    EXPECT_THROW(mqtt_presence::scanner{bad}, mqtt_presence::error) << "a status template that is not read";
}

TEST(scanner, class_with_a_borrowed_client) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    publish_retained(port, prefix + "/a", "1");
    publish_retained(port, prefix + "/b", "offline");

    mqtt::async_client app(broker_uri(port), prefix + "-app");
    mqtt_presence::scanner_options opts;
    opts.broker.server_uri = broker_uri(port);
    opts.topics = {prefix + "/{client}"};
    mqtt_presence::scanner scan(app, opts);
    std::atomic<int> other{0};
    app.set_connected_handler([&](const std::string&) { scan.on_connected(); });
    app.set_message_callback([&](mqtt::const_message_ptr m) {
        if (!scan.handle_message(m)) ++other;  // the app keeps its own messages
    });
    app.connect()->wait();
    ASSERT_TRUE(scan.wait_synced(10s)) << "the marker never came back";
    auto rows = scan.snapshot();
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].status, mqtt_presence::state::connected);
    EXPECT_EQ(rows[1].status, mqtt_presence::state::disconnected);
    EXPECT_EQ(rows[0].topic, prefix + "/a") << "rows know their topic";
    const auto b = scan.find("b");
    ASSERT_TRUE(b) << "one row, found without copying the table";
    EXPECT_EQ(b->topic, prefix + "/b");
    EXPECT_FALSE(scan.find("nobody"));

    // purge: a dry run lists, a real run clears the retained status on the broker.
    auto would = scan.purge([](const mqtt_presence::client_status& c) { return c.client == "b"; }, true);
    ASSERT_EQ(would.cleared.size(), 1u);
    auto cleared = scan.purge([](const mqtt_presence::client_status& c) { return c.client == "b"; }, false);
    ASSERT_EQ(cleared.cleared.size(), 1u);
    EXPECT_TRUE(cleared.refused.empty());
    EXPECT_TRUE(scan.wait_for([&] { return scan.snapshot().size() == 1u; }, 10s))
        << "the cleared status must leave the table";
    EXPECT_EQ(once_json(port, {"--topic", prefix + "/{client}"})["clients"].size(), 1u);
    app.subscribe(prefix + "-own/x", 0)->wait();
    app.publish(prefix + "-own/x", "hello", 0, false)->wait();
    EXPECT_TRUE(scan.wait_for([&] { return other.load() > 0; }, 10s)) << "the app's own message never came";
    EXPECT_EQ(other.load(), 1) << "messages that are not statuses stay the app's";
    scan.stop();
    app.disconnect()->wait();
}

// Where {client} ends the template the scanner subscribes "prefix/#": a status one level too deep (a fleet under a
// template without {client+}) is counted as unmatched with its example instead of never being delivered.
TEST(scanner, a_topic_one_level_too_deep_is_counted_as_unmatched_with_its_example) {
    const int port = broker_port();
    const auto p = unique_prefix();
    publish_retained(port, p + "/ok", "1");
    publish_retained(port, p + "/lab/sim-1", "1");
    const auto j = once_json(port, {"--topic", p + "/{client}"});
    EXPECT_EQ(j["clients"].size(), 1u) << j.dump();
    EXPECT_EQ(j["stats"]["unmatched"], 1) << j.dump();
    EXPECT_EQ(j["scanner"]["unmatched_examples"], json::array({p + "/lab/sim-1"})) << j.dump();
}

// Once on a terminal: mosquitto's retained $SYS client count predates the scanner's connection, so the table waits
// (a sys_interval at most) for the next, which counts the scanner, and says so. A private broker: only this
// scanner's connection changes its count, so mosquitto publishes a new one at its next sys_interval.
TEST(scanner, once_on_a_terminal_waits_for_a_client_count_newer_than_its_connection) {
    private_broker broker;
    const int port = broker.port();
    publish_retained(port, "sensors/connected/kitchen", "1");
    // The broker's retained count is renewed every sys_interval: one exists before the scanner connects.
    observer sys(port, "$SYS/broker/clients/connected");
    sys.expect("$SYS/broker/clients/connected", [](const std::string&) { return true; }, "mosquitto's count", 15s);
    on_terminal once({SCANNER_BIN, "once", "-b", broker_uri(port), "--no-color"}, 30, 120);
    EXPECT_EQ(once.finish(20s), 0) << once.out;
    EXPECT_NE(once.out.find("waiting up to 11 s for the broker's next client count"), std::string::npos) << once.out;
    EXPECT_NE(once.out.find("this scanner included"), std::string::npos) << once.out;
    EXPECT_EQ(once.out.find("before this scanner connected"), std::string::npos) << once.out;
}

TEST(scanner, survives_a_broker_restart_and_resyncs) {
    const std::string dir = std::string(TEST_TMP_DIR) + "/" + unique_prefix();
    child start({TEST_BROKER_SCRIPT, "start", dir});
    ASSERT_EQ(start.wait_exit(20s), 0) << start.stderr_text();
    const int port = broker_port(dir);
    publish_retained(port, "sensors/connected/before", "1");
    child events({SCANNER_BIN, "--broker", broker_uri(port), "--events"});
    ASSERT_TRUE(events.wait_stdout(contains("\"client\":\"before\""), 10s)) << events.stdout_text();
    child restart({TEST_BROKER_SCRIPT, "restart", dir});
    ASSERT_EQ(restart.wait_exit(20s), 0) << restart.stderr_text();
    ASSERT_TRUE(events.wait_stderr(contains("connection lost"), 10s)) << events.stderr_text();
    ASSERT_TRUE(events.wait_stderr(contains("connected to"), 30s)) << events.stderr_text();
    publish_retained(port, "sensors/connected/after", "1");
    EXPECT_TRUE(events.wait_stdout(contains("\"client\":\"after\""), 10s)) << events.stdout_text();
    child stop({TEST_BROKER_SCRIPT, "stop", dir});
    stop.wait_exit(20s);
}

// The live table on a terminal of 15 rows and 100 columns, with more clients than fit and rows wider than the
// terminal: every frame fits the screen, so the title line (which carries the scanner's own state) never scrolls
// off. The terminal does not wrap lines while the table is drawn (a row is cut at the edge), and wraps again after.
TEST(scanner, the_live_table_fits_the_terminal_and_keeps_its_title_in_view) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    for (int i = 0; i < 40; ++i)  // every third one malformed: its DETAIL makes the row wider than 100 columns
        publish_retained(port, prefix + "/c" + std::to_string(10 + i),
                         i % 3 == 0 ? R"({"status":"1","ip":"127.0.0.1"})" : "1");
    const auto uri = broker_uri(port);
    const auto templ = prefix + "/{client}";
    on_terminal scanner({SCANNER_BIN, "-b", uri, "-t", templ, "--no-color"}, 15, 100);
    scanner.read_until([&] { return scanner.out.find("40 messages") != std::string::npos; }, 20s);
    kill(scanner.pid, SIGINT);
    scanner.finish(10s);  // to the end of its output: EIO once it has exited
    const auto& out = scanner.out;

    const std::string clear = "\x1b[H\x1b[2J", nowrap = "\x1b[?7l", wrap = "\x1b[?7h";
    const auto first = out.find(clear), last = out.rfind(clear);
    ASSERT_NE(first, std::string::npos) << "no frame drawn:\n" << out;
    EXPECT_NE(out.find("40 messages"), std::string::npos) << out;
    EXPECT_LT(out.find(nowrap), first) << "line wrapping is not off before the first frame";
    const auto restored = out.rfind(wrap);
    EXPECT_TRUE(restored != std::string::npos && restored > last) << "line wrapping is not restored at exit";
    for (auto at = first; at != std::string::npos;) {
        const auto next = out.find(clear, at + clear.size());
        auto frame = out.substr(at + clear.size(), (next == std::string::npos ? out.size() : next) - at - clear.size());
        frame = frame.substr(0, frame.find(wrap));
        const auto lines = static_cast<std::size_t>(std::count(frame.begin(), frame.end(), '\n'));
        EXPECT_LE(lines, 14u) << "a frame of " << lines << " lines scrolls a 15-row terminal:\n" << frame;
        EXPECT_EQ(frame.compare(0, uri.size(), uri), 0) << "the title is not the frame's first line:\n" << frame;
        EXPECT_NE(frame.find("\nrows 1-"), std::string::npos) << "the second line says which rows are shown:\n" << frame;
        at = next;
    }
}


// The live table in tmux, read from tmux's own screen at 80x24 and 200x50: the title and the place line stay on top,
// no line is longer than the window (a cut one ends in "…"), the dead come first, PgDn and End scroll, '/' filters,
// q quits.
TEST(scanner, the_live_table_scrolls_filters_and_quits_in_tmux) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    for (int i = 0; i < 60; ++i)
        publish_retained(port, prefix + "/dev-" + std::to_string(100 + i), i % 10 == 9 ? "0" : "1");
    publish_retained(port, prefix + "/dev-wide", R"({"status":1,"ip":"127.0.0.1","detail":")" + std::string(300, 'w') + "\"}");
    const auto uri = broker_uri(port);
    for (const auto& [width, height] : {std::pair{80, 24}, std::pair{200, 50}}) {
        SCOPED_TRACE(std::to_string(width) + "x" + std::to_string(height));
        const std::string command = std::string(SCANNER_BIN) + " -b " + uri + " -t '" + prefix + "/{client}' --no-color";
        const tmux_session tmux(prefix + "-tmux", width, height, command);
        const auto page = static_cast<std::size_t>(height - 6);
        // A whole frame: its counts line ends it (tmux may show a frame half drawn).
        auto shown = tmux.wait_screen("all 61 rows", [](const std::string& t) {
            return t.find(" of 61") != std::string::npos && t.find("61 messages") != std::string::npos;
        });
        std::vector<std::string> lines;
        std::stringstream in(shown);
        for (std::string l; std::getline(in, l);) lines.push_back(l);
        ASSERT_GE(lines.size(), 3u);
        EXPECT_EQ(lines[0].rfind(uri, 0), 0u) << "the title first:\n" << shown;
        EXPECT_EQ(lines[1].rfind("rows 1-" + std::to_string(page) + " of 61", 0), 0u) << shown;
        EXPECT_NE(lines[3].find("disconnected"), std::string::npos) << "the dead first:\n" << shown;
        EXPECT_EQ(lines[2].find("TOPIC") != std::string::npos, width >= 160) << "a TOPIC column where it fits:\n" << shown;
        for (const auto& l : lines) {
            std::size_t cells = 0;
            for (unsigned char ch : l) cells += (ch & 0xC0) != 0x80;
            EXPECT_LE(cells, static_cast<std::size_t>(width)) << l;
        }
        tmux.keys({"NPage"});
        const auto second = std::min<std::size_t>(page, 61 - page) + 1;  // a page on, or to the last rows
        tmux.wait_screen("the second page", [&](const std::string& t) {
            return t.find("rows " + std::to_string(second) + "-") != std::string::npos;
        });
        tmux.keys({"End"});
        shown = tmux.wait_screen("the last rows", [&](const std::string& t) {
            return t.find("rows " + std::to_string(61 - page + 1) + "-61 of 61") != std::string::npos;
        });
        tmux.keys({"Home", "/", "w", "i", "d", "e", "Enter"});
        shown = tmux.wait_screen("the filter", [](const std::string& t) {
            return t.find("rows 1-1 of 1") != std::string::npos && t.find("dev-wide") != std::string::npos &&
                   t.find("61 messages") != std::string::npos;
        });
        if (width == 80) {
            EXPECT_NE(shown.find("\u2026"), std::string::npos) << "a cut line ends in …:\n" << shown;
        }
        tmux.keys({"q"});
        EXPECT_TRUE(tmux.wait_gone(10s)) << "q did not quit";
    }
}

// The live table puts the problems first by default: a dead client whose name sorts last is on the first screen of
// a terminal too small for the fleet; --sort name keeps the name order.
TEST(scanner, the_live_table_puts_problems_first_unless_sorted_by_name) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    for (int i = 0; i < 30; ++i) publish_retained(port, prefix + "/c" + std::to_string(10 + i), "1");
    publish_retained(port, prefix + "/zz-dead", "0");
    const auto uri = broker_uri(port);
    for (const bool by_name : {false, true}) {
        std::vector<std::string> argv{SCANNER_BIN, "-b", uri, "-t", prefix + "/{client}", "--no-color"};
        if (by_name) argv.insert(argv.end(), {"--sort", "name"});
        on_terminal scanner(argv, 15, 100);
        scanner.read_until([&] { return scanner.out.find("31 messages") != std::string::npos; }, 20s);
        kill(scanner.pid, SIGINT);
        scanner.finish(10s);
        const auto& out = scanner.out;
        const auto frame = out.substr(out.rfind("\x1b[H\x1b[2J"));
        ASSERT_NE(frame.find("31 messages"), std::string::npos) << out;
        if (by_name) {
            EXPECT_EQ(frame.find("zz-dead"), std::string::npos) << "below the fold by name:\n" << frame;
            EXPECT_NE(frame.find("c10"), std::string::npos) << frame;
        } else {
            const auto dead = frame.find("zz-dead");
            ASSERT_NE(dead, std::string::npos) << "the dead client is not on the screen:\n" << frame;
            EXPECT_LT(dead, frame.find("c10")) << frame;
        }
    }
}

}  // namespace
