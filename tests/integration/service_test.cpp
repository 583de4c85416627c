// The service against a real mosquitto, with real processes killed with real signals: the history keeps the time
// of every death across the service's own crashes, a death nobody watched is unseen with an unknown time, a kill -9
// in a storm leaves a consistent file, and the notary testifies on the broker (and only one notary per template).
#include "harness.hpp"
#include "history_polling.hpp"
#include "served_dashboard.hpp"

#include <mqtt_presence/service/presence_service.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>

using namespace harness;
using json = nlohmann::json;

namespace {

using sys = std::chrono::system_clock;

std::int64_t parse_iso_ms(const std::string& iso) {
    std::tm tm{};
    int ms = 0;
    if (std::sscanf(iso.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                    &tm.tm_min, &tm.tm_sec, &ms) != 7)
        throw std::runtime_error("not an ISO 8601 time: " + iso);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<std::int64_t>(timegm(&tm)) * 1000 + ms;
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(sys::now().time_since_epoch()).count();
}

// A serve process on the test's own topic tree.
struct service {
    service(int port, const std::string& templ, const std::string& db, std::vector<std::string> extra = {})
        : proc(serve_args(port, templ, db, extra)) {}

    void expect_synced() {
        ASSERT_TRUE(proc.wait_stderr(contains("synced"), 15s)) << "serve did not sync:\n" << proc.stderr_text();
    }
    child proc;
};

json snapshot_with_history(int port, const std::string& templ, const std::string& db) {
    child once({SCANNER_BIN, "once", "--broker", broker_uri(port), "--topic", templ, "--db", db, "--format", "json"});
    EXPECT_EQ(once.wait_exit(20s), 0) << once.stderr_text();
    return json::parse(once.stdout_text(), nullptr, false);
}

// The history on each backend: an SQLite file, or a database in the test process's private PostgreSQL cluster.
enum class backend { sqlite, postgresql };
class service_history : public ::testing::TestWithParam<backend> {
protected:
    static std::string fresh_history() {
        if (GetParam() == backend::sqlite) return db_path();
        static int n = 0;
        return postgres().create_database("s" + std::to_string(++n));
    }
};
INSTANTIATE_TEST_SUITE_P(backend, service_history, ::testing::Values(backend::sqlite, backend::postgresql),
                         [](const auto& p) { return p.param == backend::sqlite ? "sqlite" : "postgresql"; });

TEST_P(service_history, the_time_of_a_death_survives_the_services_own_kill_9) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto db = fresh_history();
    observer watch(port, prefix + "/#");
    // mosquitto_sub's own receive time of each message (%U), not when this test reads its line.
    child stamps({"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(port), "-q", "1", "-F", "%U %t %p", "-t",
                  prefix + "/boiler"});

    service first(port, templ, db);
    first.expect_synced();
    child sensor({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "boiler", "--format", "json"});
    watch.expect(prefix + "/boiler", contains("\"status\":1"), "the sensor's birth");
    history_until(db, "boiler", [](const json& h) { return h["events"].size() == 1; }, "the birth");

    sensor.signal(SIGKILL);
    watch.expect(prefix + "/boiler", contains("\"status\":0"), "the will");
    const auto stamped = stamps.wait_stdout(contains("\"status\":0"), 10s);
    ASSERT_TRUE(stamped) << stamps.stdout_text();
    const auto will_seen = static_cast<std::int64_t>(std::stod(stamped->substr(0, stamped->find(' '))) * 1000);
    const auto h = history_until(
        db, "boiler", [](const json& j) { return j["events"].size() == 2; }, "the death");
    const auto& death = h["events"][0];
    EXPECT_EQ(death["cause"], "lost");
    EXPECT_EQ(death["state"], "disconnected");
    EXPECT_EQ(death["previous"], "connected");
    EXPECT_EQ(death["retained"], false);
    ASSERT_TRUE(death["time"].is_string()) << death.dump();
    const auto died = parse_iso_ms(death["time"]);
    EXPECT_LE(std::llabs(died - will_seen), 100) << "the service's time of death and mosquitto_sub's differ";

