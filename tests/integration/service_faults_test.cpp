// The service under faults, with real processes and a real mosquitto: the broker killed, frozen or absent, the
// history file held, damaged, deleted or full, the port taken, SIGHUP. In every state serve says what happened at
// once (a log line, /healthz), never spins, and a SIGTERM ends it within 3 s.
#include "harness.hpp"
#include "served_dashboard.hpp"

#include <httplib.h>
#include <mqtt/async_client.h>
#include <sys/mount.h>
#include <sys/un.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>

using namespace harness;
using json = nlohmann::json;

namespace {

// CPU seconds (user + system) a process has used, from /proc.
double cpu_seconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream rest(text.substr(text.rfind(')') + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// serve with its dashboard on a free port, synced unless told not to wait.
struct service : served_dashboard {
    service(int port, const std::string& templ, const std::string& db, std::vector<std::string> extra = {},
            bool wait_synced = true)
        : served_dashboard(port, templ, db, std::move(extra)) {
        if (wait_synced && !proc.wait_stderr(contains("synced"), 15s))
            throw std::runtime_error("serve did not sync:\n" + proc.stderr_text());
    }
    // GET /healthz: the status (0: no answer within 1 s) and the body.
    std::pair<int, json> health() const {
        httplib::Client c("127.0.0.1", http_port);
        c.set_connection_timeout(1, 0);
        c.set_read_timeout(1, 0);
        auto res = c.Get("/healthz");
        if (!res) return {0, json()};
        return {res->status, json::parse(res->body, nullptr, false)};
    }
    // Waits until /healthz answers `status`; how long that took, or fails with the last body.
    std::chrono::milliseconds until_health(int status, std::chrono::milliseconds within, const std::string& what) {
        const auto start = steady::now();
        std::pair<int, json> last;
        while (steady::now() - start < within) {
            last = health();
            if (last.first == status) break;
            std::this_thread::sleep_for(20ms);  // another process's state: polled
        }
        EXPECT_EQ(last.first, status) << what << "; last /healthz: " << last.second.dump();
        return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start);
    }
    // SIGTERM, and how long the exit took (fails after `within`).
    std::chrono::milliseconds stop(std::chrono::milliseconds within = 3s, std::optional<int> code = 0) {
        const auto start = steady::now();
        proc.signal(SIGTERM);
        const auto rc = proc.wait_exit(within + 7s);
        const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start);
        EXPECT_TRUE(rc) << "serve did not exit after SIGTERM:\n" << proc.stderr_text();
        EXPECT_LE(took, within) << "SIGTERM took " << took.count() << " ms:\n" << proc.stderr_text();
        if (code && rc) {
            EXPECT_EQ(*rc, *code) << proc.stderr_text();
        }
        return took;
    }
};

// `n` retained "1"s on prefix/c0..c(n-1), published without waiting (a burst of changes for the service).
void burst(int port, const std::string& prefix, int n) {
    mqtt::async_client pub(broker_uri(port), prefix + "-burst");
    pub.connect()->wait();
    for (int i = 0; i < n; ++i) {
        auto token = pub.publish(prefix + "/c" + std::to_string(i), "1", 1, true);
        if (i % 100 == 99) token->wait_for(5s);  // within Paho's buffer of messages in flight
    }
    pub.disconnect()->wait_for(5s);
}

TEST(service_faults, the_broker_killed_in_a_burst_is_said_at_once_costs_no_cpu_and_sigterm_ends_it) {
    for (int round = 0; round < 2; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        private_broker broker;
        const auto prefix = unique_prefix() + std::to_string(round);
        service svc(broker.port(), prefix + "/{client}", db_path(), {"--notary", prefix + "-notary/{client}"});
        ASSERT_EQ(svc.health().first, 200);
        burst(broker.port(), prefix, 500);  // the statuses of a small fleet, and as many notary records
        ASSERT_EQ(kill(broker.pid(), SIGKILL), 0);
        const auto killed = steady::now();  // the kernel closes its sockets now
        const auto line = svc.proc.wait_stderr(contains("connection lost"), 2s);  // read as it comes
        const auto said = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - killed);
        broker.crash();  // waits for the reaping, which may take a while: after the line's arrival is timed
        ASSERT_TRUE(line) << "no line about the lost broker:\n" << svc.proc.stderr_text();
        std::cout << "connection lost said " << said.count() << " ms after the kill\n";
        EXPECT_LE(said, 1000ms) << "the loss was said late:\n" << svc.proc.stderr_text();
        EXPECT_LE(svc.until_health(503, 2s, "the lost broker on /healthz"), 500ms) << "after the line";
        const auto [status, body] = svc.health();
        EXPECT_EQ(body["broker"]["connected"], false) << body.dump();
        EXPECT_EQ(body["notary"]["connected"], false) << body.dump();
        // Nothing to do while the broker is gone: waiting, not spinning.
        const double before = cpu_seconds(svc.proc.pid());
        std::this_thread::sleep_for(1s);  // a CPU-time sample needs an interval of wall time
        EXPECT_LT(cpu_seconds(svc.proc.pid()) - before, 0.2) << "serve spins while the broker is gone";
        svc.stop();
        EXPECT_EQ(svc.proc.stderr_text().find("terminate called"), std::string::npos) << svc.proc.stderr_text();
    }
}

