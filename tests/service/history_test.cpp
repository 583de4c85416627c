// The history against real SQLite files and a real PostgreSQL cluster (started by the fixture): what is written is
// what is read back, uptime figures are exact over a scripted day, and histories that are not ours (or newer than
// us) are refused. The tests named backend/history.*/sqlite|postgresql run on both.
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/service/history_reader.hpp>
#include <mqtt_presence/service/history_store.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#include <pqxx/pqxx>
#include <gtest/gtest.h>

#include "../postgres_cluster.hpp"
#include "../../service/src/recent_changes.hpp"

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

using namespace mqtt_presence;
using namespace std::chrono_literals;

namespace {

const time_point t0 = time_point(std::chrono::milliseconds(1'700'000'000'000));

std::string fresh_path() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info->name();
    for (auto& c : name)
        if (c == '/') c = '_';
    const std::string path = std::string(TEST_TMP_DIR) + "/" + name + "-" + std::to_string(getpid()) + ".db";
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
    return path;
}

// The cluster of this test process, started at its first use and stopped at the end.
test_support::postgres_cluster& cluster() {
    static test_support::postgres_cluster c;
    return c;
}

enum class backend { sqlite, postgresql };

// A history on each backend: a fresh file, or a fresh database in the private cluster.
class history : public ::testing::TestWithParam<backend> {
protected:
    std::string fresh() {
        if (GetParam() == backend::sqlite) return where_ = fresh_path();
        static int n = 0;
        database_ = "h" + std::to_string(++n);
        return where_ = cluster().create_database(database_);
    }
    // The first column of the first row of `sql` on the history, as text.
    std::string query(const std::string& sql) {
        if (GetParam() == backend::postgresql)
            return cluster().psql(database_, "SET search_path TO mqtt_presence; " + sql);
        SQLite::Database db(where_);
        return db.execAndGet(sql).getString();
    }
    std::string where_, database_;
};

INSTANTIATE_TEST_SUITE_P(backend, history, ::testing::Values(backend::sqlite, backend::postgresql),
                         [](const auto& p) { return p.param == backend::sqlite ? "sqlite" : "postgresql"; });

// A table whose changes go into the store, as the service's delivery thread does it.
struct recorder {
    explicit recorder(history_store& s) : store(&s) {}
    connection_table table;
    history_store* store;
    std::string topic_prefix = "sensors/connected/";

    void apply(const std::string& name, const std::string& payload, time_point at, bool retained = false) {
        auto c = table.apply(name, decode(payload), retained, at);
        if (!c) return;
        c->current.topic = topic_prefix + name;
        store->record(*c);
    }
};

TEST(history_event, causes_follow_the_payload_and_whether_the_change_was_seen) {
    connection_table t;
    auto c = t.apply("s1", decode("{\"status\":1,\"epoch\":5}"), false, t0);
    EXPECT_EQ(cause_of(*c), cause::connected);
    c = t.apply("s1", decode("{\"status\":0,\"epoch\":5,\"reason\":\"lost\"}"), false, t0 + 1s);
    EXPECT_EQ(cause_of(*c), cause::lost);
    c = t.apply("s1", decode("{\"status\":1,\"epoch\":6}"), false, t0 + 2s);
    c = t.apply("s1", decode("{\"status\":0,\"epoch\":6,\"reason\":\"clean\"}"), false, t0 + 3s);
    EXPECT_EQ(cause_of(*c), cause::clean);
    c = t.apply("plain", decode("1"), false, t0);
    c = t.apply("plain", decode("0"), false, t0 + 1s);
    EXPECT_EQ(cause_of(*c), cause::unknown) << "a plain 0 does not say whether it was a will";
    c = t.apply("plain", decode("1"), true, t0 + 2s);
    EXPECT_EQ(cause_of(*c), cause::unseen) << "a retained status that differs: it changed while nobody watched";
    const auto e = event_of(*c);
    EXPECT_FALSE(e.time) << "when it happened is unknown";
    EXPECT_TRUE(e.retained);
    c = t.apply("plain", decode(""), false, t0 + 3s);
    EXPECT_EQ(cause_of(*c), cause::removed);
    EXPECT_EQ(event_of(*c).time, t0 + 3s);
}