    first.proc.signal(SIGKILL);
    ASSERT_EQ(first.proc.wait_exit(10s), 128 + SIGKILL);

    service second(port, templ, db);
    second.expect_synced();
    EXPECT_NE(second.proc.stderr_text().find("restored 1 clients"), std::string::npos) << second.proc.stderr_text();

    const auto snap = snapshot_with_history(port, templ, db);
    ASSERT_EQ(snap["clients"].size(), 1u) << snap.dump();
    EXPECT_EQ(snap["clients"][0]["state"], "disconnected");
    EXPECT_EQ(snap["clients"][0]["since"], death["time"]) << "the restarted history keeps the real time of death";

    // Without the history a snapshot cannot know it: a retained will carries the start of its connection.
    child plain({SCANNER_BIN, "once", "--broker", broker_uri(port), "--topic", templ, "--format", "json"});
    ASSERT_EQ(plain.wait_exit(20s), 0) << plain.stderr_text();
    EXPECT_TRUE(json::parse(plain.stdout_text())["clients"][0]["since"].is_null());

    second.proc.signal(SIGTERM);
    EXPECT_EQ(second.proc.wait_exit(10s), 0) << second.proc.stderr_text();
    const auto after = history_until(db, "boiler", [](const json&) { return true; }, "anything");
    EXPECT_EQ(after["events"].size(), 2u) << "an agreeing retained status after the restart is no new event";
}

TEST_P(service_history, a_death_while_the_service_is_down_is_unseen_with_an_unknown_time) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto db = fresh_history();
    observer watch(port, prefix + "/#");
    child sensor({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "pump", "--format", "json"});
    watch.expect(prefix + "/pump", contains("\"status\":1"), "the sensor's birth");
    {
        service svc(port, templ, db);
        svc.expect_synced();
        history_until(db, "pump", [](const json& h) { return h["events"].size() == 1; }, "the birth");
        svc.proc.signal(SIGTERM);
        ASSERT_EQ(svc.proc.wait_exit(10s), 0) << svc.proc.stderr_text();
        EXPECT_NE(svc.proc.stderr_text().find("stopped; 1 changes written"), std::string::npos)
            << svc.proc.stderr_text();
    }
    sensor.signal(SIGKILL);
    watch.expect(prefix + "/pump", contains("\"status\":0"), "the will");

    service svc(port, templ, db);
    svc.expect_synced();
    EXPECT_NE(svc.proc.stderr_text().find("1 changed while nobody watched"), std::string::npos)
        << svc.proc.stderr_text();
    const auto h = history_until(db, "pump", [](const json& j) { return j["events"].size() == 2; }, "the death");
    const auto& death = h["events"][0];
    EXPECT_EQ(death["cause"], "unseen");
    EXPECT_TRUE(death["time"].is_null()) << "nobody saw when: the time is unknown, never invented";
    EXPECT_EQ(death["retained"], true);
    EXPECT_EQ(death["previous"], "connected");

    const auto snap = snapshot_with_history(port, templ, db);
    EXPECT_EQ(snap["clients"][0]["state"], "disconnected");
    EXPECT_TRUE(snap["clients"][0]["since"].is_null());

    child uptime({SCANNER_BIN, "uptime", "--db", db, "--window", "1h", "--format", "json"});
    ASSERT_EQ(uptime.wait_exit(10s), 0) << uptime.stderr_text();
    const auto u = json::parse(uptime.stdout_text());
    ASSERT_EQ(u["clients"].size(), 1u);
    EXPECT_GT(u["clients"][0]["unknown_s"].get<int>(), 3000) << "the hour before the service ran is unknown";
}

// The row of `client` in an /api/clients answer (null when it is not there).
json row_of(const json& clients, const std::string& client) {
    for (const auto& r : clients["clients"])
        if (r["client"] == client) return r;
    return nullptr;
}

