// The scanner never shows a stale, partial or unordered picture as truth: against real mosquitto brokers (the
// fixture's, and private ones that a test stops, freezes or starts with default limits).
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/scanner.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include "harness.hpp"

#include <filesystem>

using namespace harness;
using json = nlohmann::json;
using namespace mqtt_presence;

namespace {

finished run_scanner(int port, std::vector<std::string> args, std::chrono::milliseconds timeout = 60s) {
    std::vector<std::string> argv{SCANNER_BIN, "--broker", broker_uri(port)};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_to_end(argv, timeout);
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now().time_since_epoch()).count();
}

// A scanner of the fixture's broker for the statuses under `prefix`.
scanner_options options_for(int port, const std::string& prefix) {
    scanner_options o;
    o.broker.server_uri = broker_uri(port);
    o.topics = {prefix + "/{client}"};
    return o;
}

TEST(scanner_truth, an_overdue_heartbeat_read_at_start_up_is_stale_in_every_output) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    // The client promised a heartbeat every 2 s and was last heard of an hour ago: it died while the broker was
    // down, and its retained "connected" outlived it (or its clock is an hour behind: a live beat would say so
    // within 1.5 intervals; none comes, so it is stale).
    publish_retained(port, prefix + "/ghost",
                     "{\"status\":1,\"hb\":2,\"epoch\":" + std::to_string(now_ms() - 3'600'000) +
                         ",\"ts\":" + std::to_string(now_ms() - 3'600'000) + "}");
    const auto topic_args = std::vector<std::string>{"--topic", prefix + "/{client}", "--once"};

    auto args = topic_args;
    args.insert(args.end(), {"--format", "json"});
    auto r = run_scanner(port, args);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = json::parse(r.out);
    ASSERT_EQ(j["clients"].size(), 1u);
    EXPECT_EQ(j["clients"][0]["stale"], true) << r.out;
    EXPECT_EQ(j["counts"]["stale"], 1);

    args = topic_args;
    args.insert(args.end(), {"--format", "prometheus"});
    r = run_scanner(port, args);
    EXPECT_NE(r.out.find("mqtt_presence_up{client=\"ghost\",topic=\"" + prefix + "/ghost\"} 0"), std::string::npos)
        << "not up:\n" << r.out;

    args = topic_args;
    args.insert(args.end(), {"--require", "ghost"});
    r = run_scanner(port, args);
    EXPECT_EQ(r.code, 3) << "a stale client is not what --require asks for\n" << r.err;
    EXPECT_NE(r.err.find("ghost is stale"), std::string::npos) << r.err;
}