TEST_P(history, writes_every_change_and_reads_it_back_newest_first) {
    const auto path = fresh();
    {
        history_store store({path});
        store.begin_session("tcp://127.0.0.1:1883", "sensors/connected/{client}", "test");
        recorder r(store);
        r.apply("kitchen", "{\"status\":1,\"epoch\":7,\"ip\":\"10.0.0.7\"}", t0);
        r.apply("kitchen", "{\"status\":0,\"epoch\":7,\"reason\":\"lost\",\"ip\":\"10.0.0.7\"}", t0 + 5s);
        r.apply("hall", "1", t0 + 6s);
        r.apply("hall", "", t0 + 7s);
        store.end_session();
        EXPECT_EQ(store.stats().written, 4u);
        EXPECT_EQ(store.stats().dropped, 0u);
    }
    const history_reader reader(path);
    const auto events = reader.events_of("kitchen", t0 - 1h);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].why, cause::lost);
    EXPECT_EQ(events[0].time, t0 + 5s);
    EXPECT_EQ(events[0].previous, state::connected);
    EXPECT_EQ(events[0].status, state::disconnected);
    EXPECT_EQ(events[0].epoch, 7u);
    EXPECT_EQ(events[0].ip, "10.0.0.7");
    EXPECT_EQ(events[0].topic, "sensors/connected/kitchen");
    EXPECT_FALSE(events[0].retained);
    EXPECT_EQ(events[1].why, cause::connected);
    EXPECT_FALSE(events[1].previous);
    EXPECT_EQ(reader.events_of("kitchen", t0 + 1s).size(), 1u) << "--since cuts older events";

    const auto rows = reader.current_rows();
    ASSERT_EQ(rows.size(), 1u) << "hall was removed";
    EXPECT_EQ(rows[0].client, "kitchen");
    EXPECT_EQ(rows[0].status, state::disconnected);
    EXPECT_EQ(rows[0].since, t0 + 5s) << "the real time of death";
    EXPECT_EQ(rows[0].last_down, t0 + 5s);
    EXPECT_EQ(rows[0].transitions, 1u);
    EXPECT_EQ(rows[0].topic, "sensors/connected/kitchen");
}

// A client's events form one chain across batches and across the store's restarts (its head is read back from the
// history), removals included.
TEST_P(history, a_clients_events_chain_across_batches_and_restarts) {
    const auto path = fresh();
    const auto session = [&](const std::vector<std::pair<std::string, std::string>>& changes, time_point at) {
        history_options o{path};
        o.keep = std::chrono::hours(24 * 365 * 50);  // t0 is years ago: nothing pruned
        history_store store(o);
        store.begin_session("b", "t", "o");
        recorder r(store);
        store.for_each_current_row([&r](const client_status& row) { r.table.restore(row); });  // as serve does
        for (const auto& [name, payload] : changes) r.apply(name, payload, at);
        store.end_session();
    };
    session({{"a", "1"}, {"b", "1"}}, t0);
    session({{"a", "0"}, {"b", ""}}, t0 + 1min);
    session({{"a", "1"}}, t0 + 2min);
    const history_reader reader(path);
    const auto a = reader.events_of("a", t0 - 1h);
    ASSERT_EQ(a.size(), 3u) << "the chain broke between sessions";
    EXPECT_EQ(a[0].status, state::connected);
    EXPECT_EQ(a[1].status, state::disconnected);
    EXPECT_EQ(reader.events_of("b", t0 - 1h).size(), 2u) << "a removal ends the chain, it does not cut it";
    const auto rows = reader.current_rows();
    ASSERT_EQ(rows.size(), 1u) << "b was removed";
    EXPECT_EQ(rows[0].client, "a");
}

