// The HTTP API of a real `serve` process, with real sensors and mosquitto: shapes, filters, paging, 404s, the live
// feed and its resume with Last-Event-ID, /metrics read by Prometheus' own text parser, /healthz when the broker
// goes, Basic auth, HTTPS, and hostile names.
#include "harness.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>
#include <atomic>

using namespace harness;
using json = nlohmann::json;

namespace {

// serve with its dashboard on a free port; url() once it printed it.
struct service {
    service(int port, const std::string& templ, std::vector<std::string> extra = {})
        : db(db_path()), proc(serve_args(port, templ, db, extra)) {
        const auto line = proc.wait_stderr(contains("dashboard: "), 15s);
        if (!line) throw std::runtime_error("serve printed no dashboard URL:\n" + proc.stderr_text());
        std::smatch m;
        std::regex_search(*line, m, std::regex(R"((https?)://([^:/]+):(\d+)/)"));
        scheme = m[1];
        http_port = std::stoi(m[3]);
        if (!proc.wait_stderr(contains("synced"), 15s)) throw std::runtime_error("serve did not sync");
    }
    httplib::Client client() const {
        httplib::Client c("127.0.0.1", http_port);
        c.set_read_timeout(10, 0);
        return c;
    }
    json get_json(const std::string& path, int expect = 200) const {
        auto c = client();
        auto res = c.Get(path.c_str());
        if (!res) throw std::runtime_error("no answer to GET " + path);
        if (expect >= 0) {
            EXPECT_EQ(res->status, expect) << path << ": " << res->body;
        }
        return json::parse(res->body, nullptr, false);
    }
    std::string db;  // the history: a file, or a database's URI
    child proc;
    std::string scheme;
    int http_port = 0;
};

// Waits (bounded) until GET `path` answers JSON that satisfies `done`.
json until(const service& svc, const std::string& path, const std::function<bool(const json&)>& done,
           const std::string& what) {
    json last;
    const auto deadline = steady::now() + 10s;
    while (steady::now() < deadline) {
        last = svc.get_json(path);
        if (done(last)) return last;
        std::this_thread::sleep_for(50ms);  // another process's table: no event reaches this test
    }
    ADD_FAILURE() << "waited for " << what << "; last: " << last.dump();
    return last;
}

TEST(dashboard_api, clients_filters_paging_one_client_and_404) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    service svc(port, prefix + "/{client}");
    std::vector<std::unique_ptr<child>> sensors;
    for (const char* name : {"alpha", "bravo", "charlie", "delta"})
        sensors.push_back(std::make_unique<child>(std::vector<std::string>{
            SENSOR_BIN, "--broker", broker_uri(port), "--topic", prefix + "/{client}", "--name", name, "--format",
            "json"}));
    until(svc, "/api/clients", [](const json& j) { return j["counts"]["connected"] == 4; }, "four connected");
    sensors[1]->signal(SIGKILL);
    until(svc, "/api/clients", [](const json& j) { return j["counts"]["disconnected"] == 1; }, "bravo's will");

    const auto all = svc.get_json("/api/clients");
    for (const char* key : {"clients", "counts", "stats", "scanner", "total", "offset", "limit"})
        EXPECT_TRUE(all.contains(key)) << key;
    EXPECT_EQ(all["total"], 4);
    EXPECT_EQ(all["clients"][0]["client"], "alpha");
    for (const char* key : {"client", "state", "since", "last_seen", "retained", "stale", "liveness", "epoch", "ip",
                            "detail", "topic", "meta"})
        EXPECT_TRUE(all["clients"][0].contains(key)) << "the once --format json row has " << key;

    const auto page = svc.get_json("/api/clients?limit=2&offset=1");
    EXPECT_EQ(page["total"], 4) << "the total of the whole match, not of the page";
    ASSERT_EQ(page["clients"].size(), 2u);
    EXPECT_EQ(page["clients"][0]["client"], "bravo");
    EXPECT_EQ(page["clients"][1]["client"], "charlie");

