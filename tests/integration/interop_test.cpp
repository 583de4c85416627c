// The sensor and the scanner on another broker than mosquitto: built twice, for RabbitMQ (its MQTT plugin) and for
// aedes (npm), each started once by its fixture (scripts/test-rabbitmq, scripts/test-aedes). BROKER names it and
// BROKER_DIR_ENV the variable that holds the fixture's folder.
//
// What differs: RabbitMQ delivers no retained message to a wildcard subscription, so a snapshot is partial and says
// so, while named clients (asked for by their exact topics) are answered right; aedes sends a SUBSCRIBE's retained
// messages as a stream after its SUBACK, so the sync marker comes back first and only the retained tail ends the
// burst. Neither speaks MQTT 5, which is reported as a refusal, not as a dead broker.
#include "harness.hpp"

#include <mqtt_presence/scanner.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include <mqtt/async_client.h>

using namespace harness;
using json = nlohmann::json;

namespace {

const std::string broker = BROKER;
bool is_rabbit() { return broker == "rabbitmq"; }

int port() { return broker_port(env_or_fail(BROKER_DIR_ENV)); }

// Retained statuses <prefix>/c<i>: even i "1", odd i "0", published by Paho (QoS 1, all acknowledged).
void seed(int port, const std::string& prefix, int n) {
    mqtt::async_client cli(broker_uri(port), "seed-" + prefix, mqtt::create_options(MQTTVERSION_3_1_1, n + 10));
    cli.connect()->wait();
    mqtt::delivery_token_ptr last;
    for (int i = 0; i < n; ++i)
        last = cli.publish(prefix + "/c" + std::to_string(i), i % 2 == 0 ? "1" : "0", 1, true);
    ASSERT_TRUE(last && last->wait_for(std::chrono::seconds(60))) << "the broker acknowledged the seed";
    cli.disconnect()->wait();
}

struct run_result {
    int rc;
    std::string out, err;
};

run_result scanner_once(int port, const std::string& templ, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{SCANNER_BIN, "once", "--broker", broker_uri(port), "--topic", templ, "-F", "json",
                                  "--timeout", "30s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child c(argv);
    const auto rc = c.wait_exit(60s);
    if (!rc) ADD_FAILURE() << "once did not exit within 60 s";
    return {rc.value_or(-1), c.stdout_text(), c.stderr_text()};
}

TEST(interop, a_sensor_is_born_dies_by_its_will_and_stops_cleanly) {
    const int p = port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    // Exact topics: on RabbitMQ a wildcard subscription would not get the retained birth.
    observer killed(p, prefix + "/killed"), stopped(p, prefix + "/stopped");
    child a({SENSOR_BIN, "--broker", broker_uri(p), "--topic", templ, "--name", "killed"});
    child b({SENSOR_BIN, "--broker", broker_uri(p), "--topic", templ, "--name", "stopped"});
    killed.expect(prefix + "/killed", equals("1"), "killed's birth");
    stopped.expect(prefix + "/stopped", equals("1"), "stopped's birth");
    a.signal(SIGKILL);
    killed.expect(prefix + "/killed", equals("0"), "the broker's will after SIGKILL");
    b.signal(SIGINT);
    EXPECT_EQ(b.wait_exit(10s), 0) << b.stderr_text();
    stopped.expect(prefix + "/stopped", equals("0"), "the clean stop's own \"0\"");
}

TEST(interop, a_snapshot_is_complete_or_says_it_is_not) {
    const int p = port();
    const auto prefix = unique_prefix();
    const int n = is_rabbit() ? 50 : 10000;  // aedes: the burst that once outran the marker
    seed(p, prefix, n);
    const auto r = scanner_once(p, prefix + "/{client}");
    if (is_rabbit()) {
        EXPECT_EQ(r.rc, 5) << r.err;
        EXPECT_NE(r.err.find("no retained message to a wildcard subscription"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("serve"), std::string::npos) << "says what to do: " << r.err;
        EXPECT_NE(r.err.find("--require"), std::string::npos) << "says what to do: " << r.err;
        EXPECT_TRUE(r.out.empty()) << "no partial table without --allow-partial: " << r.out;
        const auto partial = scanner_once(p, prefix + "/{client}", {"--allow-partial"});
        const auto j = json::parse(partial.out, nullptr, false);
        ASSERT_TRUE(j.is_object()) << partial.out;
        EXPECT_EQ(j["scanner"]["sync"], "partial");
        // The MQTT plugin turns '.' into '/': such a status arrives under another topic, counted and shown.
        publish_retained(p, prefix + "/a.b", "1");
        const auto dotted = scanner_once(p, prefix + "/{client}", {"--allow-partial", "--require", "a.b"});
        const auto d = json::parse(dotted.out, nullptr, false);
        ASSERT_TRUE(d.is_object()) << dotted.out << dotted.err;
        EXPECT_EQ(d["stats"]["unmatched"], 1) << d.dump();
        EXPECT_EQ(d["scanner"]["unmatched_examples"], json::array({prefix + "/a/b"})) << d.dump();
    } else {
        ASSERT_EQ(r.rc, 0) << r.err;
        const auto j = json::parse(r.out, nullptr, false);
        ASSERT_TRUE(j.is_object()) << r.out.substr(0, 500);
        EXPECT_EQ(j["scanner"]["sync"], "complete");
        EXPECT_TRUE(j["scanner"]["broker_clients"].is_null()) << "aedes publishes no $SYS/broker/clients/connected";
        EXPECT_EQ(j["clients"].size(), static_cast<std::size_t>(n)) << "every retained status is in the table";
        EXPECT_EQ(j["counts"]["connected"], n / 2);
    }
}

TEST(interop, require_answers_right_for_named_clients) {
    const int p = port();
    const auto prefix = unique_prefix();
    seed(p, prefix, 4);  // c0 and c2 connected, c1 and c3 disconnected
    const auto templ = prefix + "/{client}";
    const auto up = scanner_once(p, templ, {"--require", "c0,c2"});
    EXPECT_EQ(up.rc, 0) << up.err;
    // The answer is printed in the format asked for: on RabbitMQ the named rows only (the rest would be partial).
    const auto rows = json::parse(up.out, nullptr, false);
    ASSERT_TRUE(rows.is_object()) << "--require --format json printed no JSON: " << up.out << up.err;
    EXPECT_EQ(rows["clients"].size(), is_rabbit() ? 2u : 4u) << up.out;
    EXPECT_EQ(rows["clients"][0]["client"], "c0") << up.out;
    const auto down = scanner_once(p, templ, {"--require", "c0,c1"});
    EXPECT_EQ(down.rc, 3) << down.err;
    EXPECT_NE(down.err.find("required client c1 is disconnected"), std::string::npos) << down.err;
    const auto missing = scanner_once(p, templ, {"--require", "nobody"});
    EXPECT_EQ(missing.rc, 3) << missing.err;
    EXPECT_NE(missing.err.find("nobody is unknown"), std::string::npos) << missing.err;
}

TEST(interop, live_changes_reach_the_events_stream) {
    const int p = port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    child events({SCANNER_BIN, "events", "--broker", broker_uri(p), "--topic", templ});
    ASSERT_TRUE(events.wait_stdout(contains("\"event\":\"scanner\""), 20s)) << events.stderr_text();
    const auto live_is = [](std::string state) {
        return [state](const std::string& l) {
            return l.find("\"client\":\"live\"") != std::string::npos &&
                   l.find("\"state\":\"" + state + "\"") != std::string::npos;
        };
    };
    child s({SENSOR_BIN, "--broker", broker_uri(p), "--topic", templ, "--name", "live"});
    EXPECT_TRUE(events.wait_stdout(live_is("connected"), 15s)) << events.stdout_text();
    s.signal(SIGKILL);
    EXPECT_TRUE(events.wait_stdout(live_is("disconnected"), 15s)) << events.stdout_text();
}

// Activity, on every broker: a live reading on one of a client's other topics is a sign of life (last_seen moves;
// the payload is not read); a retained reading, as old as the broker's store, is not one; a name without a status
// row is counted, never added.
TEST(interop, a_live_reading_on_an_activity_topic_moves_last_seen_and_adds_no_row) {
    const int p = port();
    const auto prefix = unique_prefix();
    publish_retained(p, prefix + "/dev/LWT", "Online");
    publish_retained(p, prefix + "/dev/STATE", "{\"POWER\":\"ON\"}");
    mqtt_presence::scanner_options o;
    o.broker.server_uri = broker_uri(p);
    o.topics = {prefix + "/{client}/LWT"};
    o.activity = {prefix + "/{client}/STATE"};
    o.named_clients = {"dev"};  // RabbitMQ sends retained statuses to exact topics only
    mqtt_presence::scanner scan(o);
    scan.start();
    ASSERT_TRUE(scan.wait_synced(20s)) << "no sync";
    ASSERT_TRUE(scan.wait_for([&] { return scan.find("dev").has_value(); }, 10s)) << "no status of dev";
    EXPECT_EQ(scan.find("dev")->status, mqtt_presence::state::connected);
    EXPECT_FALSE(scan.find("dev")->last_seen) << "a retained plain status carries no time";
    EXPECT_EQ(scan.stats().activity + scan.stats().activity_unknown, 0u) << "a retained reading is no sign of life";

    const auto before = mqtt_presence::clock::now();
    for (const char* topic : {"/dev/STATE", "/ghost/STATE"}) {
        child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(p), "-q", "1", "-t", prefix + topic,
                   "-m", "{\"POWER\":\"ON\"}"});
        ASSERT_EQ(pub.wait_exit(10s), 0) << pub.stderr_text();
    }
    ASSERT_TRUE(scan.wait_for([&] { return scan.stats().activity == 1 && scan.stats().activity_unknown == 1; }, 10s))
        << "activity " << scan.stats().activity << ", unknown " << scan.stats().activity_unknown;
    const auto dev = scan.find("dev");
    ASSERT_TRUE(dev && dev->last_seen) << "the reading did not move last_seen";
    EXPECT_GE(*dev->last_seen, before - 1s);
    EXPECT_LE(*dev->last_seen, mqtt_presence::clock::now());
    EXPECT_EQ(dev->status, mqtt_presence::state::connected);
    EXPECT_FALSE(scan.find("ghost")) << "a reading adds no row";
    EXPECT_EQ(scan.snapshot().size(), 1u);
    scan.stop();
}

// A topic that fits no name is counted as unmatched with its example on every broker, RabbitMQ's '.'-to-'/'
// mapping included ("a.b" arrives as "prefix/a/b"): where {client} ends the template the scanner subscribes '#'.
TEST(interop, a_dotted_name_or_a_deeper_topic_is_counted_as_unmatched_with_its_example) {
    const int p = port();
    const auto prefix = unique_prefix();
    mqtt_presence::scanner_options o;
    o.broker.server_uri = broker_uri(p);
    o.topics = {prefix + "/{client}", prefix + "-s/{client}/status"};
    mqtt_presence::scanner scan(o);
    scan.start();
    ASSERT_TRUE(scan.wait_synced(20s)) << "no sync";
    for (const char* topic : {"/a.b", "/deep/er", "-s/c.d/status"}) {
        child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(p), "-q", "1", "-t", prefix + topic,
                   "-m", "1"});
        ASSERT_EQ(pub.wait_exit(10s), 0) << pub.stderr_text();
    }
    const std::uint64_t unmatched = is_rabbit() ? 3 : 1;
    // All three arrived: the unmatched count, and elsewhere the two rows (each publisher's PUBACK is not the
    // subscriber's delivery, so the last one may come after the count is reached).
    EXPECT_TRUE(scan.wait_for([&] {
        return scan.stats().unmatched >= unmatched && (is_rabbit() || (scan.find("a.b") && scan.find("c.d", 1)));
    }, 10s)) << "unmatched: " << scan.stats().unmatched;
    const auto examples = scan.status().unmatched_examples;
    if (is_rabbit()) {
        EXPECT_EQ(examples, (std::vector<std::string>{prefix + "/a/b", prefix + "/deep/er", prefix + "-s/c/d/status"}));
    } else {
        EXPECT_EQ(examples, (std::vector<std::string>{prefix + "/deep/er"}));
        EXPECT_TRUE(scan.find("a.b")) << "a '.' is an ordinary character here";
        EXPECT_TRUE(scan.find("c.d", 1));
    }
    scan.stop();
}