// Every event pruned, then new ones: ids are never handed out again (the clients' chains point to the old ones),
// so a chain stays a chain and a live feed's resume point stays behind every new event.
// A follower's table saw the same messages as the leader, a few milliseconds later, and three more after the
// leader's last commit: at its takeover it writes those three and nothing the leader wrote. Plain "1"/"0" repeat
// their keys (order and time decide); an epoch's change has its own.
TEST_P(history, a_follower_writes_only_what_the_leader_had_not) {
    const auto path = fresh();
    detail::recent_changes seen;
    seen.mark(0, std::nullopt);  // an empty history
    connection_table mine;
    const auto follow = [&](const std::string& name, const std::string& payload, time_point at) {
        auto c = mine.apply(name, decode(payload), false, at + 3ms);
        ASSERT_TRUE(c);
        c->current.topic = "sensors/connected/" + name;
        seen.add(*c);
    };
    {
        history_store store({path});
        store.begin_session("tcp://127.0.0.1:1883", "sensors/connected/{client}", "leader");
        recorder r(store);
        int i = 0;
        for (const char* p : {"1", "0", "1", "0", "1", "0"}) {  // before the mark's margin, then after it
            const auto at = t0 + 1s + 500ms * i++;
            r.apply("storm", p, at);
            follow("storm", p, at);
        }
        r.apply("pump", "{\"status\":1,\"epoch\":5}", t0 + 3s);
        follow("pump", "{\"status\":1,\"epoch\":5}", t0 + 3s);
        r.apply("valve", "{\"status\":1,\"epoch\":8}", t0 + 3s);  // this table lags: two of them come later
        follow("valve", "{\"status\":1,\"epoch\":8}", t0 + 3s);
        r.apply("valve", "{\"status\":0,\"epoch\":8}", t0 + 4s);
        r.apply("valve", "{\"status\":1,\"epoch\":9}", t0 + 4s + 100ms);
        store.end_session();  // the leader's last commit
    }
    follow("storm", "1", t0 + 5s);
    follow("storm", "0", t0 + 5s + 100ms);
    follow("pump", "{\"status\":0,\"epoch\":5,\"reason\":\"lost\"}", t0 + 5s + 200ms);
    seen.mark(10, t0 + 4s + 100ms);  // the newest event: the valve's last

    const history_reader reader(path);
    const auto missing = seen.unwritten(reader);
    ASSERT_EQ(missing.size(), 3u);
    EXPECT_EQ(missing[0].current.client, "storm");
    EXPECT_EQ(missing[0].current.status, state::connected);
    EXPECT_EQ(missing[0].at, t0 + 5s + 3ms);
    EXPECT_EQ(missing[1].current.status, state::disconnected);
    EXPECT_EQ(missing[2].current.client, "pump");
    EXPECT_EQ(cause_of(missing[2]), cause::lost);
    const auto lagging = [&](const std::string& payload, time_point at) {
        auto c = mine.apply("valve", decode(payload), false, at);
        c->current.topic = "sensors/connected/valve";
        return seen.written_ahead(*c);
    };
    EXPECT_TRUE(lagging("{\"status\":0,\"epoch\":8}", t0 + 6s)) << "the leader wrote it before it died";
    EXPECT_TRUE(lagging("{\"status\":1,\"epoch\":9}", t0 + 6s + 10ms));
    EXPECT_FALSE(lagging("{\"status\":0,\"epoch\":9}", t0 + 6s + 20ms)) << "beyond what the leader wrote";
    EXPECT_TRUE(seen.unwritten(reader).empty()) << "each is handed over once";
}

TEST_P(history, ids_keep_growing_after_everything_was_pruned) {
    const auto path = fresh();
    std::int64_t last_before = 0;
    for (int round = 0; round < 2; ++round) {
        history_store store({path});  // keeps 30 days: t0 is older, so each start prunes what the last one wrote
        store.begin_session("b", "t", "o");
        recorder r(store);
        store.for_each_current_row([&r](const client_status& row) { r.table.restore(row); });
        r.apply("a", round == 0 ? "1" : "0", t0 + std::chrono::minutes(round));
        r.apply("b", round == 0 ? "1" : "0", t0 + std::chrono::minutes(round));
        store.end_session();
        const auto events = history_reader(path).events_after(0, 100);
        ASSERT_FALSE(events.empty());
        EXPECT_GT(events.back().id, last_before) << "an id was handed out again";
        last_before = events.back().id;
    }
    const history_reader reader(path);
    const auto a = reader.events_of("a", t0 - 1h);
    ASSERT_FALSE(a.empty());
    EXPECT_EQ(a[0].status, state::disconnected);
    EXPECT_LE(a.size(), 2u);
}