    const auto down = svc.get_json("/api/clients?state=disconnected");
    ASSERT_EQ(down["clients"].size(), 1u);
    EXPECT_EQ(down["clients"][0]["client"], "bravo");
    EXPECT_EQ(svc.get_json("/api/clients?q=HAR")["clients"][0]["client"], "charlie") << "case-insensitive";
    EXPECT_EQ(svc.get_json("/api/clients?sort=-client")["clients"][0]["client"], "delta");
    EXPECT_EQ(svc.get_json("/api/clients?sort=state")["clients"][0]["client"], "alpha");
    svc.get_json("/api/clients?state=sideways", 400);
    svc.get_json("/api/clients?limit=ten", 400);
    svc.get_json("/api/clients?sort=color", 400);

    const auto withh = svc.get_json("/api/clients?history=1&q=bravo");
    ASSERT_EQ(withh["history"].size(), 1u);
    EXPECT_TRUE(withh["history"][0]["timeline"].is_array());
    EXPECT_TRUE(withh["history"][0]["last_down"].is_string());

    const auto one = svc.get_json("/api/clients/charlie");
    EXPECT_EQ(one["client"], "charlie");
    EXPECT_EQ(one["state"], "connected");
    EXPECT_EQ(svc.get_json("/api/clients/nobody", 404)["error"], "no such client");
    svc.get_json("/api/clients/charlie?topic=elsewhere/charlie", 404);

    const auto h = until(svc, "/api/clients/bravo/history?since=1h",
                         [](const json& j) { return j["events"].size() == 2; }, "bravo's birth and death written");
    ASSERT_EQ(h["events"].size(), 2u);
    EXPECT_EQ(h["events"][0]["cause"], "lost");
    svc.get_json("/api/clients/bravo/history?since=yesterday", 400);
    const auto u = svc.get_json("/api/uptime?window=1h");
    EXPECT_EQ(u["window"], "1h");
    EXPECT_EQ(u["clients"].size(), 4u);
}

// Reads the live feed until `stop` says so (or 10 s pass); returns the raw text.
std::string read_feed(const service& svc, const std::string& last_id, const std::function<bool(const std::string&)>& stop) {
    auto c = svc.client();
    std::string text;
    httplib::Headers headers;
    if (!last_id.empty()) headers.emplace("Last-Event-ID", last_id);
    const auto deadline = steady::now() + 10s;
    c.Get("/api/events", headers, [&](const char* data, std::size_t n) {
        text.append(data, n);
        return !stop(text) && steady::now() < deadline;
    });
    return text;
}

TEST(dashboard_api, the_live_feed_sends_changes_with_ids_and_a_reconnect_misses_nothing) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    service svc(port, prefix + "/{client}");
    std::string first;
    std::thread reader([&] {
        first = read_feed(svc, "", [](const std::string& t) { return t.find("\"cause\":\"lost\"") != std::string::npos; });
    });
    // The sensor's whole life comes after the viewer is connected (the service counts its viewers).
    const auto deadline = steady::now() + 10s;
    for (;;) {
        auto c = svc.client();
        auto res = c.Get("/metrics");
        if (res && res->body.find("mqtt_presence_http_viewers 1") != std::string::npos) break;
        ASSERT_LT(steady::now(), deadline) << "the viewer never connected";
        std::this_thread::sleep_for(20ms);  // polling another process
    }
    child sensor({SENSOR_BIN, "--broker", broker_uri(port), "--topic", prefix + "/{client}", "--name", "echo",
                  "--format", "json"});
    // The birth committed (and so sent) before the death: two batches, two ids.
    until(svc, "/api/clients/echo/history", [](const json& j) { return j["events"].size() == 1; }, "echo's birth");
    sensor.signal(SIGKILL);
    reader.join();
    EXPECT_NE(first.find("event: scanner"), std::string::npos) << first;
    EXPECT_NE(first.find("\"cause\":\"connected\""), std::string::npos) << first;
    EXPECT_NE(first.find("\"cause\":\"lost\""), std::string::npos) << first;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(first, m, std::regex(R"(id: (\d+)\nevent: changes\ndata: .*"cause":"connected")")))
        << first;
    const auto connected_id = m[1].str();

    // A viewer that saw the birth and reconnects gets the death from the file, without asking anything else.
    const auto resumed = read_feed(svc, connected_id, [](const std::string& t) {
        return t.find("\"cause\":\"lost\"") != std::string::npos;
    });
    EXPECT_NE(resumed.find("\"cause\":\"lost\""), std::string::npos) << resumed;
    EXPECT_EQ(resumed.find("\"cause\":\"connected\""), std::string::npos) << "nothing it had seen: " << resumed;
}

