// The tools as an operator runs them: one configuration file for both (the broker's keys at the top, each tool's
// own in its section), --version, passwords from files, and a history that another user can read.
#include "harness.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

using namespace harness;
using json = nlohmann::json;

namespace {

// A directory of the test's own, readable by every user (a reader that is not the writer needs to enter it).
std::string test_dir(const std::string& prefix) {
    const std::string dir = std::string(TEST_TMP_DIR) + "/" + prefix;
    std::filesystem::create_directories(dir);
    ::chmod(dir.c_str(), 0755);
    return dir;
}

std::string write_file(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
    return path;
}

TEST(configuration, version_on_every_tool_and_in_the_services_info_and_metrics) {
    for (const char* tool : {SENSOR_BIN, SCANNER_BIN}) {
        const auto r = run_to_end({tool, "--version"});
        EXPECT_EQ(r.code, 0) << tool << ": " << r.err;
        EXPECT_NE(r.out.find(std::string(" ") + PROJECT_VERSION), std::string::npos) << tool << ": " << r.out;
    }
    child svc({SCANNER_BIN, "serve", "--broker", broker_uri(broker_port()), "--topic", unique_prefix() + "/{client}",
               "--db", db_path(), "--listen", "127.0.0.1:0"});
    const auto line = svc.wait_stderr(contains("dashboard: "), 15s);
    ASSERT_TRUE(line) << svc.stderr_text();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(*line, m, std::regex(R"(http://[^:/]+:(\d+)/)"))) << *line;
    httplib::Client http("127.0.0.1", std::stoi(m[1]));
    http.set_read_timeout(10, 0);
    const auto info = http.Get("/api/info");
    ASSERT_TRUE(info);
    EXPECT_EQ(json::parse(info->body)["version"], PROJECT_VERSION) << info->body;
    const auto metrics = http.Get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_NE(metrics->body.find(std::string("mqtt_presence_build_info{version=\"") + PROJECT_VERSION + "\"} 1"),
              std::string::npos)
        << metrics->body.substr(0, 600);
}

TEST(configuration, one_file_serves_the_sensor_and_every_mode_of_the_scanner) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto dir = test_dir(prefix);
    const auto db = dir + "/history.db";
    // Every key the service needs, and keys only other modes use: `once` and `history` read the same file.
    const auto config = write_file(dir + "/config.toml",
                                   "# the broker, for both tools\n"
                                   "host = \"127.0.0.1\"\n"
                                   "port = " + std::to_string(port) + "\n"
                                   "\n[scanner]\n"
                                   "topic = [\"" + prefix + "/{client}\"]\n"
                                   "db = \"" + db + "\"\n"
                                   "listen = \"off\"\n"
                                   "notary = true\n"
                                   "keep = \"30d\"\n"
                                   "expect = [\"kitch*=2h\", \"10m\"]\n"
                                   "\n[sensor]\n"
                                   "topic = \"" + prefix + "/{client}\"\n"
                                   "name = \"kitchen\"\n"
                                   "format = \"json\"\n");
    child serve({SCANNER_BIN, "serve", "--config", config});
    ASSERT_TRUE(serve.wait_stderr(contains("synced"), 15s)) << serve.stderr_text();
    EXPECT_NE(serve.stderr_text().find("notary on"), std::string::npos) << "notary = true: " << serve.stderr_text();
    child sensor({SENSOR_BIN, "--config", config});
    ASSERT_TRUE(sensor.wait_stderr(contains("kitchen: connected"), 15s)) << sensor.stderr_text();

    // The environment names the file just as well; the command line wins over it.
    setenv("MQTT_PRESENCE_CONFIG", config.c_str(), 1);
    const auto once = run_to_end({SCANNER_BIN, "once", "--format", "json"});
    EXPECT_EQ(once.code, 0) << once.err;
    const auto snapshot = json::parse(once.out, nullptr, false);
    ASSERT_FALSE(snapshot.is_discarded()) << once.out;
    ASSERT_EQ(snapshot["clients"].size(), 1u) << once.out;
    EXPECT_EQ(snapshot["clients"][0]["state"], "connected") << once.out;
    EXPECT_TRUE(snapshot["clients"][0]["ip"].is_string()) << "[sensor] format = json carries the IP: " << once.out;
    EXPECT_EQ(snapshot["clients"][0]["expect_s"], 7200.0) << "expect from the file, its first fitting glob: " << once.out;
    sensor.signal(SIGTERM);
    ASSERT_EQ(sensor.wait_exit(15s), 0) << sensor.stderr_text();
    const auto history_has = [&] {
        const auto h = run_to_end({SCANNER_BIN, "history", "kitchen", "--format", "json"});  // --db from the file
        return h.code == 0 && h.out.find("\"disconnected\"") != std::string::npos;
    };
    const auto until = steady::now() + 10s;
    while (!history_has() && steady::now() < until) std::this_thread::sleep_for(100ms);  // another process writes
    EXPECT_TRUE(history_has()) << "history kitchen read " << db << " through MQTT_PRESENCE_CONFIG";
    // A mode's own option from the command line still goes with its mode only.
    const auto misplaced = run_to_end({SCANNER_BIN, "once", "--listen", "127.0.0.1:0"});
    EXPECT_EQ(misplaced.code, 2);
    EXPECT_NE(misplaced.err.find("--listen goes with serve"), std::string::npos) << misplaced.err;
    unsetenv("MQTT_PRESENCE_CONFIG");
    serve.signal(SIGTERM);
    EXPECT_EQ(serve.wait_exit(15s), 0) << serve.stderr_text();
}