// A sensor (or the scanner) whose wall clock is skewed (libfaketime; the monotonic clock, which a skewed machine
// still counts right, is left alone): liveness is judged on the scanner's receive times, the skew is
// reported per client, and a live client is never stale for it (libfaketime shifts one process's clock).
TEST(scanner_truth, a_skewed_clock_is_reported_and_never_makes_a_live_client_stale) {
    const int port = broker_port();
    const std::string faketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    ASSERT_EQ(access(faketime.c_str(), R_OK), 0) << "libfaketime is missing (scripts/bootstrap installs faketime)";
    struct skew {
        const char* offset;
        double seconds;
        bool sensor;  // the sensor's clock is shifted, else the scanner's
    };
    int round = 0;
    for (const auto& k : {skew{"-30s", -30, true}, skew{"-1h", -3600, true}, skew{"-15m", -900, true},
                          skew{"+15m", 900, true}, skew{"-30s", 30, false}}) {
        SCOPED_TRACE(std::string(k.sensor ? "sensor " : "scanner ") + k.offset);
        const auto prefix = unique_prefix() + "-" + std::to_string(++round);
        const auto shifted = std::vector<std::string>{"env", "LD_PRELOAD=" + faketime, std::string("FAKETIME=") + k.offset,
                                                      "FAKETIME_DONT_RESET=1", "DONT_FAKE_MONOTONIC=1"};
        auto sensor_cmd = k.sensor ? shifted : std::vector<std::string>{};
        for (const auto& a : {std::string(SENSOR_BIN), std::string("--broker"), broker_uri(port),
                              std::string("--topic"), prefix + "/{client}", std::string("--name"),
                              std::string("clock"), std::string("--format"), std::string("json"),
                              std::string("--heartbeat"), std::string("2")})
            sensor_cmd.push_back(a);
        child sensor(sensor_cmd);
        observer watch(port, prefix + "/clock");
        watch.expect(prefix + "/clock", contains("\"status\":1"), "the sensor's status");
        // Not a synchronisation: a sensor's first beat comes one to two intervals after its connect, and once grants
        // 1.5 intervals from when it reads the status, so the beats are given time to settle into their interval.
        std::this_thread::sleep_for(3s);
        auto once_cmd = k.sensor ? std::vector<std::string>{} : shifted;
        for (const auto& a : {std::string(SCANNER_BIN), std::string("once"), std::string("--broker"), broker_uri(port),
                              std::string("--topic"), prefix + "/{client}", std::string("--format"),
                              std::string("json"), std::string("--require"), std::string("clock")})
            once_cmd.push_back(a);
        child once(once_cmd);
        ASSERT_EQ(once.wait_exit(30s), 0) << "a live client with a skewed clock is connected:\n" << once.stderr_text();
        const auto j = json::parse(once.stdout_text());
        ASSERT_EQ(j["clients"].size(), 1u) << j.dump();
        const auto& row = j["clients"][0];
        EXPECT_EQ(row["stale"], false) << row.dump();
        // A sensor behind by less than the 10-minute tolerance: once waited for its live beat and measured it. (A
        // scanner behind sees the status as fresh at once: nothing to wait for, nothing measured.)
        if (k.sensor && k.seconds < 0) {
            ASSERT_TRUE(row["clock_skew_s"].is_number()) << row.dump();
            EXPECT_NEAR(row["clock_skew_s"].get<double>(), k.seconds, 2.0) << row.dump();
        }
        sensor.signal(SIGINT);
        sensor.wait_exit(10s);
    }
}

// A scanner whose clock is 15 minutes behind sees every epoch beyond its horizon: they still order one client's
// messages, so a late will of an older connection is ignored and the live client does not flap.
TEST(scanner_truth, a_scanner_far_behind_still_ignores_a_late_will) {
    const int port = broker_port();
    const std::string faketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    ASSERT_EQ(access(faketime.c_str(), R_OK), 0) << "libfaketime is missing (scripts/bootstrap installs faketime)";
    const auto prefix = unique_prefix();
    observer watch(port, prefix + "/#");
    child sensor({SENSOR_BIN, "--broker", broker_uri(port), "--topic", prefix + "/{client}", "--name", "late",
                  "--format", "json"});
    const auto born = json::parse(watch.expect(prefix + "/late", contains("\"status\":1"), "the sensor's status"));
    const auto epoch = born["epoch"].get<std::uint64_t>();
    child events({"env", "LD_PRELOAD=" + faketime, "FAKETIME=-15m", "FAKETIME_DONT_RESET=1", "DONT_FAKE_MONOTONIC=1",
                  SCANNER_BIN, "--broker", broker_uri(port), "--topic", prefix + "/{client}", "--events"});
    ASSERT_TRUE(events.wait_stdout(contains("\"client\":\"late\""), 10s)) << events.stderr_text();
    // The will of an older connection, arriving late; then a marker, whose event says the will was read.
    publish_retained(port, prefix + "/late",
                     "{\"status\":0,\"epoch\":" + std::to_string(epoch - 60000) + ",\"reason\":\"lost\"}");
    publish_retained(port, prefix + "/marker", "1");
    ASSERT_TRUE(events.wait_stdout(contains("\"client\":\"marker\""), 10s)) << events.stdout_text();
    for (const auto& line : events.stdout_lines())
        EXPECT_FALSE(line.find("\"client\":\"late\"") != std::string::npos &&
                     line.find("\"disconnected\"") != std::string::npos)
            << "the late will was taken for a death:\n" << events.stdout_text();
    sensor.signal(SIGINT);
    sensor.wait_exit(10s);
}