TEST(dashboard_api, metrics_pass_prometheus_parser_and_names_are_escaped) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    service svc(port, prefix + "/{client}");
    const std::string hostile = "q\"uote\\back} slash <script>";  // (mosquitto refuses control characters)
    publish_retained(port, prefix + "/" + hostile, "1");
    until(svc, "/api/clients", [](const json& j) { return j["total"] == 1; }, "the hostile client");
    auto c = svc.client();
    auto res = c.Get("/metrics");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_NE(res->get_header_value("Content-Type").find("text/plain"), std::string::npos);
    // Prometheus' own text parser (python3-prometheus-client) must read every family.
    child parse({"/usr/bin/python3", "-c",
                 "import sys\n"
                 "from prometheus_client.parser import text_string_to_metric_families\n"
                 "fams = {f.name: f for f in text_string_to_metric_families(sys.argv[1])}\n"
                 "for name in ['mqtt_presence_up', 'mqtt_presence_clients', 'mqtt_presence_scanner_connected',\n"
                 "             'mqtt_presence_transitions', 'mqtt_presence_history_backlog']:\n"
                 "    assert name in fams, name\n"
                 "labels = [s.labels['client'] for s in fams['mqtt_presence_up'].samples]\n"
                 "print(repr(labels))\n",
                 res->body});
    EXPECT_EQ(parse.wait_exit(20s), 0) << parse.stderr_text() << "\n" << res->body;
    EXPECT_NE(parse.stdout_text().find("<script>"), std::string::npos) << parse.stdout_text();
    // And Prometheus' own linter.
    const std::string file = std::string(TEST_TMP_DIR) + "/" + prefix + ".metrics";
    std::ofstream(file) << res->body;
    child lint({"sh", "-c", "promtool check metrics < '" + file + "'"});
    EXPECT_EQ(lint.wait_exit(20s), 0) << lint.stdout_text() << lint.stderr_text();
    EXPECT_NE(res->body.find("client=\"q\\\"uote\\\\back} slash <script>\""), std::string::npos)
        << "quote and backslash escaped per the text format:\n" << res->body;

    const auto listing = svc.get_json("/api/clients");
    EXPECT_EQ(listing["clients"][0]["client"], hostile) << "JSON carries the exact text";
}

