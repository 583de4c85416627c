// TLS and username/password, passed through to Paho by the sensor and the scanner, against a mosquitto that
// requires both (scripts/test-broker start-secure: a generated CA, user alice/secret).
#include <cstdlib>
#include <fstream>

#include "harness.hpp"

using namespace harness;

namespace {

class secure_broker : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = std::string(TEST_TMP_DIR) + "/secure-" + std::to_string(getpid());
        child start({TEST_BROKER_SCRIPT, "start-secure", dir_});
        // Not an ASSERT: a fatal failure here would skip the tests (and a skipped test passes); SetUp fails them.
        if (start.wait_exit(60s) != 0) {
            start_error_ = "the secure broker did not start: " + start.stderr_text();
            return;
        }
        std::ifstream(dir_ + "/tls_port") >> tls_port_;
        port_ = broker_port(dir_);
        setenv("MQTT_PRESENCE_TEST_PW", "secret", 1);
        setenv("MQTT_PRESENCE_TEST_BAD_PW", "wrong", 1);
    }
    static void TearDownTestSuite() {
        child stop({TEST_BROKER_SCRIPT, "stop", dir_});
        stop.wait_exit(20s);
    }
    void SetUp() override {
        if (!start_error_.empty()) FAIL() << start_error_;
    }
    static std::string ca() { return dir_ + "/ca.crt"; }
    static std::string tls_uri() { return "ssl://127.0.0.1:" + std::to_string(tls_port_); }
    static inline std::string dir_, start_error_;
    static inline int port_ = 0;
    static inline int tls_port_ = 0;
};

TEST_F(secure_broker, sensor_and_scanner_log_in_with_a_password) {
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    observer obs(port_, topic, {"-u", "alice", "-P", "secret"});
    child sensor({SENSOR_BIN, "--broker", broker_uri(port_), "--name", name, "-u", "alice", "--pw-env",
                  "MQTT_PRESENCE_TEST_PW"});
    obs.expect(topic, equals("1"), "the sensor's status, published with credentials");
    child scan({SCANNER_BIN, "--broker", broker_uri(port_), "-u", "alice", "--pw-env", "MQTT_PRESENCE_TEST_PW",
                "--once", "--require", name});
    EXPECT_EQ(scan.wait_exit(30s), 0) << scan.stderr_text();

    child refused({SCANNER_BIN, "--broker", broker_uri(port_), "-u", "alice", "--pw-env",
                   "MQTT_PRESENCE_TEST_BAD_PW", "--once"});
    EXPECT_EQ(refused.wait_exit(30s), 4) << "a wrong password is an unreachable broker";
    // The broker's refusal is named, not taken for a broker that is down.
    EXPECT_NE(refused.stderr_text().find("refused the connection: Not authorized (CONNACK return code 5); check the "
                                         "user name and password"),
              std::string::npos)
        << refused.stderr_text();
    EXPECT_EQ(refused.stderr_text().find("is it running"), std::string::npos) << refused.stderr_text();
    child anonymous({SENSOR_BIN, "--broker", broker_uri(port_), "--name", name + "-anon"});
    EXPECT_TRUE(anonymous.wait_stderr(contains("refused the connection: Not authorized"), 15s))
        << "the refusal is logged:\n" << anonymous.stderr_text();
    child anonymous5({SENSOR_BIN, "--broker", broker_uri(port_), "--name", name + "-anon5", "-V", "5"});
    EXPECT_TRUE(anonymous5.wait_stderr(contains("refused the connection: Not authorized (CONNACK reason code 0x87)"),
                                       15s))
        << "MQTT 5's reason code, named:\n" << anonymous5.stderr_text();
}

TEST_F(secure_broker, sensor_and_scanner_over_tls) {
    const auto name = unique_prefix();
    const auto topic = "sensors/connected/" + name;
    observer obs(tls_port_, topic, {"--cafile", ca(), "-u", "alice", "-P", "secret"});
    child sensor({SENSOR_BIN, "--broker", tls_uri(), "--cafile", ca(), "--name", name, "--format", "json", "-u",
                  "alice", "--pw-env", "MQTT_PRESENCE_TEST_PW"});
    obs.expect(topic, contains("\"status\":1"), "the sensor's status over TLS");
    child scan({SCANNER_BIN, "--broker", tls_uri(), "--cafile", ca(), "-u", "alice", "--pw-env",
                "MQTT_PRESENCE_TEST_PW", "--once", "--require", name});
    EXPECT_EQ(scan.wait_exit(30s), 0) << scan.stderr_text();
    sensor.signal(SIGINT);
    obs.expect(topic, contains("\"reason\":\"clean\""), "the clean stop over TLS");
    EXPECT_EQ(sensor.wait_exit(10s), 0);

    // A server certificate from a CA we do not trust is refused.
    child untrusted({SCANNER_BIN, "--broker", tls_uri(), "--cafile", dir_ + "/server.crt", "-u", "alice",
                     "--pw-env", "MQTT_PRESENCE_TEST_PW", "--once"});
    EXPECT_EQ(untrusted.wait_exit(30s), 4) << untrusted.stderr_text();
}

}  // namespace

