// Several brokers in one view (--broker NAME=URI, repeated) against three private brokers at once: two mosquitto and
// an aedes. Each row carries its broker (the same name on two brokers is two rows) in every format; a broker that
// cannot be read is named, and the snapshot says it is not whole (exit 5, 4 when none can be read); events carry the
// broker of each change.
#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

using namespace harness;
using json = nlohmann::json;

namespace {

// A private aedes (scripts/test-aedes), like private_broker's mosquitto.
class private_aedes {
public:
    private_aedes() : dir_(std::string(TEST_TMP_DIR) + "/" + unique_prefix() + "-aedes") {
        child start({script(), "start", dir_});
        if (start.wait_exit(60s) != 0) throw std::runtime_error("aedes did not start: " + start.stderr_text());
        port_ = broker_port(dir_);
    }
    ~private_aedes() {
        child stop({script(), "stop", dir_});
        stop.wait_exit(20s);
    }
    [[nodiscard]] int port() const { return port_; }

private:
    static std::string script() { return std::string(TEST_SOURCE_DIR) + "/scripts/test-aedes"; }
    std::string dir_;
    int port_ = 0;
};

// Three brokers, each with its own clients; "kitchen" on two of them.
struct three_brokers {
    three_brokers() : templ(prefix + "/{client}") {
        publish_retained(a.port(), prefix + "/kitchen", "1");
        publish_retained(a.port(), prefix + "/garage", "0");
        publish_retained(b.port(), prefix + "/kitchen", "0");
        publish_retained(c.port(), prefix + "/pump", "1");
    }
    std::vector<std::string> once(const std::vector<std::string>& extra) const {
        std::vector<std::string> argv{SCANNER_BIN,   "once",
                                      "--broker",    "site-a=" + broker_uri(a.port()),
                                      "--broker",    "site-b=" + broker_uri(b.port()),
                                      "--broker",    "edge=" + broker_uri(c.port()),
                                      "--topic",     templ};
        argv.insert(argv.end(), extra.begin(), extra.end());
        return argv;
    }
    private_broker a, b;
    private_aedes c;
    std::string prefix = unique_prefix();
    std::string templ;
};

std::set<std::string> keys_of(const json& snapshot) {
    std::set<std::string> keys;
    for (const auto& row : snapshot["clients"])
        keys.insert(row["broker"].get<std::string>() + "/" + row["client"].get<std::string>() + "=" +
                    row["state"].get<std::string>());
    return keys;
}

TEST(several_brokers, once_reads_three_brokers_and_keys_each_row_by_its_broker) {
    three_brokers net;
    const auto r = run_to_end(net.once({"--format", "json"}));
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = json::parse(r.out);
    EXPECT_EQ(keys_of(j), (std::set<std::string>{"site-a/kitchen=connected", "site-a/garage=disconnected",
                                                  "site-b/kitchen=disconnected", "edge/pump=connected"}))
        << "the same name on two brokers is two rows";
    EXPECT_EQ(j["counts"]["connected"], 2);
    EXPECT_EQ(j["counts"]["disconnected"], 2);
    ASSERT_EQ(j["brokers"].size(), 3u);
    for (const auto& b : j["brokers"]) {
        EXPECT_EQ(b["reachable"], true) << b.dump();
        EXPECT_EQ(b["complete"], true) << b.dump();
        EXPECT_EQ(b["scanner"]["sync"], "complete") << b.dump();
    }
    EXPECT_EQ(j["brokers"][2]["name"], "edge");
    EXPECT_EQ(j["brokers"][2]["uri"], broker_uri(net.c.port()));

    const auto csv = run_to_end(net.once({"--format", "csv"}));
    ASSERT_EQ(csv.code, 0) << csv.err;
    EXPECT_EQ(csv.out.rfind("broker,client,state,", 0), 0u) << csv.out;
    EXPECT_NE(csv.out.find("\nsite-b,kitchen,disconnected,"), std::string::npos) << csv.out;

    const auto prom = run_to_end(net.once({"--format", "prometheus"}));
    ASSERT_EQ(prom.code, 0) << prom.err;
    EXPECT_NE(prom.out.find("mqtt_presence_up{broker=\"edge\",client=\"pump\""), std::string::npos) << prom.out;
    EXPECT_NE(prom.out.find("mqtt_presence_broker_complete{broker=\"site-a\"} 1"), std::string::npos) << prom.out;

    const auto table = run_to_end(net.once({"--format", "table"}));
    ASSERT_EQ(table.code, 0) << table.err;
    EXPECT_EQ(table.out.rfind("BROKER", 0), 0u) << "the table's first column names the broker:\n" << table.out;
    EXPECT_NE(table.out.find("site-b  kitchen"), std::string::npos) << table.out;
}

TEST(several_brokers, a_broker_that_cannot_be_read_is_named_and_the_snapshot_says_it_is_not_whole) {
    three_brokers net;
    net.b.crash();
    auto r = run_to_end(net.once({"--format", "json"}));
    EXPECT_EQ(r.code, 5) << "some of the brokers: not whole\n" << r.err;
    EXPECT_TRUE(r.out.empty()) << "no table without --allow-partial: " << r.out;
    EXPECT_NE(r.err.find("site-b: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("1 of 3 brokers not read whole"), std::string::npos) << r.err;

    r = run_to_end(net.once({"--format", "json", "--allow-partial"}));
    EXPECT_EQ(r.code, 5) << r.err;
    const auto j = json::parse(r.out);
    EXPECT_EQ(keys_of(j), (std::set<std::string>{"site-a/kitchen=connected", "site-a/garage=disconnected",
                                                  "edge/pump=connected"}));
    EXPECT_EQ(j["brokers"][1]["name"], "site-b");
    EXPECT_EQ(j["brokers"][1]["reachable"], false);
    EXPECT_EQ(j["brokers"][1]["complete"], false);
    EXPECT_TRUE(j["brokers"][1]["scanner"].is_null());
    const auto table = run_to_end(net.once({"--format", "table", "--allow-partial"}));
    EXPECT_NE(table.out.find("site-b (" + broker_uri(net.b.port()) + "): unreachable"), std::string::npos)
        << "the human table says who is missing:\n" << table.out;

    net.b.restart();  // without persistence: its retained store is gone
    r = run_to_end(net.once({"--format", "json"}));
    ASSERT_EQ(r.code, 0) << "back, whole again: " << r.err;
    const auto back = json::parse(r.out);
    EXPECT_EQ(back["brokers"][1]["complete"], true);
    EXPECT_EQ(keys_of(back), (std::set<std::string>{"site-a/kitchen=connected", "site-a/garage=disconnected",
                                                     "edge/pump=connected"}));
}

TEST(several_brokers, none_reachable_is_exit_4_naming_each) {
    std::vector<std::string> argv{SCANNER_BIN, "once", "--broker", "x=tcp://127.0.0.1:1", "--broker",
                                  "y=tcp://127.0.0.1:2"};
    const auto r = run_to_end(argv);
    EXPECT_EQ(r.code, 4) << r.err;
    EXPECT_NE(r.err.find("x: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("y: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("none of the 2 brokers could be reached"), std::string::npos) << r.err;
}

TEST(several_brokers, events_carry_the_broker_of_each_change) {
    private_broker a, b;
    const auto prefix = unique_prefix();
    child events({SCANNER_BIN, "events", "--broker", "lab=" + broker_uri(a.port()), "--broker",
                  "prod=" + broker_uri(b.port()), "--broker", "gone=tcp://127.0.0.1:1", "--topic",
                  prefix + "/{client}"});
    // Each reachable broker's own sync and the one it cannot hear, in the stream, in any order.
    std::set<std::string> synced, unreachable;
    while (synced.size() < 2 || unreachable.empty()) {
        const auto line = events.wait_stdout(
            [](const std::string& l) {
                return l.rfind("{\"event\":\"broker\",", 0) == 0 ||
                       (l.rfind("{\"event\":\"scanner\",\"broker\":", 0) == 0 &&
                        l.find("\"sync\":\"complete\"") != std::string::npos);
            },
            15s);
        ASSERT_TRUE(line) << "not both synced, or the missing broker not said:\n" << events.stdout_text();
        const auto j = json::parse(*line);
        if (j["event"] == "broker") {
            EXPECT_EQ(j["reachable"], false);
            unreachable.insert(j["broker"].get<std::string>());
        } else {
            synced.insert(j["broker"].get<std::string>());
        }
    }
    EXPECT_EQ(synced, (std::set<std::string>{"lab", "prod"}));
    EXPECT_EQ(unreachable, (std::set<std::string>{"gone"}));
    EXPECT_NE(events.stderr_text().find("lab: connected to"), std::string::npos) << events.stderr_text();
    publish_retained(a.port(), prefix + "/door", "1");
    publish_retained(b.port(), prefix + "/door", "1");
    std::set<std::string> seen;
    for (int i = 0; i < 2; ++i) {
        const auto line = events.wait_stdout(contains("\"door\""), 10s);
        ASSERT_TRUE(line) << events.stdout_text();
        const auto j = json::parse(*line);
        seen.insert(j["client"]["broker"].get<std::string>());
    }
    EXPECT_EQ(seen, (std::set<std::string>{"lab", "prod"}));
    events.signal(SIGINT);
    EXPECT_EQ(events.wait_exit(10s), 0) << events.stderr_text();
}

// The live table of three brokers in tmux: one table with a BROKER column and a line of each broker's state. A broker
// down at the start is said and tried again until it answers; a broker killed makes its rows unknown since it was
// last heard (never dead, never alive) while the others' rows stay live and change.
TEST(several_brokers, the_live_table_shows_each_broker_and_a_lost_ones_rows_as_unknown) {
    private_broker a, b, c;
    const auto prefix = unique_prefix();
    publish_retained(a.port(), prefix + "/kitchen", "1");
    publish_retained(a.port(), prefix + "/garage", "1");
    publish_retained(b.port(), prefix + "/kitchen", "0");
    c.crash();  // down when the watch starts
    const std::string command = std::string(SCANNER_BIN) + " watch --no-color --broker site-a=" + broker_uri(a.port()) +
                                " --broker site-b=" + broker_uri(b.port()) + " --broker site-c=" +
                                broker_uri(c.port()) + " -t '" + prefix + "/{client}'";
    const tmux_session tmux(prefix + "-tmux", 200, 30, command);
    // The line of a row: BROKER CLIENT STATE ... ("" when none).
    const auto row = [](const std::string& screen, const std::string& broker, const std::string& client,
                        const std::string& state) {
        std::stringstream in(screen);
        for (std::string l; std::getline(in, l);) {
            std::stringstream cells(l);
            std::string in_broker, in_client, in_state;
            cells >> in_broker >> in_client >> in_state;
            if (in_broker == broker && in_client == client && in_state == state) return l;
        }
        return std::string();
    };
    const auto has_row = [&row](const std::string& broker, const std::string& client, const std::string& state) {
        return [=](const std::string& t) { return !row(t, broker, client, state).empty(); };
    };
    auto shown = tmux.wait_screen("three rows, site-c unreachable", [](const std::string& t) {
        return t.find("rows 1-3 of 3") != std::string::npos && t.find("site-c UNREACHABLE") != std::string::npos &&
               t.find("site-a ok") != std::string::npos && t.find("site-b ok") != std::string::npos;
    });
    EXPECT_EQ(shown.rfind("3 brokers", 0), 0u) << shown;
    EXPECT_NE(shown.find("1 of 3 not heard"), std::string::npos) << shown;
    EXPECT_NE(shown.find("\nBROKER  CLIENT"), std::string::npos) << shown;
    // Problems first: site-b's dead kitchen before site-a's two; the same name on two brokers, two rows.
    const auto dead = row(shown, "site-b", "kitchen", "disconnected");
    const auto alive = row(shown, "site-a", "kitchen", "connected");
    ASSERT_FALSE(dead.empty()) << shown;
    ASSERT_FALSE(alive.empty()) << shown;
    EXPECT_LT(shown.find(dead), shown.find(alive)) << shown;

    c.restart();
    publish_retained(c.port(), prefix + "/pump", "1");
    const auto site_c_ok = has_row("site-c", "pump", "connected");
    shown = tmux.wait_screen("site-c reached when it answers", [&](const std::string& t) {
        return t.find("site-c ok") != std::string::npos && site_c_ok(t);
    }, 20s);  // tried again every 5 s
    EXPECT_EQ(shown.find("not heard"), std::string::npos) << shown;

    a.crash();
    shown = tmux.wait_screen("site-a's rows unknown", [&](const std::string& t) {
        return t.find("site-a DISCONNECTED since") != std::string::npos && has_row("site-a", "garage", "unknown")(t) &&
               has_row("site-a", "kitchen", "unknown")(t);
    });
    EXPECT_NE(row(shown, "site-a", "kitchen", "unknown").find("last known connected"), std::string::npos) << shown;
    EXPECT_NE(shown.find("1 of 3 not heard"), std::string::npos) << shown;
    EXPECT_NE(shown.find("1 connected, 1 disconnected, 2 unknown"), std::string::npos) << shown;
    publish_retained(b.port(), prefix + "/door", "1");  // the others stay live
    tmux.wait_screen("site-b's new row", has_row("site-b", "door", "connected"));
    tmux.keys({"q"});
    EXPECT_TRUE(tmux.wait_gone(10s)) << "q did not quit";
}

// watch into a pipe is the stream of changes, as with one broker: each change carries its broker.
TEST(several_brokers, watch_into_a_pipe_streams_the_changes_of_each_broker) {
    private_broker a, b;
    const auto prefix = unique_prefix();
    child watch({SCANNER_BIN, "watch", "--format", "ndjson", "--broker", "lab=" + broker_uri(a.port()), "--broker",
                 "prod=" + broker_uri(b.port()), "--topic", prefix + "/{client}"});
    for (int i = 0; i < 2; ++i)
        ASSERT_TRUE(watch.wait_stdout(contains("\"sync\":\"complete\""), 15s)) << watch.stdout_text();
    publish_retained(b.port(), prefix + "/door", "0");
    const auto line = watch.wait_stdout(contains("\"door\""), 10s);
    ASSERT_TRUE(line) << watch.stdout_text();
    EXPECT_EQ(json::parse(*line)["client"]["broker"], "prod") << *line;
    watch.signal(SIGINT);
    EXPECT_EQ(watch.wait_exit(10s), 0) << watch.stderr_text();
}

// Each broker's own login and TLS come from the configuration file's [brokers.NAME] section: one broker open, one
// that asks alice's password over TLS with its own CA. Without the section that broker is not read (exit 5); a
// section naming no --broker, or a key no broker has, is exit 2.
TEST(several_brokers, each_broker_takes_its_own_login_and_tls_from_the_configuration_file) {
    private_broker open;
    private_broker locked("start-secure");
    const auto prefix = unique_prefix();
    publish_retained(open.port(), prefix + "/kitchen", "1");
    child pub({"mosquitto_pub", "-p", std::to_string(locked.port()), "-u", "alice", "-P", "secret", "-r", "-q", "1",
               "-t", prefix + "/pump", "-m", "1"});
    ASSERT_EQ(pub.wait_exit(10s), 0) << pub.stderr_text();
    int tls_port = 0;
    std::ifstream(locked.dir() + "/tls_port") >> tls_port;
    ASSERT_GT(tls_port, 0);
    const auto dir = std::string(TEST_TMP_DIR) + "/" + prefix;
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/pw") << "secret\n";
    const auto config = [&dir](const std::string& name, const std::string& text) {
        std::ofstream(dir + "/" + name) << text;
        return dir + "/" + name;
    };
    const auto once = [&](const std::vector<std::string>& extra) {
        std::vector<std::string> argv{SCANNER_BIN, "once", "--format", "json", "-t", prefix + "/{client}",
                                      "--broker", "open=" + broker_uri(open.port()),
                                      "--broker", "locked=ssl://localhost:" + std::to_string(tls_port)};
        argv.insert(argv.end(), extra.begin(), extra.end());
        return run_to_end(argv);
    };
    const auto good = config("good.toml", "[brokers.locked]\nusername = \"alice\"\npw-file = \"" + dir +
                                              "/pw\"\ncafile = \"" + locked.dir() + "/ca.crt\"\n");
    const auto r = once({"--config", good});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(keys_of(json::parse(r.out)), (std::set<std::string>{"open/kitchen=connected", "locked/pump=connected"}));

    const auto none = config("none.toml", "");
    const auto refused = once({"--config", none});
    EXPECT_EQ(refused.code, 5) << "the locked broker is not read without its login and CA: " << refused.err;
    EXPECT_NE(refused.err.find("locked: "), std::string::npos) << refused.err;

    const auto elsewhere = once({"--config", config("elsewhere.toml", "[brokers.lab]\nusername = \"alice\"\n")});
    EXPECT_EQ(elsewhere.code, 2);
    EXPECT_NE(elsewhere.err.find("no --broker is named lab"), std::string::npos) << elsewhere.err;
    const auto unknown = once({"--config", config("unknown.toml", "[brokers.locked]\nhost = \"h1\"\n")});
    EXPECT_EQ(unknown.code, 2);
    EXPECT_NE(unknown.err.find("[brokers.locked] host: not a broker's own key"), std::string::npos) << unknown.err;
}

TEST(several_brokers, several_brokers_need_names_of_their_own_and_a_mode_that_reads_them) {
    const auto refused = [](std::vector<std::string> argv, const std::string& says) {
        argv.insert(argv.begin(), SCANNER_BIN);
        const auto r = run_to_end(argv);
        EXPECT_EQ(r.code, 2) << r.err;
        EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    };
    refused({"once", "--broker", "tcp://h1:1883", "--broker", "tcp://h2:1883"}, "name each one");
    refused({"once", "--broker", "a=tcp://h1:1883", "--broker", "a=tcp://h2:1883"}, "named twice");
    refused({"once", "--broker", "a b=tcp://h1:1883"}, "use letters, digits");
    refused({"purge", "--broker", "a=tcp://h1:1883", "--broker", "b=tcp://h2:1883"}, "watch, once and events");
}

}  // namespace