TEST(service_faults, sigterm_with_the_broker_frozen_ends_within_3_s) {
    private_broker broker;
    const auto prefix = unique_prefix();
    service svc(broker.port(), prefix + "/{client}", db_path(),
                {"--notary", prefix + "-notary/{client}", "--keepalive", "10", "--alert-after", "1s"});
    burst(broker.port(), prefix, 500);
    ASSERT_EQ(kill(broker.pid(), SIGSTOP), 0);
    svc.stop(3s, std::nullopt);
    kill(broker.pid(), SIGCONT);
}

TEST(service_faults, a_broker_absent_at_start_is_waited_for_and_its_return_is_seen) {
    private_broker broker;
    const auto prefix = unique_prefix();
    broker.crash();
    service svc(broker.port(), prefix + "/{client}", db_path(), {"--keepalive", "2"}, false);
    ASSERT_TRUE(svc.proc.wait_stderr(contains("attempt 2:"), 10s)) << svc.proc.stderr_text();
    EXPECT_EQ(svc.health().first, 503) << "the dashboard answers while the broker is awaited";
    broker.restart();
    const auto back = steady::now();
    ASSERT_TRUE(svc.proc.wait_stderr(contains("synced"), 10s)) << svc.proc.stderr_text();
    EXPECT_LE(steady::now() - back, 6s) << "the first connection waits at most one back-off (5 s)";
    svc.until_health(200, 2s, "healthy once the broker is there");

    // After the first connection, a broker's return is seen within 2 s.
    broker.crash();
    svc.until_health(503, 2s, "the loss");
    broker.restart();
    const auto returned = steady::now();
    svc.until_health(200, 6s, "healthy again after the broker's return");
    // The first try at once, then 0.1 s doubling to 0.25 s; Paho reads the CONNACK on its next poll (up to 1 s).
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - returned);
    std::cout << "healthy again " << took.count() << " ms after the broker's return\n";
    EXPECT_LE(took, 2000ms) << svc.proc.stderr_text();
    svc.stop();
}

TEST(service_faults, sighup_rereads_the_alert_settings_and_does_not_stop) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const std::string config = std::string(TEST_TMP_DIR) + "/" + prefix + "-alerts.json";
    std::ofstream(config) << R"({"after": "1m", "exec": "true"})";
    service svc(port, prefix + "/{client}", db_path(), {"--alert-config", config});
    std::ofstream(config) << R"({"after": "5s", "exec": "true"})";
    svc.proc.signal(SIGHUP);
    const auto line = svc.proc.wait_stderr(contains("SIGHUP"), 5s);
    ASSERT_TRUE(line) << svc.proc.stderr_text();
    EXPECT_NE(line->find("after 1m00s -> 5s"), std::string::npos) << *line;
    svc.proc.signal(SIGHUP);
    EXPECT_TRUE(svc.proc.wait_stderr(contains("unchanged"), 5s)) << svc.proc.stderr_text();
    std::ofstream(config) << R"({"after": "soon"})";
    svc.proc.signal(SIGHUP);
    EXPECT_TRUE(svc.proc.wait_stderr(contains("were not changed"), 5s)) << svc.proc.stderr_text();
    EXPECT_EQ(svc.health().first, 200) << "still serving";
    svc.stop();
}