TEST(scanner_truth, a_resync_removes_statuses_the_broker_lost) {
    private_broker broker;  // no persistence: a restart loses every retained status
    publish_retained(broker.port(), "sensors/connected/before", "1");
    child events({SCANNER_BIN, "--broker", broker_uri(broker.port()), "--events", "--keepalive", "2"});
    ASSERT_TRUE(events.wait_stdout(contains("\"client\":\"before\""), 10s)) << events.stdout_text();
    broker.restart();
    auto removed = events.wait_stdout(contains("\"event\":\"removed\""), 30s);
    ASSERT_TRUE(removed) << "the row the broker no longer holds stayed:\n" << events.stdout_text() << events.stderr_text();
    EXPECT_NE(removed->find("\"client\":\"before\""), std::string::npos) << *removed;
    publish_retained(broker.port(), "sensors/connected/after", "1");
    EXPECT_TRUE(events.wait_stdout(contains("\"client\":\"after\""), 10s)) << events.stdout_text();
}

TEST(scanner_truth, the_scanners_own_disconnection_is_visible) {
    private_broker broker;
    publish_retained(broker.port(), "sensors/connected/k1", "1");
    child events({SCANNER_BIN, "--broker", broker_uri(broker.port()), "--events", "--keepalive", "1"});
    ASSERT_TRUE(events.wait_stdout(contains("\"client\":\"k1\""), 10s)) << events.stdout_text();
    // A frozen broker: the TCP connection stays open, only the keepalive can tell.
    ASSERT_EQ(kill(broker.pid(), SIGSTOP), 0);
    const auto frozen = steady::now();
    auto lost = events.wait_stdout(contains("\"connected\":false"), 15s);
    kill(broker.pid(), SIGCONT);
    ASSERT_TRUE(lost) << "no scanner event while cut off:\n" << events.stdout_text() << events.stderr_text();
    EXPECT_NE(lost->find("\"event\":\"scanner\""), std::string::npos) << *lost;
    EXPECT_NE(lost->find("\"since\":\""), std::string::npos) << "says as of when: " << *lost;
    std::cerr << "cut off noticed after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - frozen).count()
              << " ms with --keepalive 1\n";
    EXPECT_TRUE(events.wait_stderr(contains("connection lost"), 5s)) << events.stderr_text();
    EXPECT_TRUE(events.wait_stdout(contains("\"connected\":true"), 30s)) << events.stdout_text();

    // The class says so too.
    scanner_options o;
    o.broker.server_uri = broker_uri(broker.port());
    o.broker.keepalive = std::chrono::seconds(1);
    scanner scan(o);
    EXPECT_FALSE(scan.status().since) << "never connected: no time";
    scan.start();
    ASSERT_TRUE(scan.wait_synced(10s));
    EXPECT_TRUE(scan.status().connected);
    EXPECT_EQ(scan.status().sync, sync_state::complete);
    ASSERT_EQ(kill(broker.pid(), SIGSTOP), 0);
    const bool noticed = scan.wait_for([&] { return !scan.status().connected; }, 15s);
    kill(broker.pid(), SIGCONT);
    ASSERT_TRUE(noticed) << "status() still says connected";
    EXPECT_TRUE(scan.status().since);
    EXPECT_EQ(json::parse(render_json([&] {
                  scan_result r;
                  r.scanner = scan.status();
                  return r;
              }()))["scanner"]["connected"], false);
    scan.stop();
}