TEST_P(history, hostile_names_are_stored_as_they_came) {
    const auto path = fresh();
    const std::string name = "x'); DROP TABLE events; --\x1b[2J";
    const std::string payload("\xff\xfe\0bytes\tand\\tabs\n", 17);  // not UTF-8, a NUL, COPY's own escapes
    std::string raw;
    {
        history_store store({path});
        store.begin_session("b", "t", "o");
        recorder r(store);
        r.apply(name, "1", t0);
        r.apply("binary", payload, t0);
        raw = r.table.find("binary")->raw;
        store.end_session();
        EXPECT_EQ(store.stats().written, 2u);
        EXPECT_EQ(store.stats().write_errors, 0u) << store.stats().last_error;
    }
    const history_reader reader(path);
    ASSERT_EQ(reader.events_of(name, t0 - 1s).size(), 1u);
    const auto rows = reader.current_rows();
    ASSERT_EQ(rows.size(), 2u);
    const auto& hostile = rows[0].client == name ? rows[0] : rows[1];
    EXPECT_EQ(hostile.client, name);
    const auto& binary = rows[0].client == name ? rows[1] : rows[0];
    EXPECT_EQ(binary.status, state::unknown);
    EXPECT_EQ(binary.raw, raw);
    EXPECT_NE(raw.find("bytes"), std::string::npos) << raw;
}

// One hour, watched throughout: connect, die for 10 minutes, return, then three short flaps.
TEST_P(history, uptime_over_a_scripted_hour_is_exact) {
    const auto path = fresh();
    {
        history_store store({path});
        store.begin_session("b", "t", "o");
        store.watching(true, t0);
        recorder r(store);
        r.apply("s1", "1", t0);
        r.apply("s1", "0", t0 + 10min);
        r.apply("s1", "1", t0 + 20min);
        r.apply("s1", "0", t0 + 30min);
        r.apply("s1", "1", t0 + 30min + 10s);
        r.apply("s1", "0", t0 + 40min);
        r.apply("s1", "1", t0 + 40min + 20s);
        r.apply("s1", "0", t0 + 50min);
        r.apply("s1", "1", t0 + 50min + 30s);
        store.watching(false, t0 + 60min);
        store.end_session();
    }
    const history_reader reader(path);
    const auto rows = reader.uptime(t0, t0 + 60min, 1min);
    ASSERT_EQ(rows.size(), 1u);
    const auto& f = rows[0];
    EXPECT_EQ(f.client, "s1");
    EXPECT_EQ(f.state, "connected");
    EXPECT_EQ(f.up, 49min);
    EXPECT_EQ(f.down, 11min);
    EXPECT_EQ(f.unknown, 0min);
    EXPECT_EQ(f.disconnects, 4u);
    EXPECT_EQ(f.flaps, 3u) << "the 10-minute outage is no flap";
    EXPECT_EQ(f.longest_outage, 10min);
    ASSERT_TRUE(f.uptime_percent());
    EXPECT_NEAR(*f.uptime_percent(), 100.0 * 49 / 60, 1e-9);

    // Half an hour into the window and out: the state before is what the first event changed from.
    const auto late = reader.uptime(t0 + 35min, t0 + 60min, 1min).at(0);
    EXPECT_EQ(late.up, 25min - 50s);
    EXPECT_EQ(late.down, 50s);
    EXPECT_EQ(late.disconnects, 2u);
}

TEST_P(history, time_nobody_watched_is_unknown_not_up_or_down) {
    const auto path = fresh();
    {
        history_store store({path});
        store.begin_session("b", "t", "o");
        store.watching(true, t0);
        recorder r(store);
        r.apply("s1", "1", t0);
        r.apply("s1", "0", t0 + 10min);
        store.watching(false, t0 + 15min);  // the service lost the broker, or stopped
        store.end_session();
    }
    const history_reader reader(path);
    const auto f = reader.uptime(t0, t0 + 60min, 1min).at(0);
    EXPECT_EQ(f.up, 10min);
    EXPECT_EQ(f.down, 5min);
    EXPECT_EQ(f.unknown, 45min);
    EXPECT_EQ(f.state, "disconnected");
    const auto before = reader.uptime(t0 - 2h, t0 - 1h, 1min).at(0);
    EXPECT_FALSE(before.uptime_percent()) << "no watched time: no uptime, not 0 % and not 100 %";
}

