// The history against real SQLite files: what is written is what is read back, uptime figures are exact over a
// scripted day, and files that are not ours (or newer than us) are refused.
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/service/history_reader.hpp>
#include <mqtt_presence/service/history_store.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>

using namespace mqtt_presence;
using namespace std::chrono_literals;

namespace {

const time_point t0 = time_point(std::chrono::milliseconds(1'700'000'000'000));

std::string fresh_path() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string path = std::string(TEST_TMP_DIR) + "/" + info->name() + "-" + std::to_string(getpid()) + ".db";
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
    return path;
}

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

TEST(history_store, writes_every_change_and_reads_it_back_newest_first) {
    const auto path = fresh_path();
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

TEST(history_store, hostile_names_are_stored_as_they_came) {
    const auto path = fresh_path();
    const std::string name = "x'); DROP TABLE events; --\x1b[2J";
    {
        history_store store({path});
        store.begin_session("b", "t", "o");
        recorder r(store);
        r.apply(name, "1", t0);
        store.end_session();
    }
    const history_reader reader(path);
    ASSERT_EQ(reader.events_of(name, t0 - 1s).size(), 1u);
    EXPECT_EQ(reader.current_rows().at(0).client, name);
}

// One hour, watched throughout: connect, die for 10 minutes, return, then three short flaps.
TEST(history_reader, uptime_over_a_scripted_hour_is_exact) {
    const auto path = fresh_path();
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

TEST(history_reader, time_nobody_watched_is_unknown_not_up_or_down) {
    const auto path = fresh_path();
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

TEST(history_store, a_full_queue_drops_counts_and_records_the_gap) {
    const auto path = fresh_path();
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
    SQLite::Database db(path);
    EXPECT_EQ(db.execAndGet("SELECT count(*) FROM gaps").getInt(), 1);
    EXPECT_EQ(db.execAndGet("SELECT dropped FROM gaps").getInt(), 1);
    EXPECT_EQ(db.execAndGet("SELECT from_ms FROM gaps").getInt64(), 1'700'000'002'000);
    EXPECT_EQ(db.execAndGet("SELECT count(*) FROM clients").getInt(), 3)
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

TEST(history_store, events_older_than_keep_are_pruned) {
    const auto path = fresh_path();
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
TEST(history_store, overdue_and_back_are_recorded_restored_and_counted_as_down) {
    const auto path = fresh_path();
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
    // A file from before the overdue columns: migrated on open.
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE);
        db.exec("ALTER TABLE events DROP COLUMN overdue; ALTER TABLE clients DROP COLUMN overdue; DROP TABLE silences; "
                "PRAGMA user_version=3");
    }
    { history_store store({path}); }
    const history_reader reader(path);
    const auto events = reader.events_of("plug", t0 - 1h);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_FALSE(events[0].overdue) << "older rows read as not overdue";
    EXPECT_EQ(events[0].why, cause::overdue) << "the cause was kept";
}

// Silences are kept whole by id (set, then ended) and read back while they run.
TEST(history_store, silences_are_kept_and_read_back_while_they_run) {
    const auto path = fresh_path();
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