// A cut connection (the network stops carrying the scanner's packets; the broker sees nothing wrong) is visible
// before the keepalive declares it lost: the scanner's probe stops coming back, so last_heard stops moving. Once
// lost, the table is "as of" the last word from the broker, not the moment the loss was noticed.
TEST(scanner_truth, a_cut_connection_shows_before_it_is_declared_lost_and_the_table_is_as_of_the_last_word) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    tcp_proxy net(port);
    scanner_options o;
    o.broker.server_uri = broker_uri(net.port());
    o.broker.keepalive = std::chrono::seconds(6);
    o.topics = {prefix + "/{client}"};
    scanner scan(o);
    std::mutex lines_mutex;
    std::string lines;
    scan.on_status([&](const std::string& l) {
        std::lock_guard<std::mutex> lock(lines_mutex);
        lines += format_iso8601(clock::now()) + " " + l + "\n";
    });
    scan.start();
    ASSERT_TRUE(scan.wait_synced(10s));
    ASSERT_TRUE(scan.wait_for(
        [&] {
            const auto st = scan.status();
            return st.last_heard && st.since && *st.last_heard > *st.since;  // a probe came back after the connect
        },
        5s))
        << "the probe never came back";
    net.hold();
    const auto cut = clock::now();
    const auto quiet = [&](std::chrono::milliseconds gap) {
        const auto st = scan.status();
        return st.connected && st.last_heard && clock::now() - *st.last_heard >= gap;
    };
    const auto noticed = steady::now();
    ASSERT_TRUE(scan.wait_for([&] { return quiet(2s); }, 5s)) << "last_heard kept moving, or the loss came first";
    std::cerr << "no news for 2 s seen " << std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - noticed).count()
              << " ms after the cut, while still connected\n";
    scanner_status st;
    ASSERT_TRUE(scan.wait_for(
        [&] {
            st = scan.status();
            return !st.connected;
        },
        20s))
        << "never declared lost";
    ASSERT_TRUE(st.since);
    const auto ms = [&cut](const std::optional<time_point>& t) {
        return t ? std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(*t - cut).count()) + " ms"
                 : std::string("none");
    };
    EXPECT_LE(*st.since, cut + 1500ms) << "as of the last word from the broker, not of the detection: since "
                                       << ms(st.since) << ", last heard " << ms(st.last_heard) << " after the cut; cut at "
                                       << format_iso8601(cut) << "\n" << [&] {
                                              std::lock_guard<std::mutex> lock(lines_mutex);
                                              return lines;
                                          }();
    EXPECT_GE(*st.since, cut - 2500ms);
    // A change while cut off, then the path heals: the truth is back within a reconnect try and a sync.
    publish_retained(port, prefix + "/during", "1");
    net.release();
    const auto healed = steady::now();
    ASSERT_TRUE(scan.wait_for(
        [&] { return scan.status().connected && scan.status().sync == sync_state::complete && scan.find("during"); },
        10s))
        << "the change made during the cut never showed";
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - healed);
    std::cerr << "the truth back " << took.count() << " ms after the path healed\n";
    EXPECT_LE(took, 3000ms) << "a reconnect try within 0.5 s, its CONNACK within Paho's 1 s poll, then the sync";
    scan.stop();
}

TEST(scanner_truth, the_live_table_says_when_it_lost_the_broker_and_shows_hostile_text_harmlessly) {
    private_broker broker;
    // A status whose ip sets the terminal's title, writes the clipboard (OSC 52) and clears the screen.
    publish_retained(broker.port(), "sensors/connected/evil",
                     R"({"status":1,"ip":"\u001b]0;PWNED\u0007\u001b]52;c;ZWNobyBwd25lZA==\u0007\u001b[2J"})");
    const std::string command = "stty rows 20 cols 160; exec " + std::string(SCANNER_BIN) + " --broker " +
                                broker_uri(broker.port()) + " --keepalive 1 --no-color";
    child terminal({"script", "-qfc", command, "/dev/null"});
    ASSERT_TRUE(terminal.wait_stdout(contains("PWNED"), 10s)) << terminal.stdout_text();
    ASSERT_EQ(kill(broker.pid(), SIGSTOP), 0);
    const auto title = terminal.wait_stdout(contains("DISCONNECTED since"), 15s);
    kill(broker.pid(), SIGCONT);
    ASSERT_TRUE(title) << "the title never said the scanner lost the broker:\n" << terminal.stdout_text();
    EXPECT_NE(title->find("rows as of then"), std::string::npos) << *title;
    const auto all = terminal.stdout_text();
    EXPECT_EQ(all.find("\x1b]"), std::string::npos) << "an OSC sequence from the network reached the terminal";
    EXPECT_NE(all.find("\\x1b]0;PWNED\\x07"), std::string::npos) << "shown escaped";
    terminal.signal(SIGTERM);
    EXPECT_TRUE(terminal.wait_exit(10s).has_value());
}