TEST_P(history, a_full_queue_drops_counts_and_records_the_gap) {
    const auto path = fresh();
    history_options o{path};
    o.queue_limit = 2;
    {
        history_store store(o);
        recorder r(store);
        // No session yet: nothing drains the queue.
        r.apply("a", "1", t0);
        r.apply("b", "1", t0 + 1s);
        r.apply("c", "1", t0 + 2s);
        EXPECT_EQ(store.stats().dropped, 1u);
        EXPECT_EQ(store.stats().queued, 2u);
        store.begin_session("b", "t", "o", [&r](const std::function<void(const client_status&)>& visit) {
            r.table.for_each([&](const client_status& row) {
                auto copy = row;
                copy.topic = r.topic_prefix + row.client;
                visit(copy);
            });
        });
        store.end_session();
        EXPECT_EQ(store.stats().written, 2u);
    }
    EXPECT_EQ(query("SELECT count(*) FROM gaps"), "1");
    EXPECT_EQ(query("SELECT dropped FROM gaps"), "1");
    EXPECT_EQ(query("SELECT from_ms FROM gaps"), "1700000002000");
    EXPECT_EQ(query("SELECT count(*) FROM clients"), "3")
        << "the current rows were rewritten from the live table, the dropped client's too";
}

TEST(history_store, a_newer_schema_is_refused_with_a_clear_error) {
    const auto path = fresh_path();
    { history_store store({path}); }
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE);
        db.exec("PRAGMA user_version=99");
    }
    try {
        history_store store({path});
        FAIL() << "a schema from the future was opened";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
    }
    EXPECT_THROW(history_reader{path}, error);
}

TEST(history_store, a_file_that_is_not_a_history_is_refused) {
    const auto path = fresh_path();
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        db.exec("CREATE TABLE invoices(id INTEGER)");
    }
    try {
        history_store store({path});
        FAIL() << "somebody else's database was taken over";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("not an mqtt-presence history"), std::string::npos) << e.what();
    }
    {
        std::FILE* f = std::fopen((path + ".txt").c_str(), "w");
        std::fputs("hello, not a database at all\n", f);
        std::fclose(f);
    }
    EXPECT_THROW(history_store({path + ".txt"}), error);
    EXPECT_THROW(history_reader{path + ".missing"}, error);
}

}  // namespace

namespace {

TEST(history_store, a_full_disk_is_said_clearly_and_the_changes_wait_in_memory) {
    const auto path = fresh_path();
    history_options o{path};
    o.max_bytes = 96 * 1024;  // a few pages beyond the schema: the file fills up as a disk would
    std::mutex m;
    std::condition_variable cv;
    std::vector<std::string> warnings;
    history_store store(o);
    store.begin_session("b", "t", "o", {}, [&](const std::string& w) {
        std::lock_guard<std::mutex> lock(m);
        warnings.push_back(w);
        cv.notify_all();
    });
    recorder r(store);
    const std::string big(2000, 'x');
    for (int i = 0; i < 200; ++i)
        r.apply("client-" + std::to_string(i) + big.substr(0, 200), "{\"status\":1,\"ip\":\"" + big + "\"}", t0);
    {
        std::unique_lock<std::mutex> lock(m);
        ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return !warnings.empty(); }))
            << "no warning about the full file";
        EXPECT_NE(warnings[0].find("full"), std::string::npos) << warnings[0];
        EXPECT_NE(warnings[0].find("live table goes on"), std::string::npos) << warnings[0];
    }
    const auto s = store.stats();
    EXPECT_GT(s.write_errors, 0u);
    EXPECT_EQ(s.dropped, 0u) << "the changes wait in memory, none is lost while the queue has room";
    EXPECT_EQ(s.written + s.queued, 200u);
    EXPECT_TRUE(r.table.find(r.table.snapshot(1).at(0).client)) << "the live table is untouched";
}

TEST_P(history, events_older_than_keep_are_pruned) {
    const auto path = fresh();
    history_options o{path};
    o.keep = std::chrono::hours(1);
    history_store store(o);
    store.begin_session("b", "t", "o");
    recorder r(store);
    r.apply("old", "1", t0);
    r.apply("old", "0", t0 + 1min);
    r.apply("new", "1", t0 + 3h);
    store.end_session();
    EXPECT_EQ(store.prune(t0 + 3h), 2u);
    const history_reader reader(path);
    EXPECT_TRUE(reader.events_of("old", t0 - 1h).empty());
    EXPECT_EQ(reader.events_of("new", t0 - 1h).size(), 1u);
    EXPECT_EQ(reader.current_rows().size(), 2u) << "pruning the events keeps every client's last row";
}

}  // namespace

