// A pair (or more) of `serve` on one PostgreSQL history, as real processes with real signals: one leads (writes the
// history), the others follow (their own live table, dashboard and API); a follower takes over in place when the
// leader is SIGKILLed or SIGSTOPped, its dashboard answering throughout, and writes what the dead leader had not,
// each change once.
#include "harness.hpp"
#include "history_polling.hpp"
#include "served_dashboard.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cctype>
#include <fstream>
#include <map>
#include <regex>
#include <thread>

using namespace harness;
using json = nlohmann::json;

namespace {

using member = served_dashboard;  // a member of the pair


// Polls a dashboard's /healthz every 20 ms on a thread of its own and counts the times nothing answered.
struct health_poller {
    explicit health_poller(int port)
        : thread([this, port] {
              while (!stop) {
                  httplib::Client c("127.0.0.1", port);
                  c.set_connection_timeout(2, 0);
                  c.set_read_timeout(5, 0);
                  if (c.Get("/healthz")) ++answered;
                  else ++unanswered;
                  std::this_thread::sleep_for(20ms);  // a viewer's pace
              }
          }) {}
    ~health_poller() { finish(); }
    void finish() {
        stop = true;
        if (thread.joinable()) thread.join();
    }
    std::atomic<bool> stop{false};
    std::atomic<int> answered{0}, unanswered{0};
    std::thread thread;
};

long long ms_since(steady::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t).count();
}

}  // namespace

// One leads, one follows: the follower's dashboard lists the clients from its own table, says its role and who
// leads, and refuses to set silences. The leader SIGKILLed: the follower leads in place (the same dashboard,
// answering throughout) and the history goes on; the new leader SIGSTOPped (its connection, and the lock, stay
// open): a third one ends its connection once it was idle for 3 s and leads; the stopped one, continued, finds it
// was superseded and exits 7. Each death is in the history once.
TEST(pair, a_follower_answers_and_leads_in_place_when_its_leader_is_killed_or_stopped) {
    const auto db = postgres().create_database("pair");
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    observer watch(port, prefix + "/#");

    member a(port, templ, db);
    a.expect_synced();
    member b(port, templ, db);
    ASSERT_TRUE(b.said("following it")) << b.proc.stderr_text();
    b.expect_synced();
    child boiler({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "boiler", "--format", "json"});
    watch.expect(prefix + "/boiler", contains("\"status\":1"), "the boiler's birth");
    history_until(db, "boiler", [](const json& h) { return h["events"].size() == 1; }, "the birth");

    const auto info = b.until("/api/info", [](const json& j) { return !j["leader"].is_null(); }, "the leader");
    EXPECT_EQ(info["role"], "follower");
    EXPECT_NE(info["leader"].get<std::string>().find(a.pid_text()), std::string::npos) << info.dump();
    EXPECT_EQ(a.get("/api/info").second["role"], "leader");
    b.until("/api/clients", [](const json& j) { return j["clients"].size() == 1 && j["clients"][0]["state"] == "connected"; },
            "the boiler in the follower's own table");
    const auto [health_status, health] = b.get("/healthz");
    EXPECT_EQ(health_status, 200) << health.dump();
    EXPECT_EQ(health["role"], "follower") << health.dump();
    {
        httplib::Client c("127.0.0.1", b.http_port);
        auto res = c.Post("/api/silences", R"({"target":"boiler","for":"1h","reason":"test"})", "application/json");
        ASSERT_TRUE(res);
        EXPECT_EQ(res->status, 503) << "a follower writes nothing: " << res->body;
        // The leader's silences show on the follower, set and ended.
        httplib::Client leader("127.0.0.1", a.http_port);
        res = leader.Post("/api/silences", R"({"target":"boiler","for":"1h","reason":"service"})", "application/json");
        ASSERT_TRUE(res);
        ASSERT_EQ(res->status, 201) << res->body;
        const auto id = json::parse(res->body)["id"].get<std::string>();
        b.until("/api/silences", [](const json& j) { return j["silences"].size() == 1; }, "the leader's silence");
        ASSERT_TRUE(leader.Delete(("/api/silences/" + id).c_str()));
        b.until("/api/silences", [](const json& j) { return j["silences"].empty(); }, "the silence ended");
    }

    health_poller polled(b.http_port);
    a.proc.signal(SIGKILL);
    const auto killed = steady::now();
    ASSERT_TRUE(b.proc.wait_stderr(contains("this serve leads now"), 20s)) << b.proc.stderr_text();
    std::cout << "takeover after SIGKILL: leading " << ms_since(killed) << " ms after the kill\n";
    b.until("/api/info", [](const json& j) { return j["role"] == "leader"; }, "the follower leading");
    boiler.signal(SIGKILL);
    watch.expect(prefix + "/boiler", contains("\"status\":0"), "the boiler's will");
    const auto dead = history_until(db, "boiler", [](const json& h) { return h["events"].size() == 2; }, "the death");
    EXPECT_EQ(dead["events"][0]["cause"], "lost") << dead.dump();
    polled.finish();
    EXPECT_EQ(polled.unanswered, 0) << "the survivor's dashboard stopped answering during the takeover";
    EXPECT_GT(polled.answered, 0);

    member c(port, templ, db);
    ASSERT_TRUE(c.said("following it")) << c.proc.stderr_text();
    c.expect_synced();
    b.proc.signal(SIGSTOP);
    const auto stopped = steady::now();
    ASSERT_TRUE(c.proc.wait_stderr(contains("(stopped or hung): it was ended"), 30s)) << c.proc.stderr_text();
    ASSERT_TRUE(c.proc.wait_stderr(contains("this serve leads now"), 20s)) << c.proc.stderr_text();
    std::cout << "takeover after SIGSTOP: leading " << ms_since(stopped) << " ms after the stop\n";
    child pump({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "pump"});
    watch.expect(prefix + "/pump", contains("1"), "the pump's birth");
    history_until(db, "pump", [](const json& h) { return h["events"].size() == 1; }, "the pump, by the third");

    b.proc.signal(SIGCONT);
    EXPECT_EQ(b.proc.wait_exit(30s), 7) << b.proc.stderr_text();
    EXPECT_NE(b.proc.stderr_text().find("another serve took over"), std::string::npos) << b.proc.stderr_text();
    const auto after = history_until(db, "boiler", [](const json&) { return true; }, "anything");
    EXPECT_EQ(after["events"].size(), 2u) << "each change once across two takeovers: " << after.dump();
    c.proc.signal(SIGTERM);
    EXPECT_EQ(c.proc.wait_exit(15s), 0) << c.proc.stderr_text();
}