// What --expect auto learned survives the service's restart: the cadence is back at once (a sleeping device would
// need days to show three gaps again), and a client that stays silent after the restart is overdue by it.
TEST_P(service_history, a_learned_cadence_survives_a_restart_and_judges_at_once) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto db = fresh_history();
    double learned_s = 0;
    {
        served_dashboard first(port, templ, db, {"--expect", "auto"});
        first.expect_synced();
        for (int beat = 0; beat < 5; ++beat) {
            if (beat > 0) std::this_thread::sleep_for(1200ms);  // pacing: the gaps the service learns
            publish_retained(port, prefix + "/sleepy", "1");
        }
        const auto seen = first.until(
            "/api/clients", [](const json& j) { return row_of(j, "sleepy").value("cadence_s", json()).is_number(); },
            "a learned cadence");
        learned_s = row_of(seen, "sleepy")["cadence_s"].get<double>();
        EXPECT_GE(learned_s, 1.0);
        EXPECT_LT(learned_s, 3.0);
        first.proc.signal(SIGTERM);
        ASSERT_EQ(first.proc.wait_exit(10s), 0) << first.proc.stderr_text();
    }
    served_dashboard second(port, templ, db, {"--expect", "auto"});
    second.expect_synced();
    const auto [status, clients] = second.get("/api/clients");
    ASSERT_EQ(status, 200);
    const auto row = row_of(clients, "sleepy");
    ASSERT_TRUE(row["cadence_s"].is_number()) << "the cadence is not back after the restart: " << row.dump();
    EXPECT_DOUBLE_EQ(row["cadence_s"].get<double>(), learned_s);
    EXPECT_EQ(row["overdue"], false);
    second.until("/api/clients", [](const json& j) { return row_of(j, "sleepy")["overdue"] == true; },
                 "the silent client overdue by its kept cadence");
}

// A broker that lost its retained store (a restart without persistence) under a service with a large history: every
// restored row is removed at the sync's end, and the removals reach the history's queue only as fast as its writer
// takes them (the scanner holds them as compact rows meanwhile), never all at once.
TEST_P(service_history, a_resyncs_removals_wait_for_the_history_writer_instead_of_queueing_at_once) {
    using namespace mqtt_presence;
    const auto where = fresh_history();
    if (GetParam() == backend::sqlite) std::filesystem::create_directories(std::filesystem::path(where).parent_path());
    const std::string templ = "paced/{client}";
    constexpr std::size_t clients = 100000;
    {
        history_store store(history_options{where});
        store.begin_session("tcp://earlier", templ, "test");
        change c;
        c.current.status = state::connected;
        for (std::size_t i = 0; i < clients; ++i) {
            c.current.client = "c" + std::to_string(i);
            c.current.topic = "paced/" + c.current.client;
            c.at = clock::now();
            ASSERT_TRUE(store.record(c));
        }
        store.end_session();
        ASSERT_EQ(store.stats().written, clients) << store.stats().last_error;
    }
    private_broker broker;  // holds none of them
    service_options o;
    o.scan.broker.server_uri = broker_uri(broker.port());
    o.scan.topics = {templ};
    o.history.path = where;
    auto svc_holder = std::make_unique<presence_service>(o);
    auto& svc = *svc_holder;
    ASSERT_EQ(svc.restored(), clients);
    svc.start();
    std::size_t most_queued = 0;
    const auto until = steady::now() + 120s;
    history_stats f;
    while ((f = svc.history_figures()).written < clients && steady::now() < until) {
        most_queued = std::max(most_queued, f.queued);
        std::this_thread::sleep_for(1ms);  // sampling the queue, not waiting for an event
    }
    ASSERT_EQ(f.written, clients) << "the removals were not all written within 120 s: " << f.last_error;
    EXPECT_EQ(svc.table().counts().total(), 0u);
    EXPECT_LE(most_queued, presence_service::paced_backlog) << "the removals were queued faster than written";
    EXPECT_GT(most_queued, 0u) << "the sampling never saw the queue";
    EXPECT_EQ(f.dropped, 0u);
    svc_holder.reset();  // the history's one writer goes with it
    std::size_t current = 0;
    history_store(history_options{where}).for_each_current_row([&](const client_status&) { ++current; });
    EXPECT_EQ(current, 0u) << "the history still holds removed clients";
}