namespace {

// Overdue and back are events of their own, the overdue flag is kept on the events and on the client's row (a
// restart restores it), uptime counts the silence as down, and a file of the schema before them is migrated.
TEST_P(history, overdue_and_back_are_recorded_restored_and_counted_as_down) {
    const auto path = fresh();
    {
        history_store store({path});
        store.begin_session("tcp://127.0.0.1:1883", "sensors/connected/{client}", "test");
        store.watching(true, t0);
        recorder r(store);
        r.table.expect([](std::string_view, std::uint16_t) { return 600u; });
        r.apply("plug", "1", t0);
        for (auto c : r.table.expire(t0 + 10min)) {
            c.current.topic = "sensors/connected/plug";
            store.record(c);
        }
        store.watching(false, t0 + 20min);
        store.end_session();
    }
    {
        const history_reader reader(path);
        const auto events = reader.events_of("plug", t0 - 1h);
        ASSERT_EQ(events.size(), 2u);
        EXPECT_EQ(events[0].why, cause::overdue);
        EXPECT_TRUE(events[0].overdue);
        EXPECT_EQ(events[0].status, state::connected);
        const auto rows = reader.current_rows();
        ASSERT_EQ(rows.size(), 1u);
        EXPECT_TRUE(rows[0].overdue) << "what a restart restores";
        const auto f = reader.uptime(t0, t0 + 20min, 1min).at(0);
        EXPECT_EQ(f.state, "overdue");
        EXPECT_EQ(f.up, 10min);
        EXPECT_EQ(f.down, 10min) << "ten minutes up, ten overdue";
    }
    if (GetParam() != backend::sqlite) return;
    // A file from before the overdue columns: migrated on open.
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE);
        db.exec("ALTER TABLE events DROP COLUMN overdue; ALTER TABLE clients DROP COLUMN overdue; DROP TABLE silences; "
                "DROP TABLE cadences; "
                "PRAGMA user_version=3");
    }
    { history_store store({path}); }
    const history_reader reader(path);
    const auto events = reader.events_of("plug", t0 - 1h);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_FALSE(events[0].overdue) << "older rows read as not overdue";
    EXPECT_EQ(events[0].why, cause::overdue) << "the cause was kept";
}

// The alerts table is an outbox: an alert is on disk before it is sent (its id handed back), leaves the outbox when
// delivered, and the latest per-client alert tells a restart which clients it already paged as down.
TEST_P(history, alerts_go_through_the_outbox) {
    const auto path = fresh();
    std::mutex m;
    std::condition_variable cv;
    std::vector<std::int64_t> ids;
    {
        history_store store({path});
        store.begin_session("b", "t", "o");
        const auto on_disk = [&](std::int64_t id) {
            std::lock_guard<std::mutex> lock(m);
            ids.push_back(id);
            cv.notify_all();
        };
        store.record_alert("down", "boiler", "sensors/connected/boiler", R"({"kind":"down","client":"boiler"})", t0,
                           on_disk);
        store.record_alert("down", "pump", "sensors/connected/pump", R"({"kind":"down","client":"pump"})", t0, on_disk);
        store.record_alert("recovered", "pump", "sensors/connected/pump", R"({"kind":"recovered"})", t0 + 1s, on_disk);
        store.record_alert("outage", "", "", R"({"kind":"outage","group":"garage"})", t0 + 2s, on_disk);
        {
            std::unique_lock<std::mutex> lock(m);
            ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return ids.size() == 4; })) << "the alerts never reached the disk";
        }
        EXPECT_LT(ids[0], ids[1]);
        store.alert_delivered(ids[0], t0 + 3s);
        store.alert_delivered(ids[2], t0 + 3s);
        store.end_session();
    }
    const history_reader reader(path);
    const auto outbox = reader.undelivered_alerts(10);
    ASSERT_EQ(outbox.size(), 2u);
    EXPECT_EQ(outbox[0].first, ids[1]);
    EXPECT_EQ(outbox[1].first, ids[3]);
    EXPECT_EQ(outbox[1].second, R"({"kind":"outage","group":"garage"})");
    const auto down = reader.down_alerted();
    ASSERT_EQ(down.size(), 1u) << "pump recovered";
    EXPECT_EQ(down[0].first, "boiler");
    const auto latest = reader.alerts(2);
    ASSERT_EQ(latest.size(), 2u);
    EXPECT_EQ(latest[0], R"({"kind":"outage","group":"garage"})") << "newest first";
}

