// Alerts from a real `serve`, real sensors killed with real signals, and a real HTTP receiver: one "down" after the
// debounce and one "recovered", nothing for a short disconnect, one "flapping" for ten flaps, one outage for a broker
// that goes away under 200 sensors, a name full of shell syntax passed through --alert-exec as data, a webhook
// receiver that is down at first, and no second "down" after the service's own restart.
#include "harness.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <filesystem>

using namespace harness;
using json = nlohmann::json;

namespace {

std::string test_dir(const std::string& suffix = "") {
    // (a private broker's is without "-alerts")
    const auto dir = std::string(TEST_TMP_DIR) + "/" + unique_prefix() + "-alerts" + suffix;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

// serve in `dir` (its working directory), every alert appended to dir/alerts.jsonl by --alert-exec.
std::unique_ptr<child> serve(int port, const std::string& templ, const std::string& dir,
                             const std::vector<std::string>& extra) {
    std::string cmd = "cd '" + dir + "' && exec '" + std::string(SCANNER_BIN) + "' serve --broker " + broker_uri(port) +
                      " --topic '" + templ + "' --db history.db --alert-exec 'cat >> alerts.jsonl'";
    if (std::find(extra.begin(), extra.end(), "--listen") == extra.end()) cmd += " --listen off";
    for (const auto& e : extra) cmd += " '" + e + "'";
    auto p = std::make_unique<child>(std::vector<std::string>{"sh", "-c", cmd});
    if (!p->wait_stderr(contains("synced"), 15s)) throw std::runtime_error("serve did not sync:\n" + p->stderr_text());
    return p;
}

std::vector<json> alerts_in(const std::string& dir) {
    std::vector<json> out;
    std::ifstream in(dir + "/alerts.jsonl");
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) out.push_back(json::parse(line));
    return out;
}

std::vector<json> wait_alerts(const std::string& dir, std::size_t n, const std::string& what,
                              std::chrono::milliseconds timeout = 10s) {
    const auto deadline = steady::now() + timeout;
    std::vector<json> got;
    while (steady::now() < deadline) {
        got = alerts_in(dir);
        if (got.size() >= n) return got;
        std::this_thread::sleep_for(20ms);  // another process writes the file
    }
    std::string seen;
    for (const auto& a : got) seen += a.dump() + "\n";
    ADD_FAILURE() << "waited for " << what << " (" << n << " alerts); have:\n" << seen;
    return got;
}

// Waits until the history's outbox holds no undelivered alert (read with sqlite3, not the code under test).
void outbox_empty(const std::string& dir) {
    const auto deadline = steady::now() + 10s;
    std::string last;
    while (steady::now() < deadline) {
        child q({"sqlite3", "-readonly", dir + "/history.db", "SELECT count(*) FROM alerts WHERE delivered_ms IS NULL"});
        if (q.wait_exit(10s) == 0 && (last = q.stdout_text()) == "0\n") return;
        std::this_thread::sleep_for(20ms);  // another process writes the file
    }
    ADD_FAILURE() << "the outbox never emptied: " << last;
}

std::vector<std::string> kinds(const std::vector<json>& alerts) {
    std::vector<std::string> out;
    for (const auto& a : alerts) out.push_back(a["alert"]);
    return out;
}

// What a test's own HTTP(S) server receives on POST /hook.
class hook_receiver {
public:
    void serve_on(httplib::Server& server) {
        server.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard<std::mutex> lock(mutex_);
            bodies_.push_back(req.body);
            res.set_content("ok", "text/plain");
        });
    }
    /// Waits until `n` bodies arrived; false on timeout.
    bool wait_until(std::size_t n, std::chrono::milliseconds timeout) {
        const auto deadline = steady::now() + timeout;
        while (bodies().size() < n) {
            if (steady::now() >= deadline) return false;
            std::this_thread::sleep_for(20ms);  // another process posts
        }
        return true;
    }
    std::vector<std::string> bodies() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return bodies_;
    }

private:
    mutable std::mutex mutex_;
    std::vector<std::string> bodies_;
};

child sensor(int port, const std::string& templ, const std::string& name, std::vector<std::string> extra = {}) {
    std::vector<std::string> a{SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", name,
                               "--format", "json"};
    a.insert(a.end(), extra.begin(), extra.end());
    return child(a);
}

// What a receiver got: the path, the headers and the body of each POST.
struct request_seen {
    std::string path, body;
    httplib::Headers headers;
};