// A PostgreSQL password never goes on the command line (every user of the machine can read it there).
TEST(service, a_database_password_on_the_command_line_is_refused) {
    for (const std::string db : {"postgresql://presence:s3cret@127.0.0.1/presence",
                                 "host=127.0.0.1 dbname=presence password=s3cret"}) {
        child h({SCANNER_BIN, "history", "boiler", "--db", db});
        EXPECT_EQ(h.wait_exit(10s), 2) << h.stderr_text();
        EXPECT_NE(h.stderr_text().find("PGPASSWORD"), std::string::npos) << h.stderr_text();
    }
}

// Four publishers flip four clients 25,000 times each; the service is killed with -9 in the middle of it.
TEST(service, a_kill_9_in_a_storm_of_changes_leaves_a_consistent_file) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto db = db_path();
    service svc(port, templ, db);
    svc.expect_synced();

    const std::string lines = std::string(TEST_TMP_DIR) + "/" + prefix + ".lines";
    {
        std::ofstream out(lines);
        for (int i = 0; i < 25'000; ++i) out << (i % 2 == 0 ? "1\n" : "0\n");
    }
    std::vector<std::unique_ptr<child>> storm;
    for (int p = 0; p < 4; ++p)
        storm.push_back(std::make_unique<child>(std::vector<std::string>{
            "sh", "-c", "exec mosquitto_pub -p " + std::to_string(port) + " -h 127.0.0.1 -l -t " + prefix + "/storm" +
                            std::to_string(p) + " < " + lines}));
    // Kill once the writer has committed part of the storm.
    std::int64_t seen = 0;
    const auto until = steady::now() + 30s;
    while (steady::now() < until) {
        try {
            SQLite::Database peek(db, SQLite::OPEN_READONLY);
            seen = peek.execAndGet("SELECT count(*) FROM events").getInt64();
        } catch (const std::exception&) {
        }
        if (seen >= 5'000) break;
        std::this_thread::sleep_for(20ms);  // polling another process's file
    }
    ASSERT_GE(seen, 5'000) << "the storm never reached the history";
    svc.proc.signal(SIGKILL);
    ASSERT_EQ(svc.proc.wait_exit(10s), 128 + SIGKILL);
    for (auto& p : storm) p->wait_exit(60s);

    SQLite::Database file(db, SQLite::OPEN_READWRITE);  // read-write: recovers the WAL as a restart would
    EXPECT_EQ(file.execAndGet("PRAGMA integrity_check").getString(), "ok");
    const auto events = file.execAndGet("SELECT count(*) FROM events").getInt64();
    EXPECT_GE(events, seen) << "a committed batch was lost";
    EXPECT_EQ(file.execAndGet("SELECT max(id) FROM events").getInt64(), events) << "events are a prefix, no holes";
    // Every client's events form an unbroken chain (each previous is the state before), and its row in `clients`
    // is its last event: the batch that wrote one wrote the other.
    std::map<std::string, std::string> last;
    SQLite::Statement q(file, "SELECT client, previous, state FROM events ORDER BY id");
    std::size_t broken = 0;
    while (q.executeStep()) {
        const std::string client = q.getColumn(0).getString();
        const std::string previous = q.getColumn(1).isNull() ? "" : q.getColumn(1).getString();
        if (last.count(client) && last[client] != previous) ++broken;
        last[client] = q.getColumn(2).getString();
    }
    EXPECT_EQ(broken, 0u) << "a change is missing in the middle of a chain";
    for (const auto& [client, state] : last) {
        SQLite::Statement row(file, "SELECT state FROM clients WHERE client=?");
        row.bind(1, client);
        ASSERT_TRUE(row.executeStep()) << client;
        EXPECT_EQ(row.getColumn(0).getString(), state) << client;
    }
    EXPECT_EQ(file.execAndGet("SELECT count(*) FROM sessions WHERE ended_ms IS NULL").getInt(), 1)
        << "the killed session is marked as not ended";
}

TEST(service, the_notary_testifies_and_a_second_notary_refuses) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto notary = prefix + "-notary/{client}";
    const auto db = db_path();
    observer records(port, prefix + "-notary/#");
    service svc(port, templ, db, {"--notary", notary});
    svc.expect_synced();
    records.expect(prefix + "-notary", contains("\"state\":\"connected\""), "the notary's lock");

    child sensor({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "fan", "--format", "json"});
    records.expect(prefix + "-notary/fan", contains("\"cause\":\"connected\""), "the birth's record");
    sensor.signal(SIGKILL);
    const auto record = json::parse(
        records.expect(prefix + "-notary/fan", contains("\"cause\":\"lost\""), "the death's record"));
    EXPECT_EQ(record["state"], "disconnected");
    EXPECT_EQ(record["topic"], prefix + "/fan");
    ASSERT_TRUE(record["since"].is_string()) << "the record says when it died";
    EXPECT_LE(std::llabs(parse_iso_ms(record["since"]) - now_ms()), 2000);
    EXPECT_TRUE(record["observed_since"].is_string());

    // Anyone who starts later reads it from the retained store, without this project's code.
    child late({"mosquitto_sub", "-p", std::to_string(port), "-h", "127.0.0.1", "-C", "1", "-W", "5", "-t",
                prefix + "-notary/fan"});
    ASSERT_EQ(late.wait_exit(10s), 0);
    EXPECT_EQ(json::parse(late.stdout_text())["since"], record["since"]);

    child second({SCANNER_BIN, "serve", "--broker", broker_uri(port), "--topic", templ, "--db", db_path() + "2",
                  "--notary", notary, "--listen", "off"});
    EXPECT_EQ(second.wait_exit(20s), 6) << "in use: another instance holds the template";
    EXPECT_NE(second.stderr_text().find("another death notary"), std::string::npos) << second.stderr_text();
    EXPECT_EQ(json::parse(records.payloads(prefix + "-notary").back())["state"], "connected")
        << "the refused notary must not release the first one's lock";

    svc.proc.signal(SIGTERM);
    EXPECT_EQ(svc.proc.wait_exit(10s), 0) << svc.proc.stderr_text();
    records.expect(prefix + "-notary", contains("\"state\":\"disconnected\""), "the lock released at a clean stop");
}

TEST(service, a_notary_that_would_read_its_own_records_is_refused) {
    // mqtt-presence/+/x reads mqtt-presence/clients/x, a record of the default notary mqtt-presence/clients/+.
    child svc({SCANNER_BIN, "serve", "--broker", broker_uri(broker_port()), "--topic", "mqtt-presence/{client}/x",
               "--db", db_path(), "--notary", "--listen", "off"});
    EXPECT_EQ(svc.wait_exit(10s), 2);
    EXPECT_NE(svc.stderr_text().find("would read back"), std::string::npos) << svc.stderr_text();
    // A {client+} template subscribes one filter per depth: the third, homeassistant/+/+/+/config, would read
    // the Home Assistant configs homeassistant/binary_sensor/mqtt_presence/<name>/config.
    child deep({SCANNER_BIN, "serve", "--broker", broker_uri(broker_port()), "--topic", "homeassistant/{client+}/config",
                "--db", db_path(), "--ha-discovery", "--listen", "off"});
    EXPECT_EQ(deep.wait_exit(10s), 2);
    EXPECT_NE(deep.stderr_text().find("would read back"), std::string::npos) << deep.stderr_text();
}

TEST(service, uptime_counts_disconnects_and_flaps_of_real_processes) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto db = db_path();
    observer watch(port, prefix + "/#");
    service svc(port, templ, db);
    svc.expect_synced();
    // connect, die (a will), return; then three flaps: die and return at once.
    std::unique_ptr<child> sensor;
    for (int round = 0; round < 5; ++round) {
        sensor = std::make_unique<child>(
            std::vector<std::string>{SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "valve"});
        ASSERT_FALSE(watch.expect(prefix + "/valve", equals("1"), "birth " + std::to_string(round)).empty());
        if (round == 4) break;  // the last one stays
        sensor->signal(SIGKILL);
        sensor->wait_exit(5s);
        watch.expect(prefix + "/valve", equals("0"), "will " + std::to_string(round));
        history_until(db, "valve", [round](const json& h) { return h["events"].size() == 2u * (round + 1); },
                      "death " + std::to_string(round));
    }
    history_until(db, "valve", [](const json& h) { return h["events"].size() == 9; }, "the last birth");
    child uptime({SCANNER_BIN, "uptime", "--db", db, "--window", "1h", "--flap-interval", "30s", "--format", "json"});
    ASSERT_EQ(uptime.wait_exit(10s), 0) << uptime.stderr_text();
    const auto u = json::parse(uptime.stdout_text());
    ASSERT_EQ(u["clients"].size(), 1u) << u.dump();
    const auto& valve = u["clients"][0];
    EXPECT_EQ(valve["disconnects"], 4);
    EXPECT_EQ(valve["flaps"], 4) << "every return came within the flap interval";
    EXPECT_EQ(valve["state"], "connected");
    const int accounted = valve["up_s"].get<int>() + valve["down_s"].get<int>() + valve["unknown_s"].get<int>();
    EXPECT_GE(accounted, 3600 - 3) << "every second of the window is up, down or unknown (each rounded down)";
    EXPECT_LE(accounted, 3600);
    ASSERT_TRUE(valve["uptime_percent"].is_number()) << "the service watched: " << valve.dump();
    EXPECT_GT(valve["uptime_percent"].get<double>(), 0.0);
    EXPECT_LT(valve["uptime_percent"].get<double>(), 100.0) << "four outages were watched";
}

}  // namespace