TEST(scanner_truth, a_partial_snapshot_never_exits_0) {
    private_broker broker("start-default");  // max_queued_messages 1000, 20 in flight: mosquitto's defaults
    const auto prefix = unique_prefix();
    constexpr int clients = 5000;
    {
        mqtt::async_client seeder(broker_uri(broker.port()), prefix + "-seeder",
                                  mqtt::create_options(MQTTVERSION_3_1_1, clients + 10));
        seeder.connect()->wait();
        mqtt::delivery_token_ptr last;
        for (int i = 0; i < clients; ++i) last = seeder.publish(prefix + "/c" + std::to_string(i), "1", 1, true);
        ASSERT_TRUE(last->wait_for(60s));
        seeder.disconnect()->wait();
    }
    // At QoS 1 the broker queues at most 1,020 of the 5,000 and drops the rest silently.
    auto r = run_scanner(broker.port(), {"--topic", prefix + "/{client}", "--once", "--format", "json", "-q", "1"});
    EXPECT_EQ(r.code, 5) << r.err;
    EXPECT_TRUE(r.out.empty()) << "no table it cannot vouch for: " << r.out.substr(0, 200);
    EXPECT_NE(r.err.find("max_queued_messages"), std::string::npos) << "names the broker setting: " << r.err;

    r = run_scanner(broker.port(),
                    {"--topic", prefix + "/{client}", "--once", "--format", "json", "-q", "1", "--allow-partial"});
    EXPECT_EQ(r.code, 5);
    const auto j = json::parse(r.out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r.out.substr(0, 200);
    EXPECT_LT(j["clients"].size(), static_cast<std::size_t>(clients)) << "the broker did drop statuses";
    EXPECT_EQ(j["scanner"]["sync"], "unverified");
    std::cerr << "QoS 1 on a default mosquitto: " << j["clients"].size() << " of " << clients << " rows, exit 5\n";

    // At QoS 0 a fast reader may get them all: then, and only then, exit 0.
    r = run_scanner(broker.port(), {"--topic", prefix + "/{client}", "--once", "--format", "json"});
    if (r.code == 0) EXPECT_EQ(json::parse(r.out)["clients"].size(), static_cast<std::size_t>(clients));
    else EXPECT_EQ(r.code, 5) << r.err;
}

TEST(scanner_truth, a_client_that_dies_while_the_broker_is_down) {
    private_broker broker("start-persistent");  // retained statuses survive the broker's restart
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    observer obs(broker.port(), prefix + "/+");
    // "plain": the classic 1/0 with a will and nothing else. "hb": a heartbeat every second, and (MQTT 5) a
    // message expiry of three intervals on its retained "connected".
    child plain({SENSOR_BIN, "--broker", broker_uri(broker.port()), "--topic", templ, "--name", "plain"});
    child hb({SENSOR_BIN, "--broker", broker_uri(broker.port()), "--topic", templ, "--name", "hb", "--format", "json",
              "--heartbeat", "1", "-V", "5"});
    obs.expect(prefix + "/plain", equals("1"), "plain connected");
    // Three heartbeats: more than a second, so the broker's autosave (every second) holds both statuses.
    for (int beat = 0; beat < 3; ++beat) obs.expect(prefix + "/hb", contains("\"status\":1"), "hb's heartbeat");
    // The broker crashes; both clients die while it is down, so neither will is ever sent.
    broker.crash();
    plain.signal(SIGKILL);
    hb.signal(SIGKILL);
    plain.wait_exit(5s);
    hb.wait_exit(5s);
    broker.restart();

    scanner scan(options_for(broker.port(), prefix));
    scan.start();
    ASSERT_TRUE(scan.wait_synced(10s));
    // The plain client's retained "1" outlived it: it is shown connected, but as will-only, the distinct class of
    // rows that rest on the client's word alone.
    const auto p = scan.find("plain");
    ASSERT_TRUE(p) << "the broker kept the retained status";
    EXPECT_EQ(p->status, state::connected);
    EXPECT_TRUE(p->will_only());
    // The heartbeat client is never shown alive for long: its status expires in the broker or goes stale here.
    EXPECT_TRUE(scan.wait_for(
        [&] {
            const auto r = scan.find("hb");
            return !r || r->stale;
        },
        15s))
        << "a dead heartbeat client stayed connected and fresh";
    const auto j = json::parse(render_json([&] {
        scan_result r;
        r.clients = scan.snapshot();
        return r;
    }()));
    bool found = false;
    for (const auto& c : j["clients"])
        if (c["client"] == "plain") found = c["liveness"] == "will-only";
    EXPECT_TRUE(found) << j.dump();
    scan.stop();
}

// Watched across the outage: will-only clients that died while the broker was down keep their retained
// "connected" forever, since no will was sent. Their last word predates the broker's new start, so they are
// unconfirmed; a live one re-announces when it reconnects and is confirmed. --require waits out a grace of 30 s
// after the start, then takes unconfirmed for not connected.
TEST(scanner_truth, will_only_clients_from_before_a_broker_restart_are_unconfirmed_until_they_speak) {
    private_broker broker("start-persistent");
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    observer obs(broker.port(), prefix + "/+");
    const auto sensor = [&](const std::string& name, const std::string& format) {
        return std::make_unique<child>(std::vector<std::string>{SENSOR_BIN, "--broker", broker_uri(broker.port()),
                                                                "--topic", templ, "--name", name, "--format", format});
    };
    auto gone = sensor("gone", "plain");
    auto gone_json = sensor("gonej", "json");
    // JSON: its re-announcement is stamped, so it is confirmed even when it reconnects before the scanner does (a
    // plain "1" re-published before the scanner is back cannot be told from the old one: it stays unconfirmed).
    auto alive = sensor("alive", "json");
    auto o = options_for(broker.port(), prefix);
    o.broker.keepalive = std::chrono::seconds(2);
    scanner scan(o);
    scan.start();
    ASSERT_TRUE(scan.wait_synced(10s));
    ASSERT_TRUE(scan.wait_for([&] { return scan.find("gone") && scan.find("gonej") && scan.find("alive"); }, 10s));
    // The broker's autosave (every second) after the statuses: its file, newer than them, holds them.
    const auto seen = std::filesystem::file_time_type::clock::now();
    const auto saved = [&] {
        std::error_code ec;
        const auto t = std::filesystem::last_write_time(broker.dir() + "/mosquitto.db", ec);
        return !ec && t > seen;
    };
    for (const auto until = steady::now() + 10s; !saved() && steady::now() < until;)
        std::this_thread::sleep_for(50ms);  // a file another process writes
    ASSERT_TRUE(saved()) << "the broker never saved its retained store";
    broker.crash();
    gone->signal(SIGKILL);
    gone_json->signal(SIGKILL);
    gone->wait_exit(5s);
    gone_json->wait_exit(5s);
    broker.restart();
    ASSERT_TRUE(scan.wait_for(
        [&] {
            const auto g = scan.find("gone"), j = scan.find("gonej"), a = scan.find("alive");
            return g && j && a && g->unconfirmed && j->unconfirmed && !a->unconfirmed &&
                   a->status == state::connected;
        },
        25s))
        << "after the broker's restart: gone " << (scan.find("gone") && scan.find("gone")->unconfirmed)
        << ", gonej " << (scan.find("gonej") && scan.find("gonej")->unconfirmed) << ", alive "
        << (scan.find("alive") && scan.find("alive")->unconfirmed) << "; scanner "
        << render_scanner_json(scan.status()) << "; rows " << render_json([&] {
               scan_result r;
               r.clients = scan.snapshot();
               return r;
           }());
    EXPECT_TRUE(scan.status().broker_started) << "the broker's start, from its uptime";
    const auto require = [&](const std::string& name) {
        return std::make_unique<child>(std::vector<std::string>{SCANNER_BIN, "once", "--broker",
                                                                broker_uri(broker.port()), "--topic", templ,
                                                                "--require", name, "--format", "json"});
    };
    auto ok = require("alive");
    EXPECT_EQ(ok->wait_exit(40s), 0) << ok->stderr_text();
    auto dead = require("gonej");  // a fresh scanner: the time stamp of its retained status predates the start
    EXPECT_EQ(dead->wait_exit(40s), 3) << dead->stderr_text() << dead->stdout_text();
    EXPECT_NE(dead->stderr_text().find("unconfirmed"), std::string::npos) << dead->stderr_text();
    const auto j = json::parse(render_json([&] {
        scan_result r;
        r.clients = scan.snapshot();
        return r;
    }()));
    for (const auto& c : j["clients"])
        if (c["client"] == "gone") {
            EXPECT_EQ(c.value("unconfirmed", false), true) << c.dump();
        }
    scan.stop();
}

// A consumer that stalls (a terminal, a pipe nobody reads) holds up neither intake nor anything else.
TEST(scanner_truth, a_stalled_consumer_never_blocks_intake) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    auto o = options_for(port, prefix);
    scanner scan(o);
    std::mutex m;
    std::condition_variable cv;
    bool release = false;
    std::atomic<int> delivered{0};
    scan.on_change([&](const change&) {
        std::unique_lock<std::mutex> lock(m);
        cv.wait(lock, [&] { return release; });  // the first change stalls the consumer until the test says so
        ++delivered;
    });
    scan.start();
    ASSERT_TRUE(scan.wait_synced(10s));
    constexpr int clients = 2000;
    mqtt::async_client pub(broker_uri(port), prefix + "-pub", mqtt::create_options(MQTTVERSION_3_1_1, clients + 10));
    pub.connect()->wait();
    for (int i = 0; i < clients; ++i) pub.publish(prefix + "/c" + std::to_string(i), "1", 0, false);
    // While the consumer is stuck on the first change, every message is still read into the table.
    EXPECT_TRUE(scan.wait_for([&] { return scan.stats().messages >= static_cast<std::uint64_t>(clients); }, 20s))
        << "intake stopped behind a stalled consumer: " << scan.stats().messages << " messages";
    EXPECT_EQ(scan.counts().connected, static_cast<std::size_t>(clients));
    EXPECT_EQ(delivered.load(), 0) << "the consumer was still stalled";
    // A snapshot written to a slow writer does not hold the table either: from inside the visit, intake goes on.
    bool seen_more = false;
    bool first = true;
    scan.for_each_sorted([&](const client_status&) {
        if (!first) return;
        first = false;
        pub.publish(prefix + "/late", "1", 1, false)->wait();
        seen_more = scan.wait_for([&] { return scan.find("late").has_value(); }, 10s);
    });
    EXPECT_TRUE(seen_more) << "a message waited for the snapshot's writer";
    {
        std::lock_guard<std::mutex> lock(m);
        release = true;
    }
    cv.notify_all();
    // Nothing is lost once the consumer resumes: every change arrives.
    EXPECT_TRUE(scan.wait_for([&] { return delivered.load() >= clients + 1; }, 20s))
        << delivered.load() << " of " << clients + 1 << " changes delivered";
    scan.stop();
    pub.disconnect()->wait();
}