TEST(service_faults, one_writer_per_history_and_one_service_per_port) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto db = db_path();
    service first(port, prefix + "/{client}", db);
    // The same file by another path: relative to a working directory of its own.
    const auto rel = std::filesystem::relative(db, std::filesystem::current_path()).string();
    child second({SCANNER_BIN, "serve", "--broker", broker_uri(port), "--topic", prefix + "/{client}", "--db", rel,
                  "--listen", "off"});
    EXPECT_EQ(second.wait_exit(10s), 6) << second.stderr_text();
    EXPECT_NE(second.stderr_text().find("in use by another"), std::string::npos) << second.stderr_text();

    child same_port({SCANNER_BIN, "serve", "--broker", broker_uri(port), "--topic", prefix + "/{client}", "--db",
                     db + "-other", "--listen", "127.0.0.1:" + std::to_string(first.http_port)});
    EXPECT_EQ(same_port.wait_exit(10s), 6) << same_port.stderr_text();
    EXPECT_NE(same_port.stderr_text().find("the port is in use"), std::string::npos) << same_port.stderr_text();

    // Readers are not writers: history and once --db read the file while the service holds it.
    child reader({SCANNER_BIN, "uptime", "--db", db});
    EXPECT_EQ(reader.wait_exit(10s), 0) << reader.stderr_text();
    first.stop();
}

TEST(service_faults, a_damaged_history_is_refused_with_the_recovery_and_a_deleted_one_is_reported) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto db = db_path();
    {
        service svc(port, prefix + "/{client}", db);
        burst(port, prefix, 2000);
        svc.stop();
    }
    ASSERT_GT(std::filesystem::file_size(db), 40'000u) << "a file of many pages";
    {
        std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(db) / 2 / 4096 * 4096));
        const std::string garbage(4096, '\xA5');
        f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
    }
    child damaged({SCANNER_BIN, "serve", "--broker", broker_uri(port), "--topic", prefix + "/{client}", "--db", db,
                   "--listen", "off"});
    EXPECT_EQ(damaged.wait_exit(20s), 2) << damaged.stderr_text();
    EXPECT_NE(damaged.stderr_text().find("is damaged"), std::string::npos) << damaged.stderr_text();
    EXPECT_NE(damaged.stderr_text().find(".recover"), std::string::npos) << damaged.stderr_text();

    const auto fresh = db_path() + "-fresh";
    service svc(port, prefix + "/{client}", fresh);
    std::filesystem::remove(fresh);
    EXPECT_LE(svc.until_health(503, 3s, "the deleted history on /healthz"), 2s);
    EXPECT_NE(svc.health().second["problems"].dump().find("was deleted"), std::string::npos);
    EXPECT_TRUE(svc.proc.wait_stderr(contains("was deleted"), 2s)) << svc.proc.stderr_text();
    svc.stop(3s, std::nullopt);
}