class any_receiver {
public:
    explicit any_receiver(httplib::Server& server) {
        server.Post(".*", [this](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard<std::mutex> lock(mutex_);
            seen_.push_back({req.path, req.body, req.headers});
            res.set_content("{}", "application/json");
        });
    }
    std::vector<request_seen> on(const std::string& path) const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<request_seen> out;
        for (const auto& r : seen_)
            if (r.path == path) out.push_back(r);
        return out;
    }
    bool wait_for(const std::string& path, std::size_t n, std::chrono::milliseconds timeout) const {
        const auto deadline = steady::now() + timeout;
        while (on(path).size() < n) {
            if (steady::now() >= deadline) return false;
            std::this_thread::sleep_for(20ms);  // another process posts
        }
        return true;
    }

private:
    mutable std::mutex mutex_;
    std::vector<request_seen> seen_;
};

// A JSON string's text without its quotes, as a template's placeholder is filled.
// (null, as the alert's JSON says an empty field, is empty text in a template.)
std::string esc(const json& value) {
    const auto quoted = json(value.is_null() ? std::string() : value.get<std::string>()).dump();
    return quoted.substr(1, quoted.size() - 2);
}

// The recipes of docs/service.md (Alerts), each served by its own `serve` and checked body for body: the body is the template filled in
// from the alert the same service handed to --alert-exec (its JSON), the headers carry the tokens from the
// environment.
TEST(alerts, the_ntfy_gotify_and_slack_recipes_get_their_exact_bodies_and_headers) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    httplib::Server server;
    any_receiver receiver(server);
    const int hook_port = server.bind_to_any_port("127.0.0.1");
    std::thread serving([&] { server.listen_after_bind(); });
    const auto base = "http://127.0.0.1:" + std::to_string(hook_port);
    setenv("NTFY_TOKEN", "tk_ntfy", 1);
    setenv("GOTIFY_TOKEN", "AbCdEf", 1);
    struct recipe {
        std::string path;
        std::vector<std::string> options;
        std::function<std::string(const json&)> body;
        std::pair<std::string, std::string> header;
    };
    const std::vector<recipe> recipes{
        {"/", {"--alert-template", R"({"topic":"mqtt-presence","title":"{{title}}","message":"{{message}}",)"
                                   R"("tags":["{{alert}}"],"click":"{{url}}"})",
               "--alert-header", "Authorization: Bearer $NTFY_TOKEN", "--public-url", "https://presence.example/"},
         [](const json& a) {
             return R"({"topic":"mqtt-presence","title":")" + esc(a["title"]) + R"(","message":")" +
                    esc(a["message"]) + R"(","tags":[")" + esc(a["alert"]) + R"("],"click":")" + esc(a["url"]) +
                    R"("})";
         },
         {"Authorization", "Bearer tk_ntfy"}},
        {"/message", {"--alert-template", R"({"title":"{{title}}","message":"{{message}}","priority":8})",
                      "--alert-header", "X-Gotify-Key: ${GOTIFY_TOKEN}"},
         [](const json& a) {
             return R"({"title":")" + esc(a["title"]) + R"(","message":")" + esc(a["message"]) + R"(","priority":8})";
         },
         {"X-Gotify-Key", "AbCdEf"}},
        {"/services/T0/B0/x", {"--alert-template", R"({"text":"*{{title}}*\n{{message}}"})"},
         [](const json& a) { return R"({"text":"*)" + esc(a["title"]) + R"(*\n)" + esc(a["message"]) + R"("})"; },
         {"Content-Type", "application/json"}}};
    std::vector<std::string> dirs;
    std::vector<std::unique_ptr<child>> services;
    for (const auto& r : recipes) {
        dirs.push_back(test_dir("-" + std::to_string(dirs.size())));
        auto options = r.options;
        options.insert(options.end(), {"--alert-after", "0s", "--alert-webhook", base + r.path});
        services.push_back(serve(port, templ, dirs.back(), options));
    }
    observer watch(port, prefix + "/#");
    {
        auto s = sensor(port, templ, "boiler");
        watch.expect(prefix + "/boiler", contains("\"status\":1"), "birth");
        s.signal(SIGKILL);
        watch.expect(prefix + "/boiler", contains("\"status\":0"), "will");
    }
    for (const auto& r : recipes) ASSERT_TRUE(receiver.wait_for(r.path, 1, 15s)) << "no down at " << r.path;
    auto back = sensor(port, templ, "boiler");
    for (const auto& r : recipes) ASSERT_TRUE(receiver.wait_for(r.path, 2, 15s)) << "no recovered at " << r.path;
    server.stop();
    serving.join();
    for (std::size_t i = 0; i < recipes.size(); ++i) {
        const auto sent = wait_alerts(dirs[i], 2, "the alerts the exec sink saw");
        const auto got = receiver.on(recipes[i].path);
        ASSERT_EQ(got.size(), 2u) << recipes[i].path;
        for (std::size_t k = 0; k < 2; ++k) {
            EXPECT_EQ(got[k].body, recipes[i].body(sent[k])) << recipes[i].path << " alert " << k;
            const auto h = got[k].headers.find(recipes[i].header.first);
            ASSERT_NE(h, got[k].headers.end()) << recipes[i].path << " lacks " << recipes[i].header.first;
            EXPECT_EQ(h->second, recipes[i].header.second) << recipes[i].path;
        }
        EXPECT_EQ(sent[0]["cause"], "lost");
        EXPECT_EQ(sent[1]["alert"], "recovered");
        EXPECT_TRUE(sent[1]["down_for_s"].is_number()) << sent[1].dump();
        EXPECT_EQ(sent[0]["broker"], broker_uri(port));
    }
    const auto ntfy = receiver.on("/");
    EXPECT_NE(ntfy[0].body.find(R"("click":"https://presence.example/#client=boiler&topic=)"), std::string::npos)
        << ntfy[0].body;
}

// The first start of a service: clients that died before it existed are one summary, not a page each; after a
// restart, they are still not paged; one that comes back is "recovered".
TEST(alerts, the_dead_found_at_the_first_start_are_one_already_down_summary) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    for (const char* name : {"old-1", "old-2", "old-3"}) publish_retained(port, prefix + "/" + name, "0");
    {
        auto svc = serve(port, templ, dir, {"--alert-after", "0s"});
        const auto got = wait_alerts(dir, 1, "the summary");
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0]["alert"], "already-down");
        EXPECT_EQ(got[0]["count"], 3);
        EXPECT_EQ(got[0]["sample"], json({"old-1", "old-2", "old-3"}));
        EXPECT_NE(got[0]["title"].get<std::string>().find("3 clients were already down"), std::string::npos);
        outbox_empty(dir);
        svc->signal(SIGTERM);
        ASSERT_EQ(svc->wait_exit(15s), 0) << svc->stderr_text();
    }
    auto again = serve(port, templ, dir, {"--alert-after", "0s"});
    publish_retained(port, prefix + "/old-2", "1");
    const auto got = wait_alerts(dir, 2, "old-2's recovery");
    EXPECT_EQ(kinds(got), (std::vector<std::string>{"already-down", "recovered"})) << "no \"down\" after the restart";
    EXPECT_EQ(got[1]["client"], "old-2");
}