// aedes answers an MQTT 5 CONNECT with CONNACK 1 (unacceptable protocol version); RabbitMQ closes the socket, which
// a probe connection with MQTT 3.1.1 tells apart from a dead broker.
// Every mode says a sync that is not whole: the events stream as an event, a piped watch on stderr.
TEST(interop, events_and_a_piped_watch_say_how_the_sync_ended) {
    const int p = port();
    const auto prefix = unique_prefix();
    seed(p, prefix, 2);
    const auto templ = prefix + "/{client}";
    const std::string sync = is_rabbit() ? "partial" : "complete";
    child events({SCANNER_BIN, "events", "--broker", broker_uri(p), "--topic", templ});
    EXPECT_TRUE(events.wait_stdout(contains("\"event\":\"scanner\""), 20s)) << events.stderr_text();
    EXPECT_TRUE(events.wait_stdout(contains("\"sync\":\"" + sync + "\""), 20s)) << events.stdout_text();
    if (!is_rabbit()) return;
    child watch({SCANNER_BIN, "--broker", broker_uri(p), "--topic", templ});  // stdout is a pipe: lines
    EXPECT_TRUE(watch.wait_stderr(contains("the table is partial"), 20s)) << watch.stderr_text();
}

TEST(interop, mqtt5_refused_is_reported_as_such) {
    const int p = port();
    const auto r = scanner_once(p, unique_prefix() + "/{client}", {"-V", "5"});
    EXPECT_EQ(r.rc, 4) << r.err;
    EXPECT_NE(r.err.find("refused MQTT 5"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(is_rabbit() ? "accepts MQTT 3.1.1" : "CONNACK return code 1: Unacceptable protocol version"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("use MQTT 3.1.1 (-V 3)"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("is it running"), std::string::npos) << "not taken for a dead broker: " << r.err;
}

// The client ids of the probe connections that reached the broker, for clients whose ids begin with `prefix`, once
// the broker has seen the connection of `marker` (every earlier connection is then recorded too): RabbitMQ logs each
// connection's client id; aedes publishes it on $SYS/<id>/new/clients, which `sys` (an observer of that) saw.
std::vector<std::string> probes_seen(const std::string& prefix, const std::string& marker, observer& sys) {
    std::vector<std::string> found;
    const auto is_probe = [&](const std::string& id) {
        const std::string suffix = "-probe";
        return id.compare(0, prefix.size(), prefix) == 0 && id.size() > suffix.size() &&
               id.compare(id.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (!is_rabbit()) {
        sys.expect_any(contains(" " + marker), "the marker's connection on $SYS");
        for (const auto& line : sys.lines()) {
            const auto id = line.substr(line.find(' ') + 1);
            if (is_probe(id)) found.push_back(id);
        }
        return found;
    }
    const auto logs = std::filesystem::path(env_or_fail(BROKER_DIR_ENV)) / "log";
    const auto deadline = steady::now() + 10s;
    for (;;) {
        std::vector<std::string> ids;
        bool marked = false;
        for (const auto& file : std::filesystem::directory_iterator(logs)) {
            std::ifstream in(file.path());
            for (std::string line; std::getline(in, line);) {
                const auto at = line.find("client id: ");
                if (at == std::string::npos) continue;
                auto id = line.substr(at + 11);
                id = id.substr(0, id.find(')'));
                if (id == marker) marked = true;
                if (is_probe(id)) ids.push_back(id);
            }
        }
        if (marked) return ids;
        if (steady::now() > deadline) {
            ADD_FAILURE() << "RabbitMQ's log never showed the marker's connection " << marker << " in " << logs;
            return ids;
        }
        std::this_thread::sleep_for(50ms);  // polling a log file: no event to wait on
    }
}

// A fleet refused MQTT 5 is told why by every client, and the process asks the broker at most once whether it speaks
// MQTT 3.1.1 (before, every failure of every client opened a probe connection, on the thread that runs every
// client's tasks).
TEST(interop, an_mqtt5_fleet_refused_is_told_why_with_one_probe_per_process) {
    const int p = port();
    const auto prefix = unique_prefix();
    observer sys(p, "$SYS/+/new/clients");  // aedes only; RabbitMQ has no $SYS
    child fleet({SENSOR_BIN, "--broker", broker_uri(p), "--topic", prefix + "/{client}", "--name", prefix, "--count",
                 "3", "-V", "5"});
    for (int i = 0; i < 3; ++i)  // each client says it
        ASSERT_TRUE(fleet.wait_stderr(contains("refused MQTT 5"), 30s))
            << "refusal " << i + 1 << " of 3:\n" << fleet.stderr_text();
    EXPECT_NE(fleet.stderr_text().find("use MQTT 3.1.1 (-V 3)"), std::string::npos) << fleet.stderr_text();
    // ... once: the tries go on (0.5 s doubling: four more of each client in 6 s), the same line does not.
    EXPECT_FALSE(fleet.wait_stderr(contains("refused MQTT 5"), 6s)) << "said again:\n" << fleet.stderr_text();
    fleet.signal(SIGINT);
    EXPECT_TRUE(fleet.wait_exit(15s)) << fleet.stderr_text();
    observer marker(p, prefix + "/marker", {"-i", prefix + "-marker"});
    const auto probes = probes_seen(prefix, prefix + "-marker", sys);
    // aedes answers with a CONNACK, which says it all; RabbitMQ closes the socket: one probe for the process.
    EXPECT_EQ(probes.size(), is_rabbit() ? 1u : 0u) << "probe connections: " << testing::PrintToString(probes);
}

}  // namespace