// A page of /api/clients is built once for every viewer that asks for it while the table stands still, and never
// outlives a change: the next ask after a death shows it.
TEST(dashboard_api, viewers_share_a_page_until_the_table_changes) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    service svc(port, prefix + "/{client}");
    for (const char* name : {"alpha", "bravo"}) publish_retained(port, prefix + "/" + name, "1");
    const std::string page = "/api/clients?limit=100&offset=0&sort=client&history=1";
    until(svc, page, [](const json& j) { return j["counts"]["connected"] == 2; }, "two connected");
    const auto counter = [&svc](const std::string& name) {
        auto c = svc.client();
        const auto res = c.Get("/metrics");
        if (!res) throw std::runtime_error("no /metrics");
        std::smatch m;
        if (!std::regex_search(res->body, m, std::regex("\n" + name + " (\\d+)\n")))
            throw std::runtime_error(name + " not in /metrics");
        return std::stoull(m[1]);
    };
    const auto built = counter("mqtt_presence_http_pages_built_total");
    const auto shared = counter("mqtt_presence_http_pages_shared_total");
    std::vector<std::thread> viewers;
    std::atomic<int> answered{0};
    for (int v = 0; v < 20; ++v)
        viewers.emplace_back([&] {
            auto c = svc.client();
            const auto res = c.Get(page.c_str());
            if (res && res->status == 200 && json::parse(res->body)["counts"]["connected"] == 2) ++answered;
        });
    for (auto& t : viewers) t.join();
    EXPECT_EQ(answered, 20);
    const auto built_now = counter("mqtt_presence_http_pages_built_total") - built;
    const auto shared_now = counter("mqtt_presence_http_pages_shared_total") - shared;
    EXPECT_EQ(built_now + shared_now, 20u);
    std::cerr << "20 viewers: the page built " << built_now << " times, shared " << shared_now << " times\n";
    EXPECT_LE(built_now, 3u) << "20 viewers asking for one page of a table standing still: built " << built_now
                             << " times, shared " << shared_now;

    // A viewer told of a change by the live feed never gets a page from before it.
    std::string told;
    std::thread viewer([&] {
        told = read_feed(svc, "", [](const std::string& t) {
            return t.find("\"client\":\"bravo\"") != std::string::npos &&
                   t.find("\"state\":\"disconnected\"") != std::string::npos;
        });
    });
    const auto deadline = steady::now() + 10s;
    while (counter("mqtt_presence_http_viewers") != 1) {
        ASSERT_LT(steady::now(), deadline) << "the viewer never connected";
        std::this_thread::sleep_for(20ms);  // polling another process
    }
    EXPECT_EQ(svc.get_json(page)["counts"]["connected"], 2) << "a page built before the change, to be shared";
    publish_retained(port, prefix + "/bravo", "0");
    viewer.join();
    ASSERT_NE(told.find("\"client\":\"bravo\""), std::string::npos) << told;
    const auto after = svc.get_json(page);
    EXPECT_EQ(after["counts"]["disconnected"], 1) << "a page from before what the feed told: " << after.dump();
}

TEST(dashboard_api, healthz_turns_503_when_the_broker_goes) {
    private_broker broker;
    const auto prefix = unique_prefix();
    service svc(broker.port(), prefix + "/{client}", {"--keepalive", "1"});
    auto c = svc.client();
    auto res = c.Get("/healthz");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    broker.crash();
    const auto deadline = steady::now() + 10s;
    while (steady::now() < deadline) {
        res = c.Get("/healthz");
        if (res && res->status == 503) break;
        std::this_thread::sleep_for(50ms);  // polling another process
    }
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 503);
    EXPECT_NE(res->body.find("not connected"), std::string::npos) << res->body;
    const auto clients = svc.get_json("/api/clients");
    EXPECT_EQ(clients["scanner"]["connected"], false) << "the API says its data is as of then";
}