TEST(alerts, one_down_after_the_debounce_one_recovered_and_nothing_for_a_short_disconnect) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    const std::string name = "x$(touch pwned)`touch pwned2`'\"; touch pwned3";  // shell syntax, as data
    observer watch(port, prefix + "/#");
    auto svc = serve(port, templ, dir, {"--alert-after", "1s"});
    {
        auto s = sensor(port, templ, name);
        watch.expect(prefix + "/" + name, contains("\"status\":1"), "birth");
        s.signal(SIGKILL);
        watch.expect(prefix + "/" + name, contains("\"status\":0"), "will");
    }
    {
        auto s = sensor(port, templ, name);  // back within the debounce: nothing to say
        watch.expect(prefix + "/" + name, contains("\"status\":1"), "back at once");
        EXPECT_TRUE(alerts_in(dir).empty()) << "a disconnect shorter than --alert-after";
        s.signal(SIGKILL);
        watch.expect(prefix + "/" + name, contains("\"status\":0"), "will again");
        const auto died = steady::now();
        auto got = wait_alerts(dir, 1, "the down alert");
        EXPECT_GE(steady::now() - died, 900ms) << "sent before the debounce";
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0]["alert"], "down");
        EXPECT_EQ(got[0]["client"], name) << "the name reaches the command as data";
        EXPECT_EQ(got[0]["topic"], prefix + "/" + name);
        EXPECT_TRUE(got[0]["since"].is_string());
    }
    auto back = sensor(port, templ, name);
    const auto got = wait_alerts(dir, 2, "the recovered alert");
    EXPECT_EQ(kinds(got), (std::vector<std::string>{"down", "recovered"}));
    for (const char* f : {"pwned", "pwned2", "pwned3"})
        EXPECT_FALSE(std::filesystem::exists(dir + "/" + f)) << "a name ran a command: " << f;
}