TEST(service_faults, a_full_disk_shows_on_healthz_and_the_stop_says_what_it_could_not_write) {
    const auto dir = std::string(TEST_TMP_DIR) + "/" + unique_prefix() + "-tmpfs";
    std::filesystem::create_directories(dir);
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=400k") != 0)
        GTEST_SKIP() << "cannot mount a small tmpfs here (" << std::strerror(errno) << "): needs root";
    struct unmount {
        std::string d;
        ~unmount() { ::umount2(d.c_str(), MNT_DETACH); }
    } guard{dir};
    const int port = broker_port();
    const auto prefix = unique_prefix();
    service svc(port, prefix + "/{client}", dir + "/history.db");
    burst(port, prefix, 20000);  // about 2 MB of history: more than the disk holds
    EXPECT_LE(svc.until_health(503, 15s, "the full disk on /healthz"), 15s);
    const auto body = svc.health().second;
    EXPECT_EQ(body["history"]["failing"], true) << body.dump();
    EXPECT_GT(body["history"]["backlog"].get<int>(), 0) << body.dump();
    httplib::Client c("127.0.0.1", svc.http_port);
    const auto metrics = c.Get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_NE(metrics->body.find("mqtt_presence_history_failing 1"), std::string::npos);
    EXPECT_EQ(metrics->body.find("mqtt_presence_history_write_errors_total 0\n"), std::string::npos);
    svc.stop(3s, 1);
    EXPECT_NE(svc.proc.stderr_text().find("not written"), std::string::npos) << svc.proc.stderr_text();
}

TEST(service_faults, the_default_history_folder_is_created_under_a_fresh_home) {
    const auto home = std::string(TEST_TMP_DIR) + "/" + unique_prefix() + "-home";
    std::filesystem::remove_all(home);
    std::filesystem::create_directories(home);
    const int port = broker_port();
    child svc({"env", "-u", "MQTT_PRESENCE_DB", "-u", "XDG_STATE_HOME", "HOME=" + home, SCANNER_BIN, "serve",
               "--broker", broker_uri(port), "--topic", unique_prefix() + "/{client}", "--listen", "off"});
    ASSERT_TRUE(svc.wait_stderr(contains("synced"), 15s)) << svc.stderr_text();
    EXPECT_TRUE(std::filesystem::exists(home + "/.local/state/mqtt-presence/history.db"));
    svc.signal(SIGTERM);
    EXPECT_EQ(svc.wait_exit(5s), 0) << svc.stderr_text();
}


// A datagram socket where serve's sd_notify messages arrive, as systemd's would.
class notify_socket {
public:
    explicit notify_socket(const std::string& path) : path_(path) {
        if (path.size() >= sizeof(sockaddr_un::sun_path)) throw std::runtime_error("socket path too long: " + path);
        std::remove(path.c_str());
        fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
        if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("cannot bind " + path);
    }
    ~notify_socket() {
        close(fd_);
        std::remove(path_.c_str());
    }
    /// Waits for a message containing `what`; every message read is kept.
    bool wait_for(const std::string& what, std::chrono::milliseconds timeout) {
        const auto deadline = steady::now() + timeout;
        for (;;) {
            for (const auto& m : seen_)
                if (m.find(what) != std::string::npos) return true;
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
            if (left.count() <= 0) return false;
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
            char buf[4096];
            const auto n = recv(fd_, buf, sizeof buf, 0);
            if (n > 0) seen_.emplace_back(buf, static_cast<std::size_t>(n));
        }
    }
    [[nodiscard]] std::size_t count(const std::string& what) const {
        std::size_t n = 0;
        for (const auto& m : seen_) n += m.find(what) != std::string::npos ? 1 : 0;
        return n;
    }
    std::string all() const {
        std::string out;
        for (const auto& m : seen_) out += m + " | ";
        return out;
    }

private:
    std::string path_;
    int fd_ = -1;
    std::vector<std::string> seen_;
};