// Silences are kept whole by id (set, then ended) and read back while they run.
TEST_P(history, silences_are_kept_and_read_back_while_they_run) {
    const auto path = fresh();
    const auto now = clock::now();
    silence_book book;
    const auto kept = book.add("boiler", 2h, "firmware", "admin", now);
    const auto ended = book.add("group:garage", 2h, "renovation", "admin", now);
    const auto over = book.add("old", 1s, "short", "admin", now - 1h);
    {
        history_store store({path});
        store.begin_session("b", "t", "o");
        for (const auto& s : {kept, ended, over}) store.record_silence(s);
        const auto end = book.end(ended.id, now + 1s);
        ASSERT_TRUE(end) << "a running silence ends";
        store.record_silence(*end);
        store.end_session();
    }
    const auto running = history_reader(path).silences(now + 2s);
    ASSERT_EQ(running.size(), 1u);
    EXPECT_EQ(running[0].id, kept.id);
    EXPECT_EQ(running[0].target, "boiler");
    EXPECT_EQ(running[0].reason, "firmware");
    EXPECT_EQ(running[0].by, "admin");
    EXPECT_EQ(running[0].until, time_point(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    kept.until.time_since_epoch())));
    EXPECT_TRUE(book.covering("boiler", {}, now + 1min));
    EXPECT_FALSE(book.covering("", {"garage"}, now + 2s)) << "ended by hand";
    const auto group = book.add("group:cellar", 1h, "r", "a", now);
    EXPECT_EQ(book.covering("", {"cellar"}, now)->id, group.id) << "a group outage's group";
    EXPECT_EQ(book.covering("door", {"cellar"}, now)->id, group.id) << "a client of the group";
    EXPECT_FALSE(book.covering("kitchen", {}, now));
    EXPECT_THROW(book.add("x", 1h, "", "a", now), error) << "a reason is required";
    EXPECT_THROW(book.add("x", 91 * 24h, "r", "a", now), error) << "at most 90 days";
}

}  // namespace

namespace {

// PostgreSQL: one writer per database (its advisory lock), readers beside it; a newer schema and an unreachable
// server are said clearly; a connection string with a password is never shown.
TEST(history_postgresql, one_writer_per_database_and_clear_refusals) {
    const auto where = cluster().create_database("refusals");
    {
        history_store first({where});
        EXPECT_THROW(history_store(history_options{where}), history_locked) << "a second writer on the same database";
        first.begin_session("b", "t", "o");
        recorder r(first);
        r.apply("a", "1", t0);
        first.end_session();
        EXPECT_EQ(history_reader(where).current_rows().size(), 1u) << "a reader beside the writer";
    }
    { history_store again({where}); }  // the lock went with the first writer's connection

    cluster().psql("refusals", "UPDATE mqtt_presence.schema_version SET version = 99");
    try {
        history_store store({where});
        FAIL() << "a schema from the future was opened";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
    }
    EXPECT_THROW(history_reader{cluster().uri("nothing_here")}, error);

    const std::string secret = "postgresql://postgres:s3cret@127.0.0.1:1/none?connect_timeout=2";
    try {
        history_store store({secret});
        FAIL() << "a server nobody listens on was reached";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot connect"), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).find("s3cret"), std::string::npos) << "the password is never shown";
    }
}

// The database goes away under a running store: the failure is said, the changes wait in memory (bounded), and
// all of them are written, in order, once the server is back.
// A writer stopped in the middle of a COPY (SIGSTOP while it sends a batch) holds the lock in a query that waits for
// it: a follower sees it idle all the same, and can end it.
TEST(history_postgresql, a_writer_stopped_in_the_middle_of_a_copy_is_seen_idle) {
    const auto where = cluster().create_database("stuck");
    { history_store create({where}); }
    pqxx::connection stuck(where);
    pqxx::nontransaction(stuck).exec("SELECT pg_advisory_lock(" + std::to_string(0x4d515072) + ")");
    pqxx::work tx(stuck);
    tx.exec("CREATE TEMPORARY TABLE t(x int)");
    pqxx::stream_to copy(tx, "t");  // COPY t FROM STDIN: the server waits for rows that never come
    const history_reader follower(where);
    std::optional<std::chrono::milliseconds> idle;
    for (const auto end = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < end;) {
        const auto w = follower.writer();
        ASSERT_TRUE(w.present);
        idle = w.idle;
        if (idle && *idle >= 1s) break;
        std::this_thread::sleep_for(50ms);  // the server's clock must move on: nothing to await
    }
    ASSERT_TRUE(idle) << "a writer waiting in a COPY is never seen idle: a follower would wait for ever";
    EXPECT_GE(*idle, 1s);
    EXPECT_TRUE(follower.end_writer());
}

TEST(history_postgresql, changes_wait_while_the_database_is_away_and_are_written_when_it_returns) {
    const auto where = cluster().create_database("away");
    std::mutex m;
    std::condition_variable cv;
    std::vector<std::string> warnings;
    history_store store({where});
    store.begin_session("b", "t", "o", {}, [&](const std::string& w) {
        std::lock_guard<std::mutex> lock(m);
        warnings.push_back(w);
        cv.notify_all();
    });
    recorder r(store);
    r.apply("before", "1", t0);
    const auto wait_for = [&](auto done, const char* what) {
        const auto until = std::chrono::steady_clock::now() + 30s;
        while (!done()) {
            ASSERT_LT(std::chrono::steady_clock::now(), until) << what;
            std::unique_lock<std::mutex> lock(m);
            cv.wait_for(lock, 50ms);
        }
    };
    wait_for([&] { return store.stats().written == 1; }, "the first change was not written");
    cluster().stop();
    for (int i = 0; i < 100; ++i) r.apply("c" + std::to_string(i), i % 2 ? "1" : "0", t0 + std::chrono::seconds(i));
    wait_for([&] { return store.stats().failing; }, "the lost database was not noticed");
    {
        std::lock_guard<std::mutex> lock(m);
        ASSERT_FALSE(warnings.empty());
        EXPECT_NE(warnings.back().find("kept in memory"), std::string::npos) << warnings.back();
    }
    EXPECT_EQ(store.stats().dropped, 0u);
    cluster().start();
    wait_for([&] { return store.stats().written == 101 && !store.stats().failing; },
             "the changes kept in memory were not written after the database returned");
    store.end_session();
    const history_reader reader(where);
    EXPECT_EQ(reader.current_rows().size(), 101u);
    EXPECT_EQ(reader.events_after(0, 1000).size(), 101u) << "each change once";
    EXPECT_EQ(reader.events_of("c99", t0 - 1h).size(), 1u);
}

}  // namespace