TEST(alerts, ten_flaps_make_one_flapping_alert) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    observer watch(port, prefix + "/#");
    auto svc = serve(port, templ, dir, {"--alert-after", "30s"});
    for (int i = 0; i < 10; ++i) {
        auto s = sensor(port, templ, "wobbly");
        ASSERT_FALSE(watch.expect(prefix + "/wobbly", contains("\"status\":1"), "birth " + std::to_string(i)).empty());
        s.signal(SIGKILL);
        watch.expect(prefix + "/wobbly", contains("\"status\":0"), "will " + std::to_string(i));
    }
    const auto got = wait_alerts(dir, 1, "the flapping alert");
    // A moment for any further alert to show itself (there must be none).
    auto more = sensor(port, templ, "wobbly");
    watch.expect(prefix + "/wobbly", contains("\"status\":1"), "the last birth");
    const auto all = alerts_in(dir);
    EXPECT_EQ(kinds(all), (std::vector<std::string>{"flapping"}));
}

TEST(alerts, a_broker_that_goes_away_under_200_sensors_is_one_outage_and_one_recovery) {
    private_broker broker("start-persistent");
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    child fleet({SENSOR_BIN, "--broker", broker_uri(broker.port()), "--topic", templ, "--name", "s", "--count", "200",
                 "--keepalive", "2"});
    auto svc = serve(broker.port(), templ, dir, {"--alert-after", "1s", "--keepalive", "1"});
    // All 200 up before the broker goes (asked again until they are: a fleet takes a moment to connect).
    std::string all;
    for (int i = 1; i <= 200; ++i) {
        char name[16];
        std::snprintf(name, sizeof name, "s-%06d", i);
        all += (all.empty() ? "" : ",") + std::string(name);
    }
    const auto fleet_up = [&](const std::string& what) {
        const auto deadline = steady::now() + 30s;
        for (;;) {
            child once({SCANNER_BIN, "once", "--broker", broker_uri(broker.port()), "--topic", templ, "--require", all});
            if (once.wait_exit(20s) == 0) return true;
            if (steady::now() >= deadline) {
                ADD_FAILURE() << what << ": " << once.stderr_text();
                return false;
            }
            std::this_thread::sleep_for(200ms);
        }
    };
    ASSERT_TRUE(fleet_up("the fleet never connected"));
    broker.crash();
    auto got = wait_alerts(dir, 1, "the outage alert", 15s);
    ASSERT_GE(got.size(), 1u);
    EXPECT_EQ(got[0]["alert"], "outage");
    EXPECT_EQ(got[0]["reason"], "broker");
    EXPECT_GE(got[0]["count"].get<int>(), 200);
    EXPECT_EQ(got[0]["sample"].size(), 5u);
    broker.restart();
    got = wait_alerts(dir, 2, "the outage's end", 30s);
    EXPECT_EQ(kinds(got), (std::vector<std::string>{"outage", "outage-over"}));
    // The fleet reconnects (each client after its own backoff; the broker's database may predate the last
    // births, autosave_interval 1 s); nothing per client follows.
    ASSERT_TRUE(fleet_up("the fleet never came back"));
    EXPECT_EQ(kinds(alerts_in(dir)), (std::vector<std::string>{"outage", "outage-over"}));
}