TEST(configuration, a_bad_file_or_key_is_a_clear_error_with_exit_2) {
    const auto dir = test_dir(unique_prefix());
    struct bad_case {
        const char* tool;
        std::string text;
        std::string says;
    };
    for (const auto& bad : std::vector<bad_case>{
             {SCANNER_BIN, "prot = 1883\n", "no option prot"},
             {SENSOR_BIN, "[sensor]\nnmae = \"x\"\n", "no option nmae"},
             {SCANNER_BIN, "[scaner]\ndb = \"x\"\n", "no section [scaner]"},
             {SENSOR_BIN, "db = \"x\"\n", "no option db"},  // the scanner's key outside [scanner]
             {SCANNER_BIN, "port = \"many\"\n", "port"},
             {SCANNER_BIN, "[scanner]\nolder-than = \"1d\"\n", "not allowed in a configuration file"},
             {SENSOR_BIN, "[sensor]\nname = \"\"\n", "--name is empty"}}) {
        const auto file = write_file(dir + "/bad.toml", bad.text);
        const auto r = run_to_end({bad.tool, "--config", file, "--broker", "tcp://127.0.0.1:1"});
        EXPECT_EQ(r.code, 2) << bad.text << r.err;
        EXPECT_NE(r.err.find(bad.says), std::string::npos) << bad.text << ": " << r.err;
    }
    const auto missing = run_to_end({SCANNER_BIN, "--config", dir + "/none.toml", "once"});
    EXPECT_EQ(missing.code, 2);
    EXPECT_NE(missing.err.find("none.toml"), std::string::npos) << missing.err;
    setenv("MQTT_PRESENCE_CONFIG", (dir + "/none.toml").c_str(), 1);  // named, so it must be there
    const auto from_env = run_to_end({SENSOR_BIN, "--broker", "tcp://127.0.0.1:1"});
    unsetenv("MQTT_PRESENCE_CONFIG");
    EXPECT_EQ(from_env.code, 2) << from_env.err;
    // Empty values, on either tool, are refused by name rather than taken for "none".
    for (const auto& empty : std::vector<std::vector<std::string>>{
             {SCANNER_BIN, "once", "--require", ""}, {SCANNER_BIN, "once", "-i", ""}, {SCANNER_BIN, "history", "x",
             "--db", ""}, {SCANNER_BIN, "serve", "--alert-webhook", ""}, {SENSOR_BIN, "-u", ""},
             {SENSOR_BIN, "--ip", ""}, {SENSOR_BIN, "--client-id", ""}}) {
        auto argv = empty;
        argv.insert(argv.begin() + 1, {"--broker", "tcp://127.0.0.1:1"});
        const auto r = run_to_end(argv);
        EXPECT_EQ(r.code, 2) << argv.back() << " " << argv[argv.size() - 2] << ": " << r.err;
        EXPECT_NE(r.err.find(" is empty"), std::string::npos) << r.err;
    }
    const auto empty_name = run_to_end({SENSOR_BIN, "--broker", "tcp://127.0.0.1:1", "-n", ""});
    EXPECT_EQ(empty_name.code, 2);
    EXPECT_NE(empty_name.err.find("--name is empty"), std::string::npos) << empty_name.err;
    const auto no_pw_file = run_to_end({SENSOR_BIN, "--broker", "tcp://127.0.0.1:1", "--pw-file", dir + "/no.pw"});
    EXPECT_EQ(no_pw_file.code, 2);
    EXPECT_NE(no_pw_file.err.find("no.pw: cannot read it"), std::string::npos) << no_pw_file.err;
    const auto no_http_pw = run_to_end({SCANNER_BIN, "serve", "--db", dir + "/h.db", "--http-user", "u",
                                        "--http-pw-file", dir + "/no.pw", "--broker", "tcp://127.0.0.1:1"});
    EXPECT_EQ(no_http_pw.code, 2);
    EXPECT_NE(no_http_pw.err.find("--http-pw-file"), std::string::npos) << no_http_pw.err;

    // A key two modes share takes the mode that reads it from a file: `sort` is uptime's, never watch's (whose
    // --sort is given on the command line only), so a watch with that file runs (and finds no broker: exit 4).
    const auto shared = write_file(dir + "/shared.toml", "[scanner]\nsort = \"uptime\"\n");
    for (const auto& mode : std::vector<std::vector<std::string>>{{}, {"watch"}, {"once"}}) {
        std::vector<std::string> argv{SCANNER_BIN, "--config", shared, "--broker", "tcp://127.0.0.1:1"};
        argv.insert(argv.end(), mode.begin(), mode.end());
        const auto r = run_to_end(argv);
        EXPECT_EQ(r.code, 4) << (mode.empty() ? "(watch)" : mode[0]) << ": " << r.err;
    }
    const auto uptime = run_to_end({SCANNER_BIN, "--config", shared, "uptime", "--db", dir + "/none.db"});
    EXPECT_EQ(uptime.code, 2) << "uptime took the key and then found no history: " << uptime.err;
    EXPECT_EQ(uptime.err.find("sort"), std::string::npos) << uptime.err;
}

