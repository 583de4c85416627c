// The service on RabbitMQ (its MQTT plugin), which delivers no retained message to a wildcard subscription: a
// service that was running keeps the right table across its own restart, because the rows its history restores are
// confirmed by their exact topics (which RabbitMQ does answer).
#include "harness.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

using namespace harness;
using json = nlohmann::json;

namespace {

int rabbit_port() { return broker_port(env_or_fail("MQTT_PRESENCE_TEST_RABBIT_DIR")); }

json history(const std::string& db, const std::string& name) {
    child h({SCANNER_BIN, "history", name, "--db", db, "--format", "json"});
    if (h.wait_exit(10s) != 0) return json();
    return json::parse(h.stdout_text(), nullptr, false);
}

json history_until(const std::string& db, const std::string& name, std::size_t events, const std::string& what) {
    json last;
    const auto deadline = steady::now() + 15s;
    while (steady::now() < deadline) {
        last = history(db, name);
        if (!last.is_discarded() && last.is_object() && last["events"].size() >= events) return last;
        std::this_thread::sleep_for(50ms);  // another process writes the file
    }
    ADD_FAILURE() << "waited for " << what << "; last: " << last.dump();
    return last;
}

struct service {
    service(int port, const std::string& templ, const std::string& db)
        : proc({SCANNER_BIN, "serve", "--broker", broker_uri(port), "--topic", templ, "--db", db, "--listen",
                "127.0.0.1:0"}) {
        const auto line = proc.wait_stderr(contains("dashboard: "), 20s);
        if (!line) throw std::runtime_error("no dashboard URL:\n" + proc.stderr_text());
        http_port = std::stoi(line->substr(line->rfind(':') + 1));
        if (!proc.wait_stderr(contains("synced"), 20s)) throw std::runtime_error("no sync:\n" + proc.stderr_text());
    }
    json clients() const {
        httplib::Client c("127.0.0.1", http_port);
        auto res = c.Get("/api/clients");
        return res ? json::parse(res->body, nullptr, false) : json();
    }
    child proc;
    int http_port = 0;
};

TEST(rabbitmq, a_service_keeps_the_right_table_across_its_own_restart) {
    const int port = rabbit_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const std::string db = std::string(TEST_TMP_DIR) + "/" + prefix + "-rabbit.db";
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());

    std::optional<service> first(std::in_place, port, templ, db);
    child alive({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "alive", "--format", "json"});
    history_until(db, "alive", 1, "alive's birth");
    {
        child dead({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "dead", "--format", "json"});
        history_until(db, "dead", 1, "dead's birth");
        dead.signal(SIGKILL);
    }
    const auto died = history_until(db, "dead", 2, "dead's will");
    ASSERT_EQ(died["events"][0]["cause"], "lost") << died.dump();
    const auto born = history(db, "alive")["events"][0];
    first->proc.signal(SIGKILL);
    first->proc.wait_exit(10s);
    first.reset();

    service second(port, templ, db);
    const auto table = second.clients();
    ASSERT_EQ(table["total"], 2) << "the restored rows were confirmed by their exact topics: " << table.dump();
    std::map<std::string, json> rows;
    for (const auto& r : table["clients"]) rows[r["client"]] = r;
    EXPECT_EQ(rows["alive"]["state"], "connected");
    EXPECT_TRUE(rows["alive"]["since"].is_string()) << "its connection's start, from the payload";
    EXPECT_TRUE(born["time"].is_string());
    EXPECT_EQ(rows["dead"]["state"], "disconnected");
    EXPECT_EQ(rows["dead"]["since"], died["events"][0]["time"]) << "the real time of death, across the restart";
    // Every restored row was asked for by its topic; a client never seen before would not be in: partial.
    EXPECT_EQ(table["scanner"]["sync"], "partial");
    EXPECT_EQ(history(db, "dead")["events"].size(), 2u) << "no removal or unseen change was recorded";
    EXPECT_EQ(history(db, "alive")["events"].size(), 1u);
}

}  // namespace