TEST(service_faults, systemd_hears_ready_after_the_sync_a_status_watchdog_pings_and_the_stop) {
    private_broker broker;
    const auto prefix = unique_prefix();
    broker.crash();  // absent at start: no READY until the first sync
    const auto path = "/tmp/mqtt-presence-" + std::to_string(getpid()) + ".notify";  // sun_path holds 108 bytes
    notify_socket sd(path);
    setenv("NOTIFY_SOCKET", path.c_str(), 1);
    setenv("WATCHDOG_USEC", "400000", 1);
    service svc(broker.port(), prefix + "/{client}", db_path(), {}, false);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    ASSERT_TRUE(sd.wait_for("STATUS=waiting for the broker", 5s)) << sd.all();
    ASSERT_TRUE(sd.wait_for("WATCHDOG=1", 2s)) << "pinged while the broker is awaited: " << sd.all();
    EXPECT_EQ(sd.count("READY=1"), 0u) << "not ready before the first sync";
    broker.restart();
    ASSERT_TRUE(sd.wait_for("READY=1", 15s)) << sd.all();
    ASSERT_TRUE(sd.wait_for("STATUS=watching", 2s)) << sd.all();
    const auto pings = sd.count("WATCHDOG=1");
    sd.wait_for("never", 1s);  // a second of pings, read as they come
    EXPECT_GE(sd.count("WATCHDOG=1"), pings + 3) << "a ping every 200 ms: " << sd.all();
    svc.stop();
    EXPECT_TRUE(sd.wait_for("STOPPING=1", 1s)) << sd.all();
}


TEST(service_faults, a_client_that_died_and_came_back_while_serve_was_down_counts_as_a_disconnect) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto db = db_path();
    observer watch(port, prefix + "/#");
    auto first = std::make_unique<service>(port, templ, db);
    auto sensor = std::make_unique<child>(std::vector<std::string>{
        SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "pump", "--format", "json"});
    watch.expect(prefix + "/pump", contains("\"status\":1"), "the birth");
    // The first service has the birth in its history (committed) before it stops: polled through its API.
    const auto in_history = [&first] {
        httplib::Client c("127.0.0.1", first->http_port);
        c.set_read_timeout(1, 0);
        const auto res = c.Get("/api/clients/pump/history");
        return res && res->status == 200 && res->body.find("connected") != std::string::npos;
    };
    for (const auto until = steady::now() + 10s; !in_history() && steady::now() < until;)
        std::this_thread::sleep_for(50ms);  // another process's commit
    ASSERT_TRUE(in_history()) << "the first service never recorded the birth:\n" << first->proc.stderr_text();
    first->stop();
    first.reset();
    // While nobody watches: it dies (its will) and comes back under a new connection.
    sensor->signal(SIGKILL);
    watch.expect(prefix + "/pump", contains("\"status\":0"), "the will");
    sensor = std::make_unique<child>(std::vector<std::string>{
        SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "pump", "--format", "json"});
    watch.expect(prefix + "/pump", contains("\"status\":1"), "the new connection");
    service second(port, templ, db);
    second.stop();
    child uptime({SCANNER_BIN, "uptime", "--db", db, "--format", "json"});
    ASSERT_EQ(uptime.wait_exit(10s), 0) << uptime.stderr_text();
    const auto j = json::parse(uptime.stdout_text());
    ASSERT_EQ(j["clients"].size(), 1u) << j.dump();
    EXPECT_EQ(j["clients"][0]["disconnects"], 1) << "the connection that ended unseen: " << j.dump();
    EXPECT_EQ(j["clients"][0]["unseen_disconnects"], 1) << j.dump();
}


// Every kind of alert in the file the alert hook appends to, in order.
std::vector<std::string> alert_kinds(const std::string& file) {
    std::vector<std::string> kinds;
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) kinds.push_back(json::parse(line).value("alert", "?"));
    return kinds;
}