TEST(alerts, a_webhook_that_is_down_gets_the_alert_once_it_is_back) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    // A free port for the receiver, which is not listening yet: connections are refused until it starts.
    const int hook_port = free_port();
    hook_receiver hook;
    httplib::Server later;
    hook.serve_on(later);
    observer watch(port, prefix + "/#");
    auto svc = serve(port, templ, dir,
                     {"--alert-after", "0s", "--alert-webhook", "http://127.0.0.1:" + std::to_string(hook_port) + "/hook",
                      "--alert-template", "{\"text\":\"{{client}} is {{alert}} since {{since}}\"}"});
    auto s = sensor(port, templ, "pump \"7\"");
    watch.expect(prefix + "/pump \"7\"", contains("\"status\":1"), "birth");
    s.signal(SIGKILL);
    wait_alerts(dir, 1, "the down alert (exec)");
    ASSERT_TRUE(svc->wait_stderr(contains("retrying"), 10s)) << "the service never tried the webhook:\n"
                                                            << svc->stderr_text();
    std::thread serving([&] { later.listen("127.0.0.1", hook_port); });
    ASSERT_TRUE(hook.wait_until(1, 20s)) << "never delivered after the receiver came back";
    // Once: alerts go out in order, so when the next one arrives, a second copy of the first would be before it.
    auto next = sensor(port, templ, "other");
    watch.expect(prefix + "/other", contains("\"status\":1"), "another birth");
    next.signal(SIGKILL);
    ASSERT_TRUE(hook.wait_until(2, 20s)) << "the next alert never came";
    later.stop();
    serving.join();
    const auto bodies = hook.bodies();
    ASSERT_EQ(bodies.size(), 2u);
    const auto body = json::parse(bodies[0]);
    EXPECT_EQ(body["text"].get<std::string>().rfind("pump \"7\" is down since 20", 0), 0u) << bodies[0];
    EXPECT_EQ(json::parse(bodies[1])["text"].get<std::string>().rfind("other is down", 0), 0u) << bodies[1];
}

TEST(alerts, an_alert_the_receiver_never_took_survives_a_restart_and_is_delivered_once) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    const int hook_port = free_port();  // nothing listens yet: the receiver is down
    const std::vector<std::string> hook{"--alert-after", "0s", "--alert-webhook",
                                        "http://127.0.0.1:" + std::to_string(hook_port) + "/hook"};
    observer watch(port, prefix + "/#");
    auto svc = serve(port, templ, dir, hook);
    auto s = sensor(port, templ, "valve");
    watch.expect(prefix + "/valve", contains("\"status\":1"), "birth");
    s.signal(SIGKILL);
    ASSERT_TRUE(svc->wait_stderr(contains("retrying"), 10s)) << svc->stderr_text();
    svc->signal(SIGTERM);
    ASSERT_EQ(svc->wait_exit(5s), 0) << svc->stderr_text();
    EXPECT_NE(svc->stderr_text().find("the next start delivers"), std::string::npos) << svc->stderr_text();

    hook_receiver received;
    httplib::Server receiver;
    received.serve_on(receiver);
    std::thread serving([&] { receiver.listen("127.0.0.1", hook_port); });
    auto again = serve(port, templ, dir, hook);
    ASSERT_TRUE(received.wait_until(1, 20s)) << "the outbox was not delivered:\n" << again->stderr_text();
    EXPECT_NE(again->stderr_text().find("alert delivered: down valve"), std::string::npos) << again->stderr_text();
    // Once: the next alert is the next body (a second copy would come before it, alerts go in order).
    auto other = sensor(port, templ, "other");
    watch.expect(prefix + "/other", contains("\"status\":1"), "another birth");
    other.signal(SIGKILL);
    ASSERT_TRUE(received.wait_until(2, 20s));
    again->signal(SIGTERM);
    again->wait_exit(5s);
    auto third = serve(port, templ, dir, hook);  // nothing left in the outbox: nothing sent at this start
    auto probe = sensor(port, templ, "probe");
    watch.expect(prefix + "/probe", contains("\"status\":1"), "probe's birth");
    probe.signal(SIGKILL);
    ASSERT_TRUE(received.wait_until(3, 20s));
    receiver.stop();
    serving.join();
    std::vector<std::string> who;
    for (const auto& b : received.bodies()) who.push_back(json::parse(b)["client"]);
    EXPECT_EQ(who, (std::vector<std::string>{"valve", "other", "probe"}));
}