// A storm of statuses: `publishers` clients each connecting and dying `per_publisher / 2` times (a new epoch each
// connect), one mosquitto_pub per client, as fast as the broker takes them.
struct storm {
    storm(int port, const std::string& prefix, const std::string& round, int publishers, int per_publisher) {
        const long long base = 1'700'000'000'000LL;  // epochs in the past, one per connection
        for (int p = 0; p < publishers; ++p) {
            const auto name = round + std::to_string(p);
            const std::string lines = std::string(TEST_TMP_DIR) + "/" + prefix + "-" + name + ".lines";
            {
                std::ofstream out(lines);
                for (int i = 0; i < per_publisher; ++i)
                    out << "{\"status\":" << (i % 2 == 0 ? "1" : "0") << ",\"epoch\":" << base + i / 2
                        << (i % 2 == 0 ? "}" : ",\"reason\":\"lost\"}") << "\n";
            }
            publishers_.push_back(std::make_unique<child>(std::vector<std::string>{
                "sh", "-c", "exec mosquitto_pub -p " + std::to_string(port) + " -h 127.0.0.1 -q 1 -l -t " + prefix +
                                "/" + name + " < " + lines}));
        }
        last = "\"epoch\":" + std::to_string(base + per_publisher / 2 - 1) + ",\"reason\"";
    }
    // Waits until every publisher is done and `recorder` received each one's last status.
    void finish(observer& recorder) {
        for (auto& p : publishers_) ASSERT_EQ(p->wait_exit(120s), 0);
        for (std::size_t p = 0; p < publishers_.size(); ++p)
            if (recorder.expect_any(contains(last), "the last status of a publisher", 120s).empty()) break;
    }
    std::vector<std::unique_ptr<child>> publishers_;
    std::string last;  // what each publisher's last status holds
};

