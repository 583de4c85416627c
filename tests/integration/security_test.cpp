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
        ASSERT_EQ(start.wait_exit(60s), 0) << start.stderr_text();
        std::ifstream(dir_ + "/tls_port") >> tls_port_;
        port_ = broker_port(dir_);
        setenv("MQTT_PRESENCE_TEST_PW", "secret", 1);
        setenv("MQTT_PRESENCE_TEST_BAD_PW", "wrong", 1);
    }
    static void TearDownTestSuite() {
        child stop({TEST_BROKER_SCRIPT, "stop", dir_});
        stop.wait_exit(20s);
    }
    static std::string ca() { return dir_ + "/ca.crt"; }
    static std::string tls_uri() { return "ssl://127.0.0.1:" + std::to_string(tls_port_); }
    static inline std::string dir_;
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
    EXPECT_NE(refused.stderr_text().find("cannot connect"), std::string::npos) << refused.stderr_text();
    child anonymous({SENSOR_BIN, "--broker", broker_uri(port_), "--name", name + "-anon"});
    EXPECT_TRUE(anonymous.wait_stderr(contains("failed"), 15s)) << "the refusal is logged:\n"
                                                                 << anonymous.stderr_text();
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