TEST(alerts, a_fleet_that_dies_in_part_and_comes_back_slowly_is_at_most_three_alerts) {
    private_broker broker;
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    child stay({SENSOR_BIN, "--broker", broker_uri(broker.port()), "--topic", templ, "--name", "a", "--count", "312"});
    auto part = std::make_unique<child>(std::vector<std::string>{SENSOR_BIN, "--broker", broker_uri(broker.port()),
                                                                 "--topic", templ, "--name", "b", "--count", "200"});
    auto svc = serve(broker.port(), templ, dir, {"--alert-after", "1s"});
    // All 512 connected, as the service sees them.
    const auto deadline = steady::now() + 30s;
    for (;;) {
        child once({SCANNER_BIN, "once", "--broker", broker_uri(broker.port()), "--topic", templ, "--format", "json"});
        ASSERT_TRUE(once.wait_exit(20s));
        const auto j = json::parse(once.stdout_text(), nullptr, false);
        if (!j.is_discarded() && j["counts"]["connected"] == 512) break;
        ASSERT_LT(steady::now(), deadline) << "the fleet never connected: " << once.stdout_text().substr(0, 300);
        std::this_thread::sleep_for(200ms);  // a fleet connecting: polled
    }
    part->signal(SIGKILL);
    ASSERT_TRUE(part->wait_exit(10s));
    auto outage = wait_alerts(dir, 1, "the outage", 15s);
    ASSERT_EQ(kinds(outage), (std::vector<std::string>{"outage"}));
    EXPECT_EQ(outage[0]["count"], 200) << outage[0].dump();
    // Back at 20 a second.
    part = std::make_unique<child>(std::vector<std::string>{SENSOR_BIN, "--broker", broker_uri(broker.port()),
                                                            "--topic", templ, "--name", "b", "--count", "200",
                                                            "--connect-rate", "20"});
    auto over = wait_alerts(dir, 2, "the outage's end", 40s);
    EXPECT_EQ(kinds(over), (std::vector<std::string>{"outage", "outage-over"}));
    EXPECT_EQ(over.back()["count"], 0) << "none still down: " << over.back().dump();
    EXPECT_LE(alerts_in(dir).size(), 3u);
}

TEST(alerts, a_down_sent_before_a_restart_is_not_sent_again_and_one_due_during_it_is_sent_once) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    observer watch(port, prefix + "/#");
    auto svc = serve(port, templ, dir, {"--alert-after", "1s"});
    {
        auto s = sensor(port, templ, "old");
        watch.expect(prefix + "/old", contains("\"status\":1"), "birth");
        s.signal(SIGKILL);
    }
    wait_alerts(dir, 1, "old's down");
    // Delivery is at least once: a kill between the delivery and its mark in the outbox sends it again after the
    // restart. Here the mark is on disk before the kill.
    outbox_empty(dir);
    auto late = sensor(port, templ, "late");
    watch.expect(prefix + "/late", contains("\"status\":1"), "late's birth");
    svc->signal(SIGKILL);  // the service dies; then late dies while nobody watches
    ASSERT_TRUE(svc->wait_exit(10s));
    late.signal(SIGKILL);
    watch.expect(prefix + "/late", contains("\"status\":0"), "late's will");
    auto again = serve(port, templ, dir, {"--alert-after", "1s"});
    const auto got = wait_alerts(dir, 2, "late's down, due during the restart");
    // Give a wrongly repeated "down" for old a chance to show: another client's birth and death pass first.
    auto probe = sensor(port, templ, "probe");
    watch.expect(prefix + "/probe", contains("\"status\":1"), "probe's birth");
    probe.signal(SIGKILL);
    wait_alerts(dir, 3, "probe's down");
    std::vector<std::string> downs;
    for (const auto& a : alerts_in(dir)) downs.push_back(a["alert"].get<std::string>() + " " + a["client"].get<std::string>());
    EXPECT_EQ(downs, (std::vector<std::string>{"down old", "down late", "down probe"})) << again->stderr_text();
}

}  // namespace

namespace {

TEST(alerts, rules_from_a_json_file_and_a_bad_file_is_refused) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    std::ofstream(dir + "/rules.json") << R"({"after": "0s", "exclude": ["ignored-*"], "exec_timeout": "5s"})";
    observer watch(port, prefix + "/#");
    auto svc = serve(port, templ, dir, {"--alert-config", "rules.json"});
    for (const char* name : {"ignored-1", "watched"}) {
        auto s = sensor(port, templ, name);
        watch.expect(prefix + "/" + name, contains("\"status\":1"), std::string(name) + "'s birth");
        s.signal(SIGKILL);
        watch.expect(prefix + "/" + name, contains("\"status\":0"), std::string(name) + "'s will");
    }
    const auto got = wait_alerts(dir, 1, "watched's down");
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0]["client"], "watched") << "the file's exclude list applies";

    std::ofstream(dir + "/bad.json") << R"({"after": "0s", "colour": "red"})";
    child bad({"sh", "-c", "cd '" + dir + "' && exec '" + std::string(SCANNER_BIN) +
                               "' serve --db b.db --listen off --alert-config bad.json"});
    EXPECT_EQ(bad.wait_exit(10s), 2);
    EXPECT_NE(bad.stderr_text().find("unknown setting \"colour\""), std::string::npos) << bad.stderr_text();
}