// Two storms of 4 x 10,000 statuses; the leader is SIGKILLed in the middle of the first and the next leader
// SIGSTOPped in the middle of the second: the history holds exactly what a mosquitto_sub recorder received (no
// gap: the new leader writes what the old one had not; no duplicate: nor what it had).
TEST(pair, a_storm_across_a_takeover_is_written_whole_and_once) {
    const auto db = postgres().create_database("storm");
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    observer recorder(port, prefix + "/#", {"-q", "1"});
    const auto count = [&] {
        const auto text = postgres().psql("storm", "SELECT count(*) FROM mqtt_presence.events WHERE retained = 0");
        if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])))
            throw std::runtime_error("psql: " + text);
        return std::stoll(text);
    };
    // Waits (bounded) until the history holds at least `n` events; returns how many it holds.
    const auto written_at_least = [&](long long n) {
        long long seen = 0;
        for (const auto until = steady::now() + 60s; steady::now() < until && seen < n;) {
            seen = count();
            std::this_thread::sleep_for(50ms);  // polling another process's database
        }
        return seen;
    };
    constexpr int publishers = 4, per_publisher = 10'000;
    constexpr long long per_round = publishers * per_publisher;

    member a(port, templ, db);
    a.expect_synced();
    member b(port, templ, db);
    ASSERT_TRUE(b.said("following it")) << b.proc.stderr_text();
    b.expect_synced();
    storm first(port, prefix, "first", publishers, per_publisher);
    const auto killed_at = written_at_least(5'000);
    ASSERT_GE(killed_at, 5'000) << "the storm never reached the history";
    a.proc.signal(SIGKILL);
    ASSERT_TRUE(b.proc.wait_stderr(contains("this serve leads now"), 20s)) << b.proc.stderr_text();
    first.finish(recorder);
    EXPECT_EQ(written_at_least(per_round), per_round) << "the first storm: a gap or duplicates";

    member c(port, templ, db);
    ASSERT_TRUE(c.said("following it")) << c.proc.stderr_text();
    c.expect_synced();
    storm second(port, prefix, "second", publishers, per_publisher);
    const auto stopped_at = written_at_least(per_round + 5'000);
    ASSERT_GE(stopped_at, per_round + 5'000) << "the second storm never reached the history";
    b.proc.signal(SIGSTOP);
    ASSERT_TRUE(c.proc.wait_stderr(contains("this serve leads now"), 30s)) << c.proc.stderr_text();
    second.finish(recorder);
    const auto written = written_at_least(2 * per_round);
    b.proc.signal(SIGCONT);
    EXPECT_EQ(b.proc.wait_exit(30s), 7) << b.proc.stderr_text();
    std::cout << "SIGKILL at " << killed_at << " events written, SIGSTOP at " << stopped_at << "; " << written
              << " written in all\n" << b.proc.stderr_text() << c.proc.stderr_text() << "\n";

    std::map<std::string, long long> received;
    for (const auto& line : recorder.lines()) ++received[line.substr(0, line.find(' '))];
    for (const std::string round : {"first", "second"})
        for (int p = 0; p < publishers; ++p)
            EXPECT_EQ(received[prefix + "/" + round + std::to_string(p)], per_publisher) << "the recorder missed some";
    EXPECT_EQ(written, 2 * per_round) << "the history has a gap or duplicates";
    EXPECT_EQ(postgres().psql("storm", "SELECT count(*) FROM (SELECT DISTINCT client, epoch, state FROM "
                                       "mqtt_presence.events WHERE retained = 0) d"),
              std::to_string(2 * per_round))
        << "a change written twice";
    c.proc.signal(SIGTERM);
    EXPECT_EQ(c.proc.wait_exit(15s), 0) << c.proc.stderr_text();
}

// Both members page through a command and run a notary: a death the leader paged is not paged again by the
// follower that takes over; a death the leader had not yet paged when it was SIGKILLed (within its 1 s debounce)
// is paged by the new leader, once, and its notary testifies to it again; a death after the takeover, once.
TEST(pair, each_death_is_paged_once_across_a_takeover) {
    const auto db = postgres().create_database("paged");
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const std::string pages = std::string(TEST_TMP_DIR) + "/" + prefix + ".pages";
    const std::vector<std::string> alerting{"--alert-after", "1s", "--alert-exec", "cat >> " + pages + "; echo >> " + pages,
                                            "--notary", prefix + "-notary/{client}"};
    observer watch(port, prefix + "/#");
    observer records(port, prefix + "-notary/#");
    member a(port, templ, db, alerting);
    a.expect_synced();
    member b(port, templ, db, alerting);
    ASSERT_TRUE(b.said("following it")) << b.proc.stderr_text();
    b.expect_synced();
    std::map<std::string, std::unique_ptr<child>> sensors;
    for (const std::string name : {"early", "late", "after"}) {
        sensors[name] = std::make_unique<child>(std::vector<std::string>{
            SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", name, "--format", "json"});
        watch.expect(prefix + "/" + name, contains("\"status\":1"), name + "'s birth");
        history_until(db, name, [](const json& h) { return h["events"].size() == 1; }, name + "'s birth");
    }
    // Pages of each client so far, by kind ("down", "recovered", ...).
    const auto paged = [&](const std::string& kind, const std::string& name) {
        std::ifstream in(pages);
        int n = 0;
        for (std::string line; std::getline(in, line);) {
            const auto j = json::parse(line, nullptr, false);
            if (!j.is_discarded() && j["alert"] == kind && j["client"] == name) ++n;
        }
        return n;
    };
    const auto until_paged = [&](const std::string& name) {
        for (const auto end = steady::now() + 20s; steady::now() < end && paged("down", name) == 0;)
            std::this_thread::sleep_for(50ms);  // polling a file another process appends to
        ASSERT_EQ(paged("down", name), 1) << name << " never paged; the log:\n" << b.proc.stderr_text();
    };

    sensors["early"]->signal(SIGKILL);
    until_paged("early");
    // Delivered, and its delivery recorded (within about 100 ms; a kill before that would have it sent again, with
    // the same id: at least once).
    for (const auto end = steady::now() + 10s; steady::now() < end;) {
        if (postgres().psql("paged", "SELECT count(*) FROM mqtt_presence.alerts WHERE client = 'early' AND "
                                     "delivered_ms IS NOT NULL") == "1")
            break;
        std::this_thread::sleep_for(20ms);  // polling another process's database
    }
    sensors["late"]->signal(SIGKILL);
    watch.expect(prefix + "/late", contains("\"status\":0"), "late's will");
    a.proc.signal(SIGKILL);  // within its 1 s debounce: late is not paged yet
    ASSERT_TRUE(b.proc.wait_stderr(contains("this serve leads now"), 20s)) << b.proc.stderr_text();
    until_paged("late");
    // The new leader's notary testifies again to the last changes (the old one's pending records died with it).
    const auto first = json::parse(records.expect(prefix + "-notary/early", contains("\"cause\":\"lost\""), "early's record"));
    records.expect(prefix + "-notary/late",
                   [&](const std::string& p) {
                       const auto j = json::parse(p, nullptr, false);
                       return !j.is_discarded() && j["cause"] == "lost" && j["observed_since"] != first["observed_since"];
                   },
                   "late's record from the new leader's notary");
    sensors["after"]->signal(SIGKILL);
    until_paged("after");
    std::this_thread::sleep_for(2s);  // a page sent twice would come within the debounce: nothing to await
    EXPECT_EQ(paged("down", "early"), 1) << "paged by the leader, and again by the follower";
    EXPECT_EQ(paged("down", "late"), 1);
    EXPECT_EQ(paged("down", "after"), 1);
    b.proc.signal(SIGTERM);
    EXPECT_EQ(b.proc.wait_exit(15s), 0) << b.proc.stderr_text();
}

namespace {

// A database server that stops answering (every process SIGSTOPped: its connections stay up) holds neither the
// leader nor a follower: both say it on /healthz and in the log, and both stop when asked, the leader saying what
// it could not write.
TEST(pair, a_frozen_database_is_said_and_every_stop_still_finishes) {
    const auto db = postgres().create_database("frozen");
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    member a(port, templ, db);
    a.expect_synced();
    member b(port, templ, db);
    b.expect_synced();
    b.until("/healthz", [](const json& h) { return h.value("role", "") == "follower"; }, "a follower");
    publish_retained(port, prefix + "/before", "1");
    a.until("/api/clients", [](const json& j) { return j["total"] == 1; }, "the first client");

    struct thaw_at_exit {
        ~thaw_at_exit() { postgres().thaw(); }
    } thaw;
    postgres().freeze();
    for (int i = 0; i < 20; ++i) publish_retained(port, prefix + "/during-" + std::to_string(i), "1");
    const auto said_problem = [](const std::string& text) {
        return [text](const json& h) {
            for (const auto& p : h.value("problems", json::array()))
                if (p.get<std::string>().find(text) != std::string::npos) return true;
            return false;
        };
    };
    a.until("/healthz", said_problem("has not answered"), "the leader's history not answering");
    b.until("/healthz", said_problem("history: "), "the follower's history not answering");
    EXPECT_EQ(a.get("/healthz").first, 503);
    EXPECT_TRUE(a.proc.wait_stderr(contains("has not answered for"), 5s)) << a.proc.stderr_text();
    EXPECT_TRUE(b.proc.wait_stderr(contains("follower: "), 10s)) << b.proc.stderr_text();
    EXPECT_EQ(a.get("/api/clients").second["total"], 21) << "the live table goes on";

    const auto asked = steady::now();
    a.proc.signal(SIGTERM);
    b.proc.signal(SIGTERM);
    EXPECT_EQ(a.proc.wait_exit(20s), 1) << "the leader did not stop, or said nothing was lost:\n"
                                         << a.proc.stderr_text();
    const auto leader_stopped = steady::now();
    EXPECT_EQ(b.proc.wait_exit(20s), 0) << b.proc.stderr_text();
    std::printf("with the database frozen, stopped %.1f s (the leader) and %.1f s (the follower) after SIGTERM\n",
                std::chrono::duration<double>(leader_stopped - asked).count(),
                std::chrono::duration<double>(steady::now() - asked).count());
    EXPECT_TRUE(a.said("at the stop: its call was interrupted")) << a.proc.stderr_text();
    EXPECT_TRUE(a.said("not written")) << a.proc.stderr_text();
}

}  // namespace