namespace {

TEST(service, home_assistant_discovery_configs_appear_come_back_and_go) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto ha = prefix + "-ha";
    observer configs(port, ha + "/binary_sensor/#");
    child sensor({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "lamp", "--format", "json"});
    observer watch(port, prefix + "/#");
    watch.expect(prefix + "/lamp", contains("\"status\":1"), "the lamp's birth");
    service svc(port, templ, db_path(), {"--ha-discovery", ha});
    svc.expect_synced();

    // The config of a client that was there before the service started, found in the first sync: Home Assistant's
    // current schema, the state from the scanner's own verdict.
    const auto line = configs.expect_any(contains("\"device_class\":\"connectivity\""), "the lamp's config");
    const auto topic = line.substr(0, line.find(' '));
    EXPECT_EQ(topic.rfind(ha + "/binary_sensor/mqtt_presence/mp_lamp_", 0), 0u) << topic;
    const auto config = json::parse(line.substr(line.find(' ') + 1));
    const auto id = topic.substr(topic.find("mp_"), topic.size() - topic.find("mp_") - 7);
    EXPECT_EQ(config["unique_id"], id);
    EXPECT_EQ(config["default_entity_id"], "binary_sensor." + id);
    EXPECT_FALSE(config.contains("object_id")) << "deprecated by Home Assistant 2025.10";
    EXPECT_TRUE(config["name"].is_null()) << "the device's main entity: named by the device, not \"lamp lamp\"";
    EXPECT_EQ(config["device"]["name"], "lamp");
    EXPECT_EQ(config["origin"]["name"], "mqtt-presence");
    const auto state = ha + "/binary_sensor/mqtt_presence/" + id + "/state";
    EXPECT_EQ(config["state_topic"], state);
    EXPECT_EQ(config["payload_on"], "ON");
    EXPECT_EQ(config["payload_off"], "OFF");
    EXPECT_FALSE(config.contains("value_template")) << "the verdict needs none";
    configs.expect(state, equals("ON"), "the lamp's verdict");
    const auto availability = ha + "/binary_sensor/mqtt_presence/service/availability";
    EXPECT_EQ(config["availability_topic"], availability);
    EXPECT_EQ(config["payload_not_available"], "offline");