// PostgreSQL stopped for 30 s during a storm: /healthz and the log say so, the dashboard keeps answering, the
// changes wait in memory, and once the server is back every one of them is written (none dropped).
TEST(dashboard_api, the_database_away_for_30_s_in_a_storm_loses_nothing) {
    auto* cluster = history_cluster();
    if (!cluster) GTEST_SKIP() << "the history is a file here (this test runs as postgresql/...)";
    const int port = broker_port();
    const auto prefix = unique_prefix();
    service svc(port, prefix + "/{client}");
    const auto history = [&] { return svc.get_json("/healthz", -1)["history"]; };
    const std::string lines = std::string(TEST_TMP_DIR) + "/" + prefix + ".lines";
    {
        std::ofstream out(lines);
        for (int i = 0; i < 10'000; ++i) out << (i % 2 == 0 ? "1\n" : "0\n");
    }
    cluster->stop();
    const auto stopped = steady::now();
    std::vector<std::unique_ptr<child>> storm;
    for (int p = 0; p < 2; ++p)
        storm.push_back(std::make_unique<child>(std::vector<std::string>{
            "sh", "-c", "exec mosquitto_pub -p " + std::to_string(port) + " -h 127.0.0.1 -l -t " + prefix + "/storm" +
                            std::to_string(p) + " < " + lines}));
    auto c = svc.client();
    int status = 0;
    std::string body;
    while (steady::now() < stopped + 10s) {
        if (auto res = c.Get("/healthz")) {
            status = res->status;
            body = res->body;
        }
        if (status == 503) break;
        std::this_thread::sleep_for(20ms);  // polling another process
    }
    ASSERT_EQ(status, 503) << "/healthz never said the history is failing: " << body;
    std::cout << "/healthz said the history fails "
              << std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - stopped).count()
              << " ms after the server stopped\n";
    EXPECT_NE(body.find("history: "), std::string::npos) << body;
    EXPECT_TRUE(svc.proc.wait_stderr(contains("changes kept in memory"), 10s)) << svc.proc.stderr_text();
    for (auto& p : storm) EXPECT_EQ(p->wait_exit(60s), 0);
    while (steady::now() < stopped + 30s) {  // the dashboard answers all along
        const auto page = svc.get_json("/api/clients?limit=100&history=1");  // what the page asks
        EXPECT_EQ(page["clients"].size(), 2u) << page.dump();
        EXPECT_TRUE(page["history"].is_null()) << "no figures while the database is away: " << page.dump();
        EXPECT_TRUE(page.contains("history_error")) << page.dump();
        std::this_thread::sleep_for(500ms);
    }
    const auto away = history();
    EXPECT_EQ(away["failing"], true) << away.dump();
    EXPECT_GT(away["backlog"].get<int>(), 0) << away.dump();
    cluster->start();
    json back;
    const auto until = steady::now() + 30s;
    while (steady::now() < until) {
        back = history();
        if (back["failing"] == false && back["backlog"] == 0) break;
        std::this_thread::sleep_for(100ms);  // polling another process
    }
    ASSERT_EQ(back["failing"], false) << "the history did not recover: " << back.dump();
    EXPECT_EQ(back["backlog"], 0) << back.dump();
    EXPECT_EQ(back["dropped"], 0) << back.dump();
    const auto written = back["written"].get<std::int64_t>();
    EXPECT_GE(written, away["backlog"].get<std::int64_t>());
    const auto counted =
        cluster->psql(svc.db.substr(svc.db.rfind('/') + 1), "SELECT count(*) FROM mqtt_presence.events");
    EXPECT_EQ(counted, std::to_string(written)) << "every change the service took is in the database, once";
    EXPECT_EQ(svc.get_json("/healthz", 200)["status"], "ok");
}

TEST(dashboard_api, basic_auth_https_and_a_warning_for_an_open_listener) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const std::string dir = std::string(TEST_TMP_DIR) + "/" + prefix;
    std::filesystem::create_directories(dir);
    self_signed_cert(dir);
    setenv("DASH_PW", "s3cret", 1);
    service svc(port, prefix + "/{client}",
                {"--http-user", "viewer", "--http-pw-env", "DASH_PW", "--http-cert", dir + "/cert.pem", "--http-key",
                 dir + "/key.pem"});
    EXPECT_EQ(svc.scheme, "https");
    httplib::SSLClient c("127.0.0.1", svc.http_port);
    c.enable_server_certificate_verification(true);
    c.set_ca_cert_path((dir + "/cert.pem").c_str());
    auto res = c.Get("/api/clients");
    ASSERT_TRUE(res) << "no TLS answer: " << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 401);
    c.set_basic_auth("viewer", "wrong");
    EXPECT_EQ(c.Get("/api/clients")->status, 401);
    c.set_basic_auth("viewer", "s3cret");
    EXPECT_EQ(c.Get("/api/clients")->status, 200);

    child open({SCANNER_BIN, "serve", "--broker", broker_uri(port), "--topic", prefix + "/{client}", "--db",
                db_path(), "--listen", "0.0.0.0:0"});
    EXPECT_TRUE(open.wait_stderr(contains("without a password"), 15s)) << open.stderr_text();
    child missing({SCANNER_BIN, "serve", "--db", db_path(), "--http-user", "u", "--http-pw-env", "NOT_SET_X"});
    EXPECT_EQ(missing.wait_exit(10s), 2);
    child badlisten({SCANNER_BIN, "serve", "--db", db_path(), "--listen", "localhost"});
    EXPECT_EQ(badlisten.wait_exit(10s), 2);
}

}  // namespace