namespace {

// What --expect auto learned is kept at the end of a session (asked of the table with the time it last asked) and
// read back for the next start; a client that is no longer current loses its cadence at the next prune.
TEST_P(history, learned_cadences_are_kept_at_the_end_of_a_session_and_pruned_with_their_client) {
    const auto path = fresh();
    cadence daily;
    for (int day = 0; day <= 3; ++day) daily.sighted(day * 25 * 3600'000LL);
    const std::string odd = "k\xc3\xbc" "che 'n' \"x\"";
    std::vector<std::int64_t> asked;
    {
        history_store store({path});
        store.begin_session("b", "t", "o", {}, {}, [&](std::int64_t since) {
            asked.push_back(since);
            return std::vector<learned_cadence>{{"sensors/connected/sleepy", "sleepy", 0, daily},
                                                {"sensors/connected/" + odd, odd, 0, daily}};
        });
        recorder r(store);
        r.apply("sleepy", "1", t0);
        r.apply(odd, "1", t0);
        store.end_session();
    }
    ASSERT_EQ(asked.size(), 1u) << "asked once, at the end (the interval is a minute)";
    EXPECT_EQ(asked[0], 0) << "the first question asks for everything learned";
    auto kept = history_reader(path).cadences();
    ASSERT_EQ(kept.size(), 2u);
    std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) { return a.client < b.client; });
    EXPECT_EQ(kept[0].client, odd);
    EXPECT_EQ(kept[1].topic, "sensors/connected/sleepy");
    EXPECT_EQ(kept[1].learned.gaps_text(), daily.gaps_text());
    EXPECT_EQ(kept[1].learned.median_ms(), 25u * 3600'000u);

    history_store store({path});
    ASSERT_EQ(store.cadences().size(), 2u) << "what the service resumes at its start";
    store.begin_session("b", "t", "o");
    recorder r(store);
    for (const auto& row : history_reader(path).current_rows()) r.table.restore(row, t0);
    r.apply("sleepy", "", t0 + 1h);  // cleared: no longer a current client
    store.end_session();
    store.prune(t0 + 2h);
    kept = history_reader(path).cadences();
    ASSERT_EQ(kept.size(), 1u);
    EXPECT_EQ(kept[0].client, odd);
}

}  // namespace