    // A new client gets its config as it appears.
    child second({SENSOR_BIN, "--broker", broker_uri(port), "--topic", templ, "--name", "fan"});
    configs.expect_any(contains("\"name\":\"fan\""), "the fan's config");

    // Home Assistant's birth message asks for every config again.
    const auto before = configs.payloads(topic).size();
    child birth({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-t", ha + "/status", "-m", "online"});
    ASSERT_EQ(birth.wait_exit(10s), 0);
    configs.expect(topic, contains("connectivity"), "the lamp's config again after Home Assistant's birth");
    EXPECT_GT(configs.payloads(topic).size(), before);

    // Its death is OFF; a purged client's config and state are cleared.
    sensor.signal(SIGKILL);
    watch.expect(prefix + "/lamp", contains("\"status\":0"), "the will");
    configs.expect(state, equals("OFF"), "the lamp's verdict after its death");
    child purge({SCANNER_BIN, "purge", "--all-disconnected", "--broker", broker_uri(port), "--topic", templ});
    ASSERT_EQ(purge.wait_exit(20s), 0) << purge.stderr_text();
    configs.expect(topic, equals("(null)"), "the lamp's config cleared (an empty retained message)");
    configs.expect(state, equals("(null)"), "the lamp's state cleared");

    // A service that stops for good takes its entities with it: serve --ha-discovery-remove.
    std::string fan_topic;
    for (const auto& l : configs.lines())
        if (l.find("\"name\":\"fan\"") != std::string::npos) fan_topic = l.substr(0, l.find(' '));
    ASSERT_FALSE(fan_topic.empty()) << "the fan's config was never seen";
    child remove({SCANNER_BIN, "serve", "--broker", broker_uri(port), "--topic", templ, "--ha-discovery", ha,
                  "--ha-discovery-remove"});
    EXPECT_EQ(remove.wait_exit(20s), 0) << remove.stderr_text();
    EXPECT_NE(remove.stderr_text().find("cleared the Home Assistant discovery of 1 clients"), std::string::npos)
        << remove.stderr_text();
    configs.expect(fan_topic, equals("(null)"), "the fan's config cleared by --ha-discovery-remove");
}

// The entities' availability is the service's own: online while it runs, offline after a stop and after a kill -9
// (the will of its availability connection), so Home Assistant never shows a dead service's last verdicts as current.
TEST(service, home_assistant_entities_are_unavailable_when_the_service_is_gone) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto ha = prefix + "-ha";
    const auto availability = ha + "/binary_sensor/mqtt_presence/service/availability";
    observer seen(port, availability);
    const auto db = db_path();
    {
        service svc(port, prefix + "/{client}", db, {"--ha-discovery", ha});
        seen.expect(availability, equals("online"), "online while the service runs");
        svc.proc.signal(SIGTERM);
        EXPECT_EQ(svc.proc.wait_exit(15s), 0) << svc.proc.stderr_text();
        seen.expect(availability, equals("offline"), "offline after a stop");
    }
    service svc(port, prefix + "/{client}", db, {"--ha-discovery", ha});
    seen.expect(availability, equals("online"), "online again");
    svc.proc.signal(SIGKILL);
    seen.expect(availability, equals("offline"), "offline after a kill -9: the will", 30s);
}

// Devices Home Assistant already knows (a Tasmota with its own discovery) are left out.
TEST(service, home_assistant_discovery_leaves_out_excluded_conventions) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto ha = prefix + "-ha";
    observer configs(port, ha + "/binary_sensor/#");
    const auto plug = "aaa-" + prefix;  // sorts before the lamp: an entity of its own would come first
    publish_retained(port, "tele/" + plug + "/LWT", "Online");
    publish_retained(port, prefix + "/lamp", "1");
    service svc(port, prefix + "/{client}", db_path(), {"--convention", "tasmota", "--ha-discovery", ha,
                                                          "--ha-discovery-exclude", "tasmota"});
    svc.expect_synced();
    // Configs go out in the order of the names: the plug's, if it had one, before the lamp's.
    configs.expect_any(contains("\"name\":\"lamp\""), "the lamp's config");
    for (const auto& l : configs.lines()) EXPECT_EQ(l.find(plug), std::string::npos) << "the plug got an entity: " << l;
    child bad({SCANNER_BIN, "serve", "--db", db_path(), "--ha-discovery", "--ha-discovery-exclude", "nosuch"});
    EXPECT_EQ(bad.wait_exit(10s), 2) << bad.stderr_text();
}

}  // namespace