TEST(alerts, an_https_webhook_is_verified) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    self_signed_cert(dir);
    httplib::SSLServer receiver((dir + "/cert.pem").c_str(), (dir + "/key.pem").c_str());
    ASSERT_TRUE(receiver.is_valid());
    hook_receiver hook;
    hook.serve_on(receiver);
    const int hook_port = receiver.bind_to_any_port("127.0.0.1");
    std::thread serving([&] { receiver.listen_after_bind(); });
    const auto url = "https://127.0.0.1:" + std::to_string(hook_port) + "/hook";
    observer watch(port, prefix + "/#");
    // Without the CA the certificate is refused: nothing is delivered, and the service says so.
    {
        auto svc = serve(port, templ, dir, {"--alert-after", "0s", "--alert-webhook", url});
        auto s = sensor(port, templ, "unverified");
        watch.expect(prefix + "/unverified", contains("\"status\":1"), "birth");
        s.signal(SIGKILL);
        EXPECT_TRUE(svc->wait_stderr(contains("retrying"), 10s)) << svc->stderr_text();
        EXPECT_TRUE(hook.bodies().empty()) << "delivered to a certificate nobody vouched for";
    }
    // With it, the alert arrives.
    const auto dir2 = dir + "-verified";
    std::filesystem::create_directories(dir2);
    {
        auto svc = serve(port, templ, dir2,
                         {"--alert-after", "0s", "--alert-webhook", url, "--alert-cafile", dir + "/cert.pem"});
        auto s = sensor(port, templ, "verified");
        watch.expect(prefix + "/verified", contains("\"status\":1"), "birth");
        s.signal(SIGKILL);
        const auto deadline = steady::now() + 15s;
        const auto arrived = [&] {
            const auto bodies = hook.bodies();
            return std::any_of(bodies.begin(), bodies.end(),
                               [](const std::string& b) { return b.find("\"verified\"") != std::string::npos; });
        };
        while (!arrived()) {
            ASSERT_LT(steady::now(), deadline) << "the verified webhook never got the alert";
            std::this_thread::sleep_for(20ms);  // another process posts
        }
    }
    receiver.stop();
    serving.join();
}

}  // namespace