TEST(scanner_truth, changes_are_delivered_in_order_one_at_a_time) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    auto o = options_for(port, prefix);
    o.expire_interval = std::chrono::milliseconds(5);  // the expiry thread races the message thread all the time
    scanner scan(o);
    std::mutex m;
    std::map<std::string, std::pair<state, bool>> seen;  // per client: state and stale, as the changes told it
    std::set<std::string> went_stale;                     // clients the expiry thread reported stale
    std::vector<std::string> violations;
    std::atomic<int> inside{0}, overlaps{0}, delivered{0};
    scan.on_change([&](const change& c) {
        if (inside.fetch_add(1) != 0) ++overlaps;
        {
            std::lock_guard<std::mutex> lock(m);
            auto it = seen.find(c.current.client);
            const bool known = it != seen.end();
            const auto bad = [&](const std::string& why) {
                if (violations.size() < 10) violations.push_back(c.current.client + ": " + why);
            };
            if (c.kind == change_kind::added && known) bad("added twice");
            if (c.kind != change_kind::added && !known) bad(std::string(to_string(c.kind)) + " before added");
            if (known && c.previous && *c.previous != it->second.first) bad("previous state is not the last one told");
            if (known && c.kind == change_kind::stale && it->second.second) bad("stale after stale");
            if (known && c.kind == change_kind::fresh && !it->second.second) bad("fresh without stale");
            seen[c.current.client] = {c.current.status, c.current.stale};
            if (c.kind == change_kind::stale) went_stale.insert(c.current.client);
        }
        ++delivered;
        --inside;
    });
    scan.start();
    ASSERT_TRUE(scan.wait_synced(10s));

    // 50 clients with a 1 s heartbeat, each silent for a random 0-6 s between statuses (so they go stale and fresh
    // again), and 50 others flipping between 1 and 0 as fast as the broker takes them.
    mqtt::async_client pub(broker_uri(port), prefix + "-pub", mqtt::create_options(MQTTVERSION_3_1_1, 100000));
    pub.connect()->wait();
    std::mt19937 rng(7);
    std::vector<steady::time_point> next(50, steady::now());
    const auto until = steady::now() + 8s;
    std::uint64_t flips = 0;
    while (steady::now() < until) {
        for (int i = 0; i < 50; ++i) {
            if (steady::now() < next[static_cast<std::size_t>(i)]) continue;
            pub.publish(prefix + "/hb" + std::to_string(i),
                        "{\"status\":1,\"hb\":1,\"epoch\":1,\"ts\":" + std::to_string(now_ms()) + "}", 0, false);
            next[static_cast<std::size_t>(i)] = steady::now() + std::chrono::milliseconds(rng() % 6000);
        }
        for (int k = 0; k < 200; ++k, ++flips)
            pub.publish(prefix + "/flip" + std::to_string(flips % 50), flips / 50 % 2 ? "1" : "0", 0, false);
        std::this_thread::sleep_for(2ms);  // pacing the publisher, not a synchronisation
    }
    pub.publish(prefix + "/last", "1", 1, false)->wait();
    ASSERT_TRUE(scan.wait_for([&] { return scan.find("last").has_value() && scan.pending_deliveries() == 0; }, 30s));
    scan.stop();  // delivers what is queued
    std::lock_guard<std::mutex> lock(m);
    std::string why;
    for (const auto& v : violations) why += v + "\n";
    EXPECT_TRUE(violations.empty()) << why;
    EXPECT_EQ(overlaps.load(), 0) << "two change callbacks ran at once";
    EXPECT_GT(delivered.load(), 1000) << "the stress produced too few changes to mean anything";
    int heartbeat_clients = 0;
    for (const auto& [name, st] : seen) heartbeat_clients += name.rfind("hb", 0) == 0;
    EXPECT_EQ(heartbeat_clients, 50);
    EXPECT_FALSE(went_stale.empty()) << "the expiry thread never raced the message thread";
    std::cerr << delivered.load() << " changes from " << flips << " flips and 50 heartbeating clients, in order\n";
    pub.disconnect()->wait();
}

}  // namespace