namespace {

// Groups end to end: the service's rows carry them, `uptime --by group` sums a group's clients (a client's
// metadata from the history), and a bare --group shows only that group's clients, the rest counted as excluded.
TEST(service, groups_carry_through_the_history_uptime_and_a_filtered_snapshot) {
    const int port = broker_port();
    const auto prefix = unique_prefix();
    const auto templ = prefix + "/{client}";
    const auto db = db_path();
    publish_retained(port, prefix + "/garage-door", R"({"status":1,"power":"battery"})");
    publish_retained(port, prefix + "/garage-light", "0");
    publish_retained(port, prefix + "/kitchen", "1");
    const std::vector<std::string> groups{"--group", "garage=garage-*", "--group", "battery=meta.power=battery"};
    {
        service svc(port, templ, db, groups);
        svc.expect_synced();
        history_until(db, "kitchen", [](const json& h) { return h["events"].size() == 1; }, "the kitchen's row");
        svc.proc.signal(SIGTERM);
        ASSERT_EQ(svc.proc.wait_exit(10s), 0) << svc.proc.stderr_text();
    }
    std::vector<std::string> argv{SCANNER_BIN, "uptime", "--db", db, "--by", "group", "--format", "json"};
    argv.insert(argv.end(), groups.begin(), groups.end());
    child uptime(argv);
    ASSERT_EQ(uptime.wait_exit(10s), 0) << uptime.stderr_text();
    const auto u = json::parse(uptime.stdout_text());
    ASSERT_EQ(u["groups"].size(), 2u) << u.dump();
    EXPECT_EQ(u["groups"][0]["group"], "garage");
    EXPECT_EQ(u["groups"][0]["clients"], 2);
    EXPECT_EQ(u["groups"][0]["down_now"], 1);
    EXPECT_EQ(u["groups"][1]["group"], "battery");
    EXPECT_EQ(u["groups"][1]["clients"], 1) << "by the metadata the history kept";
    child no_rules({SCANNER_BIN, "uptime", "--db", db, "--by", "group"});
    EXPECT_EQ(no_rules.wait_exit(10s), 2);
    EXPECT_NE(no_rules.stderr_text().find("needs groups"), std::string::npos) << no_rules.stderr_text();

    std::vector<std::string> once{SCANNER_BIN, "--broker", broker_uri(port), "--topic", templ, "--format", "json"};
    once.insert(once.end(), groups.begin(), groups.end());
    once.insert(once.end(), {"--group", "garage", "once"});
    child snap(once);
    ASSERT_EQ(snap.wait_exit(20s), 0) << snap.stderr_text();
    const auto j = json::parse(snap.stdout_text());
    ASSERT_EQ(j["clients"].size(), 2u) << j.dump();
    EXPECT_EQ(j["clients"][0]["groups"], json::array({"garage", "battery"}));
    EXPECT_EQ(j["clients"][1]["groups"], json::array({"garage"}));
    EXPECT_EQ(j["stats"]["excluded"], 1) << "the kitchen, outside the group";
    EXPECT_EQ(j["groups"]["garage"]["up"], 1);
    EXPECT_EQ(j["groups"]["garage"]["down"], 1);
}

}  // namespace