// The broker ended (SIGTERM), killed (SIGKILL) or frozen (SIGSTOP past the keepalive: 30 s once, 4 s after) under a
// fleet of 20, five rounds of each, with every part of serve on: the loss said within 1 s of the broker's going
// (frozen: its silence within 3.5 s, as three probes go unanswered), /healthz 503 within 1 s of the line, one outage
// alert, healthy again within 3 s of the broker's return (about 1 s: two of Paho C's 1 s polls at most), an outage-over
// for each outage and nothing per client, then a SIGTERM that ends serve within 3 s; never an abort.
TEST(service_faults, the_broker_ended_killed_or_frozen_five_times_under_a_fleet_with_every_part_on) {
    private_broker broker;
    const auto prefix = unique_prefix();
    const auto dir = std::string(TEST_TMP_DIR) + "/" + prefix;
    std::filesystem::create_directories(dir);
    const auto alerts_file = dir + "/alerts.jsonl";
    std::remove(alerts_file.c_str());
    child fleet({SENSOR_BIN, "--broker", broker_uri(broker.port()), "--topic", prefix + "/{client}", "--name", "s",
                 "--count", "20", "--keepalive", "2"});
    service svc(broker.port(), prefix + "/{client}", db_path(),
                {"--notary", prefix + "-notary/{client}", "--ha-discovery", prefix + "-ha", "--keepalive", "2",
                 "--alert-after", "1s", "--alert-exec", "cat >> '" + alerts_file + "'"});
    const auto count = [](const std::vector<std::string>& a, const char* kind) {
        return std::count(a.begin(), a.end(), kind);
    };
    for (int round = 0; round < 5; ++round) {
        for (const int fault : {SIGTERM, SIGKILL, SIGSTOP}) {
            const std::string what = std::string(strsignal(fault)) + ", round " + std::to_string(round);
            SCOPED_TRACE(what);
            const auto alerts_before = alert_kinds(alerts_file).size();
            svc.proc.wait_stderr([](const std::string&) { return false; }, 0ms);  // this round's lines from here
            ASSERT_EQ(kill(broker.pid(), fault), 0);
            const auto faulted = steady::now();
            // Frozen, the connection stays open until the keepalive gives up: the probe's silence is said first.
            const auto line = svc.proc.wait_stderr(
                contains(fault == SIGSTOP ? "no round trip through the broker" : "connection lost"), 8s);
            ASSERT_TRUE(line) << svc.proc.stderr_text();
            const auto said = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - faulted);
            EXPECT_LE(said, fault == SIGSTOP ? 3500ms : 1000ms) << "the loss said late";
            EXPECT_LE(svc.until_health(503, 2s, "the lost broker"), 1000ms) << "503 late after the line";
            const auto outage_until = steady::now() + 10s;
            while (count(alert_kinds(alerts_file), "outage") == 0 && steady::now() < outage_until)
                std::this_thread::sleep_for(50ms);  // a file
            if (fault == SIGSTOP) {
                std::this_thread::sleep_for(round == 0 ? 30s : 4s);  // the freeze itself, a length of wall time
                kill(broker.pid(), SIGCONT);
            } else {
                if (fault == SIGKILL) broker.crash();  // reaped
                broker.restart();
            }
            const auto back = svc.until_health(200, 15s, "healthy after the broker's return");
            std::cout << what << ": loss said after " << said.count() << " ms, healthy " << back.count()
                      << " ms after the return\n";
            // About 1 s is the rule (printed above); Paho C reads a new connection's CONNACK on its receive thread's
            // next poll of up to 1 s (paho.mqtt.c #1430), and one round in 15 under CI's load took a second poll.
            EXPECT_LE(back, 3000ms) << "back late after the broker's return";
            // One outage-over for each outage (a broker that ends cleanly sends its clients' wills first: then the
            // scheme's outage and the broker's are two), and nothing per client.
            const auto balanced = [&] {
                auto a = alert_kinds(alerts_file);
                a.erase(a.begin(), a.begin() + static_cast<long>(std::min(alerts_before, a.size())));
                const auto outages = count(a, "outage");
                return outages > 0 && outages <= 2 && outages == count(a, "outage-over") &&
                       outages * 2 == static_cast<long>(a.size());
            };
            const auto over_until = steady::now() + 15s;
            while (!balanced() && steady::now() < over_until) std::this_thread::sleep_for(50ms);  // a file
            EXPECT_TRUE(balanced()) << ::testing::PrintToString(alert_kinds(alerts_file));
            if (HasFailure()) break;
        }
        if (HasFailure()) break;
    }
    svc.stop();
    EXPECT_EQ(svc.proc.stderr_text().find("terminate called"), std::string::npos) << svc.proc.stderr_text();
}

}  // namespace