// The sensor's default name is the short host name; a '.' in a name is read differently on RabbitMQ, and said.
TEST(configuration, a_dotted_sensor_name_is_warned_about) {
    child dotted({SENSOR_BIN, "--broker", broker_uri(broker_port()), "--topic", unique_prefix() + "/{client}", "-n",
                  "kitchen.lan"});
    EXPECT_TRUE(dotted.wait_stderr(contains("has a '.'"), 10s)) << dotted.stderr_text();
    EXPECT_NE(dotted.stderr_text().find("RabbitMQ"), std::string::npos) << dotted.stderr_text();
    // The default name under a dotted host name (a UTS namespace of its own, where the suite may make one): without
    // it, a machine whose name has no dot could not show a default name that keeps one.
    std::vector<std::string> argv{SENSOR_BIN, "--broker", broker_uri(broker_port()), "--topic",
                                  unique_prefix() + "/{client}"};
    if (run_to_end({"unshare", "--uts", "true"}).code == 0)
        argv.insert(argv.begin(),
                    {"unshare", "--uts", "sh", "-c", "hostname kitchen.example.lan && exec \"$0\" \"$@\""});
    child plain(argv);
    const auto started = plain.wait_stderr(contains("status topic"), 10s);
    ASSERT_TRUE(started) << plain.stderr_text();
    const auto topic = started->substr(started->find("status topic ") + 13);
    EXPECT_EQ(topic.find('.'), std::string::npos) << "the default name is the short host name: " << topic;
    EXPECT_EQ(plain.stderr_text().find("has a '.'"), std::string::npos) << plain.stderr_text();
}

TEST(configuration, the_brokers_password_from_a_file) {
    private_broker acl("start-acl");
    const auto dir = test_dir(unique_prefix());
    const auto good = write_file(dir + "/fleet1.pw", "secret\n");
    const auto wrong = write_file(dir + "/wrong.pw", "not-it\n");
    child sensor({SENSOR_BIN, "--broker", broker_uri(acl.port()), "-u", "fleet1", "--pw-file", good, "-n", "fleet1"});
    EXPECT_TRUE(sensor.wait_stderr(contains("fleet1: connected"), 15s)) << sensor.stderr_text();
    child refused(
        {SENSOR_BIN, "--broker", broker_uri(acl.port()), "-u", "fleet1", "--pw-file", wrong, "-n", "fleet1x"});
    EXPECT_TRUE(refused.wait_stderr(contains("Not authorized"), 15s)) << refused.stderr_text();
}

// The service's user writes the history; an operator's shell (another user, no write access to the directory)
// reads it, also after the service stopped and removed its -shm index. Under /tmp, with a copy of the tool: the
// clone may live where another user cannot enter (a home of mode 0700).
TEST(configuration, another_user_reads_the_history_read_only) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the reader as another user (setpriv)";
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto dir = (std::filesystem::temp_directory_path() / prefix).string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    ::chmod(dir.c_str(), 0755);
    const auto db = dir + "/history.db";
    const auto tool = dir + "/mqtt-presence-scanner";
    std::filesystem::copy_file(SCANNER_BIN, tool);
    ::chmod(tool.c_str(), 0755);
    child serve({SCANNER_BIN, "serve", "--broker", broker_uri(port), "--topic", prefix + "/{client}", "--db", db,
                 "--listen", "off"});
    ASSERT_TRUE(serve.wait_stderr(contains("synced"), 15s)) << serve.stderr_text();
    publish_retained(port, prefix + "/pantry", "1");
    const std::vector<std::string> as_nobody{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                             tool, "history", "pantry", "--db", db, "--format", "json"};
    const auto reads_pantry = [&] {
        const auto r = run_to_end(as_nobody);
        return r.code == 0 && r.out.find("\"connected\"") != std::string::npos;
    };
    const auto until = steady::now() + 10s;
    while (!reads_pantry() && steady::now() < until) std::this_thread::sleep_for(100ms);  // another process writes
    EXPECT_TRUE(reads_pantry()) << "while the service runs: " << run_to_end(as_nobody).err;
    serve.signal(SIGTERM);
    ASSERT_EQ(serve.wait_exit(15s), 0) << serve.stderr_text();
    ASSERT_FALSE(std::filesystem::exists(db + "-shm")) << "the service's stop removes its index";
    const auto after = run_to_end(as_nobody);
    EXPECT_EQ(after.code, 0) << "after the service stopped: " << after.err;
    EXPECT_NE(after.out.find("\"connected\""), std::string::npos) << after.out;
    EXPECT_FALSE(std::filesystem::exists(db + "-shm")) << "the reader wrote nothing beside the file";
    std::filesystem::remove_all(dir);
}

}  // namespace
