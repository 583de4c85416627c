// The sensor and the scanner on another broker than mosquitto: built twice, for RabbitMQ (its MQTT plugin) and for
// aedes (npm), each started once by its fixture (scripts/test-rabbitmq, scripts/test-aedes). BROKER names it and
// BROKER_DIR_ENV the variable that holds the fixture's folder.
//
// What differs: RabbitMQ delivers no retained message to a wildcard subscription, so a snapshot is partial and says
// so, while named clients (asked for by their exact topics) are answered right; aedes sends a SUBSCRIBE's retained
// messages as a stream after its SUBACK, so the sync marker comes back first and only the retained tail ends the
// burst. Neither speaks MQTT 5, which is reported as a refusal, not as a dead broker.
#include "harness.hpp"

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

TEST(interop, mqtt5_refused_is_reported_as_such) {
    const int p = port();
    const auto r = scanner_once(p, unique_prefix() + "/{client}", {"-V", "5"});
    EXPECT_EQ(r.rc, 4) << r.err;
    EXPECT_NE(r.err.find("refused MQTT 5"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("accepts MQTT 3.1.1"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("is it running"), std::string::npos) << "not taken for a dead broker: " << r.err;
}

}  // namespace