namespace {

// The anti-spoofing recipe of docs/operations.md (scripts/test-broker start-acl): each user writes only sensors/connected/<user>,
// the monitor only reads, the admin may clear.
class acl_broker : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = std::string(TEST_TMP_DIR) + "/acl-" + std::to_string(getpid());
        child start({TEST_BROKER_SCRIPT, "start-acl", dir_});
        if (start.wait_exit(60s) != 0) {  // see secure_broker: fail the tests, never skip them
            start_error_ = "the ACL broker did not start: " + start.stderr_text();
            return;
        }
        port_ = broker_port(dir_);
        setenv("MQTT_PRESENCE_TEST_PW", "secret", 1);
    }
    static void TearDownTestSuite() {
        child stop({TEST_BROKER_SCRIPT, "stop", dir_});
        stop.wait_exit(20s);
    }
    void SetUp() override {
        if (!start_error_.empty()) FAIL() << start_error_;
    }
    static std::vector<std::string> as(const std::string& user) {
        return {"--broker", broker_uri(port_), "-u", user, "--pw-env", "MQTT_PRESENCE_TEST_PW"};
    }
    static inline std::string dir_, start_error_;
    static inline int port_ = 0;
};

TEST_F(acl_broker, a_second_users_forged_status_is_refused_and_purge_reports_only_what_it_cleared) {
    observer obs(port_, "sensors/connected/+", {"-u", "auditor", "-P", "secret"});
    auto args = as("s1");
    args.insert(args.begin(), SENSOR_BIN);
    args.insert(args.end(), {"--name", "s1"});
    child s1(args);
    obs.expect("sensors/connected/s1", equals("1"), "s1's own status");

    // mallory forges s1's death, then writes her own status: the broker handles her messages in order, so once
    // her own arrives, the forgery has been judged.
    for (const auto& [topic, payload] : std::vector<std::pair<std::string, std::string>>{
             {"sensors/connected/s1", "0"}, {"sensors/connected/mallory", "1"}}) {
        child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port_), "-u", "mallory", "-P", "secret",
                   "-r", "-q", "1", "-t", topic, "-m", payload});
        ASSERT_EQ(pub.wait_exit(10s), 0) << pub.stderr_text();
    }
    obs.expect("sensors/connected/mallory", equals("1"), "mallory's own status");
    for (const auto& p : obs.payloads("sensors/connected/s1")) EXPECT_EQ(p, "1") << "a forged status got through";
    auto check = as("monitor");
    check.insert(check.begin(), SCANNER_BIN);
    check.insert(check.end(), {"--once", "--require", "s1"});
    child once(check);
    EXPECT_EQ(once.wait_exit(20s), 0) << once.stderr_text();

    // s2 stops cleanly: a retained "0" to purge.
    args = as("s2");
    args.insert(args.begin(), SENSOR_BIN);
    args.insert(args.end(), {"--name", "s2"});
    child s2(args);
    obs.expect("sensors/connected/s2", equals("1"), "s2 connected");
    s2.signal(SIGINT);
    obs.expect("sensors/connected/s2", equals("0"), "s2's clean stop");
    ASSERT_EQ(s2.wait_exit(10s), 0);

    // The monitor may not write: the broker acknowledges and drops its clears; purge says so, exit 1.
    auto purge = as("monitor");
    purge.insert(purge.begin(), SCANNER_BIN);
    purge.push_back("--purge-all-disconnected");
    child refused(purge);
    EXPECT_EQ(refused.wait_exit(30s), 1) << refused.stderr_text();
    EXPECT_EQ(refused.stdout_text().find("cleared sensors/connected/s2"), std::string::npos) << refused.stdout_text();
    EXPECT_NE(refused.stderr_text().find("not cleared"), std::string::npos) << refused.stderr_text();
    EXPECT_NE(refused.stderr_text().find("sensors/connected/s2"), std::string::npos) << refused.stderr_text();

    // The admin may: cleared, and said so.
    purge = as("admin");
    purge.insert(purge.begin(), SCANNER_BIN);
    purge.push_back("--purge-all-disconnected");
    child cleared(purge);
    EXPECT_EQ(cleared.wait_exit(30s), 0) << cleared.stderr_text();
    EXPECT_NE(cleared.stdout_text().find("cleared sensors/connected/s2"), std::string::npos) << cleared.stdout_text();
    obs.expect("sensors/connected/s2", equals("(null)"), "the broker's cleared status (mosquitto_sub prints an empty payload so)");
}