namespace {

// A silence set through the running service holds its clients' alerts (by group here): recorded in the outbox with
// the silence's id, counted, never sent; another client's alert goes out as always. It is listed, survives a
// restart, and ends by hand.
TEST(alerts, a_silence_holds_its_clients_alerts_and_survives_a_restart) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    const int http = free_port();
    const auto server = "http://127.0.0.1:" + std::to_string(http);
    const auto start = [&] {
        return serve(port, templ, dir, {"--alert-after", "1s", "--group", "garage=garage-*", "--listen",
                                        "127.0.0.1:" + std::to_string(http)});
    };
    auto svc = start();
    auto set = run_to_end({SCANNER_BIN, "silence", "group:garage", "--for", "1h", "--reason", "renovation",
                           "--server", server, "--format", "json"});
    ASSERT_EQ(set.code, 0) << set.err;
    const auto id = json::parse(set.out)["id"].get<std::string>();
    publish_retained(port, prefix + "/garage-door", "1");
    publish_retained(port, prefix + "/kitchen", "1");
    publish_retained(port, prefix + "/garage-door", "0");
    publish_retained(port, prefix + "/kitchen", "0");
    const auto got = wait_alerts(dir, 1, "the kitchen's down");
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0]["client"], "kitchen");
    const auto held = [&] {
        child q({"sqlite3", "-readonly", dir + "/history.db",
                 "SELECT count(*) FROM alerts WHERE client='garage-door' AND json LIKE '%\"silenced\":\"" + id +
                     "\"%' AND delivered_ms IS NOT NULL"});
        return q.wait_exit(10s) == 0 && q.stdout_text().rfind("1", 0) == 0;
    };
    const auto until = steady::now() + 10s;
    while (!held() && steady::now() < until) std::this_thread::sleep_for(50ms);  // another process writes the file
    EXPECT_TRUE(held()) << "the garage door's down is in the outbox, held by the silence";
    auto list = run_to_end({SCANNER_BIN, "silence", "--list", "--server", server});
    EXPECT_EQ(list.code, 0) << list.err;
    EXPECT_NE(list.out.find("renovation"), std::string::npos) << list.out;
    EXPECT_NE(list.err.find("1 alerts held"), std::string::npos) << list.err;
    outbox_empty(dir);  // a held alert sent after all would be on its way: delivered once its command ran
    EXPECT_EQ(alerts_in(dir).size(), 1u) << "the held alert was never sent";

    // The live table given the history (watch --db) shows the silence beside the rows it covers, by group here.
    {
        const tmux_session tmux(prefix + "-tmux", 200, 20,
                                std::string(SCANNER_BIN) + " watch --no-color -b " + broker_uri(port) + " -t '" +
                                    templ + "' --group 'garage=garage-*' --db " + dir + "/history.db");
        const auto shown = tmux.wait_screen("the silence beside the garage door", [](const std::string& t) {
            return t.find("1 silence") != std::string::npos && t.find("renovation") != std::string::npos;
        });
        std::stringstream lines(shown);
        for (std::string l; std::getline(lines, l);) {
            if (l.rfind("garage-door", 0) == 0) {
                EXPECT_NE(l.find("silenced until"), std::string::npos) << shown;
            }
            if (l.rfind("kitchen", 0) == 0) {
                EXPECT_EQ(l.find("silenced"), std::string::npos) << shown;
            }
        }
        tmux.keys({"q"});
        EXPECT_TRUE(tmux.wait_gone(10s)) << "q did not quit";
    }
    const auto no_history = run_to_end({SCANNER_BIN, "watch", "-b", broker_uri(port), "--db", dir + "/nonexistent.db"});
    EXPECT_EQ(no_history.code, 2) << no_history.err;

    svc->signal(SIGTERM);
    ASSERT_EQ(svc->wait_exit(15s), 0) << svc->stderr_text();
    svc = start();
    list = run_to_end({SCANNER_BIN, "silence", "--list", "--server", server, "--format", "json"});
    ASSERT_EQ(list.code, 0) << list.err;
    ASSERT_EQ(json::parse(list.out)["silences"].size(), 1u) << "kept across the restart: " << list.out;
    const auto ended = run_to_end({SCANNER_BIN, "silence", "--end", id, "--server", server});
    EXPECT_EQ(ended.code, 0) << ended.err;
    const auto again = run_to_end({SCANNER_BIN, "silence", "--end", id, "--server", server});
    EXPECT_EQ(again.code, 2) << "ended already";
    const auto no_reason = run_to_end({SCANNER_BIN, "silence", "kitchen", "--server", server});
    EXPECT_EQ(no_reason.code, 2);
    const auto nobody = run_to_end({SCANNER_BIN, "silence", "--list", "--server", "http://127.0.0.1:1"});
    EXPECT_EQ(nobody.code, 4) << nobody.err;
}

}  // namespace

namespace {

// A group's own receiver (--alert-webhook-for) gets its clients' alerts, with their groups; another client's alert
// does not go there.
TEST(alerts, a_groups_alerts_also_go_to_its_own_receiver) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto dir = test_dir();
    const int hook_port = free_port();
    hook_receiver hook;
    httplib::Server server;
    hook.serve_on(server);
    ASSERT_TRUE(server.bind_to_port("127.0.0.1", hook_port));  // bound before the service posts: none is refused
    std::thread serving([&] { server.listen_after_bind(); });
    auto svc = serve(port, templ, dir,
                     {"--alert-after", "0s", "--group", "garage=garage-*", "--alert-webhook-for",
                      "garage=http://127.0.0.1:" + std::to_string(hook_port) + "/hook"});
    for (const char* name : {"garage-door", "kitchen"}) publish_retained(port, prefix + "/" + name, "1");
    for (const char* name : {"garage-door", "kitchen"}) publish_retained(port, prefix + "/" + name, "0");
    wait_alerts(dir, 2, "both downs (exec)");
    outbox_empty(dir);  // every sink took both
    server.stop();
    serving.join();
    const auto bodies = hook.bodies();
    ASSERT_EQ(bodies.size(), 1u) << "only the garage's alert goes to the garage's receiver";
    const auto body = json::parse(bodies[0]);
    EXPECT_EQ(body["client"], "garage-door");
    EXPECT_EQ(body["groups"], json::array({"garage"}));
}

}  // namespace