// The recipe ties a status topic to a user, not a client id to a user: a running monitor and a cron `once`
// under one user keep their own connections, and a fleet under one user (each sensor its own client id) writes
// below its user name without fighting.
TEST_F(acl_broker, two_monitors_and_a_fleet_under_one_user_each_keep_their_connections) {
    auto args = as("fleet1");
    args.insert(args.begin(), SENSOR_BIN);
    args.insert(args.end(), {"--name", "sim", "--count", "5", "--topic", "sensors/connected/fleet1/{client}"});
    child fleet(args);
    auto watch_args = as("monitor");
    watch_args.insert(watch_args.begin(), SCANNER_BIN);
    watch_args.insert(watch_args.end(), {"--topic", "sensors/connected/{client+}", "--events"});
    child watching(watch_args);
    ASSERT_TRUE(watching.wait_stdout(contains("\"client\":\"fleet1/sim-000005\""), 15s))
        << watching.stdout_text() << watching.stderr_text();
    for (int run = 0; run < 2; ++run) {  // a cron job beside the running monitor, under the same user
        auto once_args = as("monitor");
        once_args.insert(once_args.begin(), SCANNER_BIN);
        once_args.insert(once_args.end(), {"once", "--topic", "sensors/connected/{client+}", "--require",
                                           "fleet1/sim-000001,fleet1/sim-000005"});
        child once(once_args);
        EXPECT_EQ(once.wait_exit(20s), 0) << once.stdout_text() << once.stderr_text();
    }
    // The running monitor was not taken over: a probe round trip after the cron jobs, and no loss said.
    {
        child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port_), "-u", "fleet1", "-P", "secret",
                   "-r", "-q", "1", "-t", "sensors/connected/fleet1/late", "-m", "1"});
        ASSERT_EQ(pub.wait_exit(10s), 0) << pub.stderr_text();
    }
    EXPECT_TRUE(watching.wait_stdout(contains("\"client\":\"fleet1/late\""), 10s)) << watching.stdout_text();
    EXPECT_EQ(watching.stderr_text().find("connection lost"), std::string::npos) << watching.stderr_text();
    EXPECT_EQ(fleet.stderr_text().find("connection lost"), std::string::npos) << fleet.stderr_text();
    EXPECT_EQ(fleet.stderr_text().find("conflict"), std::string::npos) << fleet.stderr_text();
}

// A monitor the ACL lets write its sync marker but not its sync tail: the retained statuses that came through the
// wildcard show the broker sends them, so the missing tail is named as refused and the marker ends the sync.
TEST_F(acl_broker, a_refused_sync_tail_is_named_and_the_marker_ends_the_sync) {
    auto args = as("s1");
    args.insert(args.begin(), SENSOR_BIN);
    args.insert(args.end(), {"--name", "s1"});
    child s1(args);
    observer obs(port_, "sensors/connected/+", {"-u", "auditor", "-P", "secret"});
    obs.expect("sensors/connected/s1", equals("1"), "s1's own status");
    auto once_args = as("tailless");
    once_args.insert(once_args.begin(), SCANNER_BIN);
    once_args.insert(once_args.end(), {"once", "--format", "json"});
    child once(once_args);
    EXPECT_EQ(once.wait_exit(20s), 0) << once.stderr_text();
    EXPECT_NE(once.stderr_text().find("refused the scanner's publish"), std::string::npos) << once.stderr_text();
    EXPECT_EQ(once.stderr_text().find("RabbitMQ"), std::string::npos) << once.stderr_text();
    EXPECT_NE(once.stdout_text().find("\"s1\""), std::string::npos) << once.stdout_text();
}

}  // namespace
