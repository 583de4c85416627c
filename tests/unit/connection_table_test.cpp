#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <gtest/gtest.h>

#include <set>

#include "unix_ms.hpp"

#include <algorithm>
#include <string>
#include <vector>

using namespace mqtt_presence;
using namespace std::chrono_literals;

namespace {

const time_point t0 = time_point(std::chrono::milliseconds(1'700'000'000'000));

status_record rec(std::string_view payload) { return decode(payload); }

std::string json_status(int status, std::uint64_t epoch, std::int64_t ts_ms, const char* extra = "") {
    return "{\"status\":" + std::to_string(status) + ",\"epoch\":" + std::to_string(epoch) +
           ",\"ts\":" + std::to_string(ts_ms) + extra + "}";
}

TEST(connection_table, first_status_adds_and_transitions_change) {
    connection_table t;
    auto c = t.apply("s1", rec("1"), false, t0);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->kind, change_kind::added);
    EXPECT_FALSE(c->previous);
    EXPECT_EQ(c->current.status, state::connected);
    EXPECT_EQ(c->current.since, t0);

    EXPECT_FALSE(t.apply("s1", rec("1"), false, t0 + 1s)) << "a repeat is not a change";
    EXPECT_EQ(t.find("s1")->last_seen, t0 + 1s);
    EXPECT_EQ(t.find("s1")->since, t0);

    c = t.apply("s1", rec("0"), false, t0 + 5s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->kind, change_kind::changed);
    EXPECT_EQ(c->previous, state::connected);
    EXPECT_EQ(c->current.since, t0 + 5s);
    EXPECT_EQ(c->current.transitions, 1u);
    EXPECT_EQ(t.counts().disconnected, 1u);
    EXPECT_EQ(t.counts().connected, 0u);
}

TEST(connection_table, since_follows_the_payload_and_is_unknown_when_unknowable) {
    connection_table t;
    const auto started = t0 - 1h;
    t.apply("json", rec(json_status(1, 1, unix_ms(started))), true, t0);
    EXPECT_EQ(t.find("json")->since, started) << "a connected payload's ts is when the connection began";
    EXPECT_EQ(t.find("json")->last_seen, started);
    EXPECT_TRUE(t.find("json")->retained);

    t.apply("plain-down", rec("0"), true, t0);
    EXPECT_FALSE(t.find("plain-down")->since) << "a retained 0 read at start-up has no known time";
    EXPECT_FALSE(t.find("plain-down")->last_seen);

    t.apply("will", rec(json_status(0, 1, unix_ms(started), ",\"reason\":\"lost\"")), true, t0);
    EXPECT_FALSE(t.find("will")->since) << "a will's ts is its registration, not the death";

    t.apply("clean", rec(json_status(0, 1, unix_ms(t0 - 10s), ",\"reason\":\"clean\"")), true, t0);
    EXPECT_EQ(t.find("clean")->since, t0 - 10s) << "a clean stop's ts is the moment of the stop";

    t.apply("plain-down", rec("1"), false, t0 + 3s);
    EXPECT_EQ(t.find("plain-down")->since, t0 + 3s) << "a live transition starts at its receive time";
    EXPECT_FALSE(t.find("plain-down")->retained);
}

TEST(connection_table, late_will_of_an_older_connection_is_ignored_and_counted) {
    connection_table t;
    t.apply("s1", rec(json_status(1, 200, unix_ms(t0))), false, t0);
    // Connection 100's will arrives after connection 200 said "connected".
    EXPECT_FALSE(t.apply("s1", rec(json_status(0, 100, unix_ms(t0 - 1h), ",\"reason\":\"lost\"")), false, t0 + 1s));
    EXPECT_EQ(t.find("s1")->status, state::connected);
    EXPECT_EQ(t.find("s1")->epoch, 200u);
    EXPECT_EQ(t.stats().stale_deaths_ignored, 1u);

    // The current connection's own death is applied.
    auto c = t.apply("s1", rec(json_status(0, 200, unix_ms(t0), ",\"reason\":\"lost\"")), false, t0 + 2s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->current.status, state::disconnected);
    EXPECT_EQ(c->current.reason, "lost");
    // A death without an epoch cannot be judged: it is applied.
    t.apply("s2", rec(json_status(1, 5, unix_ms(t0))), false, t0);
    t.apply("s2", rec("0"), false, t0 + 1s);
    EXPECT_EQ(t.find("s2")->status, state::disconnected);
}

TEST(connection_table, newer_epoch_while_connected_is_a_reconnect) {
    connection_table t;
    t.apply("s1", rec(json_status(1, 1, unix_ms(t0))), false, t0);
    auto c = t.apply("s1", rec(json_status(1, 2, unix_ms(t0 + 9s))), false, t0 + 9s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->kind, change_kind::reconnected);
    EXPECT_EQ(c->current.since, t0 + 9s);
    EXPECT_EQ(c->current.epoch, 2u);
}

TEST(connection_table, empty_payload_removes_the_client) {
    connection_table t;
    t.apply("s1", rec("1"), true, t0);
    auto c = t.apply("s1", rec(""), false, t0 + 1s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->kind, change_kind::removed);
    EXPECT_EQ(c->current.client, "s1");
    EXPECT_EQ(t.size(), 0u);
    EXPECT_EQ(t.counts().total(), 0u);
    EXPECT_FALSE(t.apply("never-seen", rec(""), false, t0)) << "clearing an unknown client changes nothing";
}

TEST(connection_table, heartbeat_overdue_marks_stale_and_a_message_freshens) {
    connection_table t;
    t.apply("hb", rec(json_status(1, 1, unix_ms(t0), ",\"hb\":10")), false, t0);
    t.apply("plain", rec("1"), false, t0);
    EXPECT_TRUE(t.expire(t0 + 29s).empty()) << "three intervals have not passed";
    auto stale = t.expire(t0 + 31s);
    ASSERT_EQ(stale.size(), 1u);
    EXPECT_EQ(stale[0].kind, change_kind::stale);
    EXPECT_EQ(stale[0].current.client, "hb");
    EXPECT_TRUE(t.find("hb")->stale);
    EXPECT_EQ(t.counts().stale, 1u);
    EXPECT_EQ(t.counts().connected, 2u) << "stale is a flag beside the state";
    EXPECT_TRUE(t.expire(t0 + 40s).empty()) << "reported once";

    auto c = t.apply("hb", rec(json_status(1, 1, unix_ms(t0 + 41s), ",\"hb\":10")), false, t0 + 41s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->kind, change_kind::fresh);
    EXPECT_FALSE(t.find("hb")->stale);
    EXPECT_EQ(t.counts().stale, 0u);
    EXPECT_TRUE(t.expire(t0 + 60s).empty());
    EXPECT_EQ(t.expire(t0 + 72s).size(), 1u);
}

// Activity (a reading on one of the client's other topics) is a sign of life: last_seen moves, a heartbeat's
// deadline starts again, a stale row is fresh. It never adds a row or changes a state.
TEST(connection_table, activity_moves_last_seen_and_freshens_but_never_adds_or_changes_a_state) {
    connection_table t;
    t.apply("plain", rec("1"), true, t0);  // a retained "1": no time known
    EXPECT_FALSE(t.find("plain")->last_seen);
    change c;
    EXPECT_EQ(t.seen("plain", 0, t0 + 5s, &c), sighting::seen) << "only the time moved: nothing to report";
    EXPECT_EQ(t.find("plain")->last_seen, t0 + 5s);
    EXPECT_EQ(t.find("plain")->status, state::connected);

    t.apply("dead", rec("0"), false, t0);
    EXPECT_EQ(t.seen("dead", 0, t0 + 6s, &c), sighting::seen);
    EXPECT_EQ(t.find("dead")->status, state::disconnected) << "a reading says nothing of the connection";
    EXPECT_EQ(t.find("dead")->last_seen, t0 + 6s);

    EXPECT_EQ(t.seen("nobody", 0, t0 + 7s, &c), sighting::unknown);
    EXPECT_EQ(t.seen("plain", 1, t0 + 7s, &c), sighting::unknown) << "another scheme's row is another client";
    EXPECT_FALSE(t.find("nobody"));
    EXPECT_EQ(t.size(), 2u);

    t.apply("hb", rec(json_status(1, 1, unix_ms(t0), ",\"hb\":10")), false, t0);
    EXPECT_EQ(t.seen("hb", 0, t0 + 25s, &c), sighting::seen);
    EXPECT_TRUE(t.expire(t0 + 31s).empty()) << "its reading at 25 s started the three intervals again";
    ASSERT_EQ(t.expire(t0 + 56s).size(), 1u);
    EXPECT_EQ(t.counts().stale, 1u);
    ASSERT_EQ(t.seen("hb", 0, t0 + 60s, &c), sighting::freshened);
    EXPECT_EQ(c.kind, change_kind::fresh);
    EXPECT_EQ(c.current.client, "hb");
    EXPECT_EQ(c.current.last_seen, t0 + 60s);
    EXPECT_TRUE(c.live);
    EXPECT_EQ(t.counts().stale, 0u);
    EXPECT_EQ(t.seen("hb", 0, t0 + 50s, &c), sighting::seen);
    EXPECT_EQ(t.find("hb")->last_seen, t0 + 60s) << "an older time never moves last_seen back";
}

// A person's table puts the problems first (a newly dead client never hides below the fold); by the latest change
// shows what just happened; machines keep the name order.
TEST(connection_table, snapshots_in_problem_order_and_by_latest_change) {
    connection_table t;
    // Each one's since is its moment here (a live plain payload, or a stamp equal to it).
    t.apply("a-up", rec("1"), false, t0 + 1s);
    t.apply("b-down", rec("0"), false, t0 + 2s);
    t.apply("c-stale", rec(json_status(1, 1, unix_ms(t0 + 3s), ",\"hb\":10")), false, t0 + 3s);
    t.apply("d-bad", rec("{garbage"), false, t0 + 4s);
    t.apply("e-down", rec("0"), false, t0 + 5s);
    ASSERT_EQ(t.expire(t0 + 40s).size(), 1u);  // c-stale's heartbeat is overdue
    const auto names = [](const std::vector<client_status>& rows) {
        std::vector<std::string> out;
        for (const auto& r : rows) out.push_back(r.client);
        return out;
    };
    using list = std::vector<std::string>;
    EXPECT_EQ(names(t.snapshot()), (list{"a-up", "b-down", "c-stale", "d-bad", "e-down"}));
    EXPECT_EQ(names(t.snapshot(SIZE_MAX, row_order::state)), (list{"b-down", "e-down", "c-stale", "d-bad", "a-up"}));
    EXPECT_EQ(names(t.snapshot(2, row_order::state)), (list{"b-down", "e-down"})) << "a screenful: the problems";
    EXPECT_EQ(names(t.snapshot(SIZE_MAX, row_order::since)), (list{"e-down", "d-bad", "c-stale", "b-down", "a-up"}));
    t.apply("a-up", rec("0"), false, t0 + 50s);
    EXPECT_EQ(names(t.snapshot(1, row_order::since)), list{"a-up"}) << "the latest change first";
    t.restore([] {
        client_status r;
        r.client = "z-unknown-since";
        r.status = state::disconnected;
        return r;
    }());
    EXPECT_EQ(names(t.snapshot(SIZE_MAX, row_order::since)).back(), "z-unknown-since") << "an unknown since last";
}

// A view of several brokers merges their tables' rows with row_before: it must give each table's own order, or a
// merged screen would put a problem below the fold that one table puts first.
TEST(connection_table, row_before_orders_rows_as_a_snapshot_does) {
    connection_table t;
    t.apply("a-up", rec("1"), false, t0 + 1s);
    t.apply("b-down", rec("0"), false, t0 + 2s);
    t.apply("c-stale", rec(json_status(1, 1, unix_ms(t0 + 3s), ",\"hb\":10")), false, t0 + 3s);
    t.apply("d-bad", rec("{garbage"), false, t0 + 4s);
    t.apply("e-down", rec("0"), false, t0 + 3s);
    t.apply("f-up", rec("1"), false, t0 + 6s);
    ASSERT_EQ(t.expire(t0 + 40s).size(), 1u);
    t.restore([] {
        client_status r;
        r.client = "g-unknown-since";
        r.status = state::disconnected;
        return r;
    }());
    for (const auto order : {row_order::name, row_order::state, row_order::since}) {
        auto rows = t.snapshot(SIZE_MAX, order);
        const auto expected = rows;
        std::reverse(rows.begin(), rows.end());
        std::stable_sort(rows.begin(), rows.end(),
                         [order](const client_status& a, const client_status& b) { return row_before(a, b, order); });
        std::vector<std::string> got, want;
        for (const auto& r : rows) got.push_back(r.client);
        for (const auto& r : expected) want.push_back(r.client);
        EXPECT_EQ(got, want) << "order " << static_cast<int>(order);
    }
}

// A row whose broker cannot be heard is neither alive nor dead: unknown since the scanner last heard the broker,
// with what it was then in its detail; a stale or overdue judgement of the old state does not stay on it.
TEST(connection_table, a_row_of_a_broker_not_heard_is_unknown_since_then) {
    connection_table t;
    t.apply("hb", rec(json_status(1, 1, unix_ms(t0), ",\"hb\":10")), false, t0);
    ASSERT_EQ(t.expire(t0 + 40s).size(), 1u);
    auto before = *t.find("hb");
    before.detail = "v2";  // a detail of its own (Homie's, say) stays after what the view says
    const auto row = unknown_since(before, t0 + 20s, "its broker is not heard");
    EXPECT_EQ(row.status, state::unknown);
    EXPECT_EQ(row.since, t0 + 20s);
    EXPECT_FALSE(row.stale);
    EXPECT_FALSE(row.overdue);
    EXPECT_EQ(row.last_seen, t0) << "when it was last heard stays true";
    EXPECT_EQ(row.detail, "its broker is not heard; last known connected (stale); v2");
    EXPECT_FALSE(unknown_since(*t.find("hb"), std::nullopt, "x").since) << "never heard: a time not known";
}

TEST(connection_table, a_retained_heartbeat_overdue_by_its_own_stamp_is_judged_on_our_clock) {
    connection_table t;
    // Last heard of an hour ago by its own stamp: dead while the broker was down, or a clock an hour behind ours.
    auto c = t.apply("ghost", rec(json_status(1, 1, unix_ms(t0 - 1h), ",\"hb\":10")), true, t0);
    ASSERT_TRUE(c);
    EXPECT_FALSE(c->current.stale) << "the sender's clock alone never makes a client stale";
    EXPECT_TRUE(c->current.awaiting_beat);
    EXPECT_EQ(t.counts().awaiting, 1u);
    EXPECT_TRUE(t.expire(t0 + 14s).empty()) << "a live one beats within an interval: 1.5 are given";
    const auto stale = t.expire(t0 + 15s);
    ASSERT_EQ(stale.size(), 1u);
    EXPECT_EQ(stale[0].kind, change_kind::stale);
    EXPECT_EQ(t.counts().stale, 1u);
    EXPECT_EQ(t.counts().awaiting, 0u);

    // The same with a live beat in time: fresh, and the skew measured (an hour behind).
    connection_table u;
    u.apply("late", rec(json_status(1, 1, unix_ms(t0 - 1h), ",\"hb\":10")), true, t0);
    u.apply("late", rec(json_status(1, 1, unix_ms(t0 + 5s - 1h), ",\"hb\":10")), false, t0 + 5s);
    const auto row = u.find("late");
    ASSERT_TRUE(row);
    EXPECT_FALSE(row->stale);
    EXPECT_FALSE(row->awaiting_beat);
    ASSERT_TRUE(row->clock_skew);
    EXPECT_EQ(*row->clock_skew, -std::chrono::milliseconds(1h));
    EXPECT_TRUE(u.expire(t0 + 20s).empty()) << "its next deadline runs from our receive time";
    EXPECT_EQ(u.counts().awaiting, 0u);
}

TEST(connection_table, an_older_connected_does_not_lower_the_epoch) {
    connection_table t;
    t.apply("s1", rec(json_status(1, 10, unix_ms(t0))), false, t0);
    // Paho resends connection 5's in-flight "connected" after a broker restart, then connection 7's will arrives.
    EXPECT_FALSE(t.apply("s1", rec(json_status(1, 5, unix_ms(t0 - 1h))), false, t0 + 1s));
    EXPECT_EQ(t.find("s1")->epoch, 10u);
    EXPECT_EQ(t.stats().stale_connects_ignored, 1u);
    EXPECT_FALSE(t.apply("s1", rec(json_status(0, 7, unix_ms(t0 - 1h), ",\"reason\":\"lost\"")), false, t0 + 2s));
    EXPECT_EQ(t.find("s1")->status, state::connected);
    EXPECT_EQ(t.stats().stale_deaths_ignored, 1u);
    EXPECT_EQ(t.find("s1")->since, t0) << "the live connection's start is kept";
}

TEST(connection_table, an_epoch_beyond_the_clock_skew_never_outranks_real_ones) {
    connection_table t(10min);
    const auto real = static_cast<std::uint64_t>(unix_ms(t0));
    t.apply("s1", rec(json_status(1, real, unix_ms(t0))), false, t0);
    // A forged "connected" with the largest epoch there is, then a forged "0".
    auto c = t.apply("s1", rec("{\"status\":1,\"epoch\":18446744073709551615}"), false, t0 + 1s);
    EXPECT_EQ(t.stats().future_times, 1u);
    EXPECT_TRUE(t.find("s1")->future_time) << "flagged on the row";
    EXPECT_EQ(t.find("s1")->epoch, real) << "the forged epoch is not kept; the real one stays";
    t.apply("s1", rec("0"), false, t0 + 2s);
    // The real client heals with its own epoch, and its real will is applied, not ignored as late.
    c = t.apply("s1", rec(json_status(1, real, unix_ms(t0))), false, t0 + 3s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->current.status, state::connected);
    EXPECT_FALSE(c->current.future_time);
    c = t.apply("s1", rec(json_status(0, real, unix_ms(t0), ",\"reason\":\"lost\"")), false, t0 + 4s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->current.status, state::disconnected);
    EXPECT_EQ(t.stats().stale_deaths_ignored, 0u);

    // Within the skew an epoch is believed; beyond it a time stamp is unknown, not a `since` in the future.
    t.apply("s2", rec(json_status(1, real + 60'000, unix_ms(t0 + 1min))), false, t0);
    EXPECT_EQ(t.find("s2")->epoch, real + 60'000);
    EXPECT_FALSE(t.find("s2")->future_time);
    t.apply("s3", rec(json_status(1, 1, unix_ms(t0 + 1h))), true, t0);
    EXPECT_FALSE(t.find("s3")->since) << "a time stamp an hour ahead is not believed";
    EXPECT_TRUE(t.find("s3")->future_time);
    EXPECT_EQ(t.stats().future_times, 2u);
}

TEST(connection_table, liveness_is_will_only_without_a_heartbeat) {
    connection_table t;
    t.apply("plain", rec("1"), false, t0);
    t.apply("hb", rec(json_status(1, 1, unix_ms(t0), ",\"hb\":10")), false, t0);
    EXPECT_TRUE(t.find("plain")->will_only());
    EXPECT_FALSE(t.find("hb")->will_only());
}

TEST(connection_table, resync_removes_rows_the_broker_no_longer_holds) {
    connection_table t;
    t.apply("kept", rec("1"), true, t0);
    t.apply("cleared", rec("1"), true, t0);
    t.apply("gone", rec("0"), true, t0);
    EXPECT_TRUE(t.finish_resync(t0).empty()) << "no re-sync was begun";
    t.begin_resync();
    t.apply("kept", rec("1"), true, t0 + 1min);
    t.apply("new", rec("1"), true, t0 + 1min);
    auto removed = t.finish_resync(t0);
    ASSERT_EQ(removed.size(), 2u);
    std::vector<std::string> names{removed[0].current.client, removed[1].current.client};
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"cleared", "gone"}));
    EXPECT_EQ(removed[0].kind, change_kind::removed);
    EXPECT_TRUE(removed[0].previous);
    EXPECT_EQ(t.size(), 2u);
    EXPECT_TRUE(t.find("kept"));
    EXPECT_TRUE(t.find("new"));
    EXPECT_EQ(t.counts().total(), 2u);
    EXPECT_TRUE(t.finish_resync(t0).empty()) << "once per re-sync";
}

// end_resync() keeps the removals as rows until they are taken: both of its ways (most rows leave, a few do) hand
// out the same changes, oldest re-sync first, each at its own re-sync's end, and the table is right at once.
TEST(connection_table, removals_kept_by_end_resync_are_taken_in_order_a_chunk_at_a_time) {
    for (const std::size_t staying : {std::size_t{1}, std::size_t{40}}) {
        SCOPED_TRACE("rows staying: " + std::to_string(staying));
        connection_table t;
        for (int i = 0; i < 10; ++i) t.apply("gone" + std::to_string(i), rec("1"), true, t0);
        for (std::size_t i = 0; i < staying; ++i) t.apply("kept" + std::to_string(i), rec("0"), true, t0);
        t.begin_resync();
        for (std::size_t i = 0; i < staying; ++i) t.apply("kept" + std::to_string(i), rec("0"), true, t0);
        EXPECT_EQ(t.end_resync(t0 + 1s), 10u);
        EXPECT_EQ(t.counts().total(), staying) << "the rows leave the table at once";
        EXPECT_EQ(t.counts().connected, 0u);
        EXPECT_FALSE(t.find("gone3"));
        EXPECT_TRUE(t.find("kept0"));
        EXPECT_EQ(t.removed_pending(), 10u);

        // A second re-sync before the first one's removals were taken: they wait behind them.
        t.apply("gone0", rec("1"), false, t0 + 2s);  // back, live: a new row
        t.begin_resync();
        for (std::size_t i = 0; i < staying; ++i) t.apply("kept" + std::to_string(i), rec("0"), true, t0 + 3s);
        EXPECT_EQ(t.end_resync(t0 + 4s), 1u);
        EXPECT_EQ(t.removed_pending(), 11u);

        std::vector<change> out;
        EXPECT_EQ(t.take_removed(4, out), 4u);
        EXPECT_EQ(t.take_removed(100, out), 7u);
        EXPECT_EQ(t.take_removed(100, out), 0u);
        ASSERT_EQ(out.size(), 11u);
        std::set<std::string> first;
        for (std::size_t i = 0; i < 10; ++i) {
            first.insert(out[i].current.client);
            EXPECT_EQ(out[i].kind, change_kind::removed);
            EXPECT_FALSE(out[i].live);
            EXPECT_EQ(out[i].at, t0 + 1s);
            EXPECT_EQ(out[i].previous, state::connected);
            EXPECT_EQ(out[i].current.status, state::connected) << "the last row as it was";
        }
        EXPECT_EQ(first.size(), 10u);
        EXPECT_EQ(first.count("gone9"), 1u);
        EXPECT_EQ(out[10].current.client, "gone0") << "the second re-sync's removal comes after the first's";
        EXPECT_EQ(out[10].at, t0 + 4s);
        EXPECT_EQ(t.removed_pending(), 0u);
        EXPECT_EQ(t.counts().total(), staying);
        // The table goes on: rows come and leave as before.
        EXPECT_TRUE(t.apply("gone5", rec("1"), false, t0 + 5s));
        EXPECT_EQ(t.find("gone5")->status, state::connected);
        EXPECT_EQ(t.counts().total(), staying + 1);
    }
}

TEST(connection_table, removals_nobody_takes_can_be_dropped) {
    connection_table t;
    t.apply("a", rec("1"), true, t0);
    t.apply("b", rec("1"), true, t0);
    t.begin_resync();
    EXPECT_EQ(t.end_resync(t0), 2u);
    t.drop_removed();
    EXPECT_EQ(t.removed_pending(), 0u);
    std::vector<change> out;
    EXPECT_EQ(t.take_removed(10, out), 0u);
    EXPECT_TRUE(out.empty());
}

TEST(connection_table, disconnect_clears_heartbeat_staleness) {
    connection_table t;
    t.apply("hb", rec(json_status(1, 1, unix_ms(t0), ",\"hb\":10")), false, t0);
    t.apply("hb", rec(json_status(0, 1, unix_ms(t0), ",\"reason\":\"clean\"")), false, t0 + 5s);
    EXPECT_TRUE(t.expire(t0 + 1h).empty()) << "a disconnected client cannot be stale";
}

TEST(connection_table, malformed_payload_is_kept_marked_and_counted) {
    connection_table t;
    t.apply("s1", rec("1"), false, t0);
    auto c = t.apply("s1", rec("garbage\xff"), false, t0 + 1s);
    ASSERT_TRUE(c) << "a malformed status is never dropped";
    EXPECT_EQ(c->current.status, state::unknown);
    EXPECT_EQ(c->current.raw, "garbage\\xff");
    EXPECT_FALSE(c->current.detail.empty());
    EXPECT_EQ(t.stats().malformed, 1u);
    EXPECT_EQ(t.counts().unknown, 1u);
    t.apply("s1", rec("1"), false, t0 + 2s);
    EXPECT_TRUE(t.find("s1")->raw.empty()) << "a good payload replaces the malformed one's text";
    EXPECT_EQ(t.find("s1")->transitions, 2u);
}

TEST(connection_table, snapshot_is_sorted_and_keeps_details) {
    connection_table t;
    t.apply("b", rec(R"({"status":1,"ip":"10.0.0.2","fw":"1.0"})"), false, t0, 3);
    t.apply("a", rec("sleeping"), false, t0);
    t.apply("c", rec("2"), false, t0);
    auto rows = t.snapshot();
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0].client, "a");
    EXPECT_EQ(rows[0].detail, "sleeping");
    EXPECT_EQ(rows[1].ip, "10.0.0.2");
    EXPECT_EQ(rows[1].meta, R"({"fw":"1.0"})");
    EXPECT_EQ(rows[1].source, 3);
    EXPECT_EQ(rows[2].detail, "device-ok");
    EXPECT_EQ(t.stats().messages, 3u);
    std::size_t visited = 0;
    t.for_each([&](const client_status&) { ++visited; });
    EXPECT_EQ(visited, 3u);
}

TEST(connection_table, snapshot_order_is_byte_order_of_the_names) {
    // Shared prefixes of every length, names that end inside or beyond the sort key's 8 bytes, bytes >= 0x80
    // (UTF-8), and names equal for 8 bytes after the shared prefix.
    std::vector<std::string> names{"sensor-", "sensor-0", "sensor-00000001", "sensor-000000010", "sensor-00000002",
                                   "sensor-0000000100000", "sensor-0000000100001", "sensor-\xc3\xa9", "sensor-z",
                                   "sensor-Z", "sensor-\x7f"};
    for (int i = 0; i < 500; ++i) names.push_back("sensor-" + std::to_string(i * 7919 % 1000));
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    connection_table t;
    for (auto it = names.rbegin(); it != names.rend(); ++it) t.apply(*it, rec("1"), true, t0);
    std::vector<std::string> got;
    for (const auto& row : t.snapshot()) got.push_back(row.client);
    EXPECT_EQ(got, names);
    got.clear();
    for (const auto& row : t.snapshot(10)) got.push_back(row.client);
    EXPECT_EQ(got, std::vector<std::string>(names.begin(), names.begin() + 10)) << "a screenful: the first rows";
    EXPECT_EQ(t.snapshot(names.size() + 5).size(), names.size());

    connection_table different_first_bytes;  // no shared prefix at all
    for (const std::string n : {"b", "a", "\xc3\xa9", "ab", "B"}) different_first_bytes.apply(n, rec("0"), true, t0);
    got.clear();
    for (const auto& row : different_first_bytes.snapshot()) got.push_back(row.client);
    EXPECT_EQ(got, (std::vector<std::string>{"B", "a", "ab", "b", "\xc3\xa9"}));
}

TEST(connection_table, one_name_under_two_schemes_is_two_clients) {
    connection_table t;
    t.apply("kitchen", rec("ready"), true, t0, 0);    // homie/kitchen/$state
    t.apply("kitchen", rec("Offline"), true, t0, 1);  // tele/kitchen/LWT
    t.apply("kitchen", rec("ready"), false, t0 + 1s, 0);
    ASSERT_EQ(t.size(), 2u);
    EXPECT_EQ(t.find("kitchen", 0)->status, state::connected);
    EXPECT_EQ(t.find("kitchen", 1)->status, state::disconnected) << "the other scheme's state is kept, not flipped";
    EXPECT_EQ(t.counts().connected, 1u);
    EXPECT_EQ(t.counts().disconnected, 1u);
    const auto rows = t.snapshot();
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].source, 0);
    EXPECT_EQ(rows[1].source, 1);
    EXPECT_TRUE(t.apply("kitchen", rec(""), true, t0, 1));  // cleared under one scheme only
    EXPECT_FALSE(t.find("kitchen", 1));
    EXPECT_EQ(t.find("kitchen", 0)->status, state::connected);
}

TEST(connection_table, erase_and_counts_stay_consistent) {
    connection_table t;
    for (int i = 0; i < 100; ++i) t.apply("c" + std::to_string(i), rec(i % 3 ? "1" : "0"), true, t0);
    EXPECT_EQ(t.counts().connected, 66u);
    EXPECT_EQ(t.counts().disconnected, 34u);
    auto gone = t.erase("c1");
    ASSERT_TRUE(gone);
    EXPECT_EQ(gone->status, state::connected);
    EXPECT_FALSE(t.erase("c1"));
    EXPECT_EQ(t.counts().connected, 65u);
    EXPECT_EQ(t.size(), 99u);
    const std::string long_name(100, 'n');
    t.apply(long_name, rec("1"), false, t0);
    EXPECT_TRUE(t.find(long_name));
}

TEST(connection_table, many_inserts_and_erases_keep_every_lookup_right) {
    connection_table t;
    const int n = 20000;
    for (int i = 0; i < n; ++i) t.apply("client-" + std::to_string(i), rec(i % 2 ? "1" : "0"), false, t0);
    for (int i = 0; i < n; i += 3) ASSERT_TRUE(t.erase("client-" + std::to_string(i))) << i;
    for (int i = 0; i < n; ++i) {
        const auto row = t.find("client-" + std::to_string(i));
        ASSERT_EQ(row.has_value(), i % 3 != 0) << "client-" << i;
        if (row) {
            EXPECT_EQ(row->status, i % 2 ? state::connected : state::disconnected) << "client-" << i;
        }
    }
    for (int i = 0; i < n; i += 3) t.apply("client-" + std::to_string(i), rec(""), false, t0);
    EXPECT_EQ(t.size(), static_cast<std::size_t>(n - (n + 2) / 3));
    EXPECT_EQ(t.counts().total(), t.size());
    for (int i = 0; i < n; i += 3) t.apply("client-" + std::to_string(i), rec("1"), false, t0);
    EXPECT_EQ(t.size(), static_cast<std::size_t>(n));
    EXPECT_EQ(t.snapshot().size(), static_cast<std::size_t>(n));
}

}  // namespace

// --- rows restored from a history ------------------------------------------------------------------------------

namespace {
client_status remembered(const std::string& name, state s, std::optional<time_point> since, std::uint64_t epoch) {
    client_status r;
    r.client = name;
    r.status = s;
    r.since = since;
    r.last_seen = since;
    r.epoch = epoch;
    r.transitions = 4;
    if (s == state::disconnected) r.last_down = since;
    return r;
}
}  // namespace

TEST(connection_table, a_restored_row_keeps_its_since_when_the_retained_status_agrees) {
    connection_table t;
    const auto died = t0 - 10min;
    t.restore(remembered("s1", state::disconnected, died, 42));
    EXPECT_TRUE(t.find("s1")->restored);
    EXPECT_EQ(t.counts().disconnected, 1u);

    t.begin_resync();
    // The will of epoch 42 is still retained: it carries the connection's start, not the death.
    EXPECT_FALSE(t.apply("s1", rec(json_status(0, 42, unix_ms(t0 - 1h), ",\"reason\":\"lost\"")), true, t0))
        << "an agreeing retained status is no change";
    const auto row = t.find("s1");
    EXPECT_EQ(row->since, died) << "the time of death the history knew stays";
    EXPECT_EQ(row->last_down, died);
    EXPECT_EQ(row->last_seen, died) << "a retained status never moves last_seen back";
    EXPECT_EQ(row->transitions, 4u);
    EXPECT_FALSE(row->restored);
    EXPECT_TRUE(t.finish_resync(t0).empty());
}

TEST(connection_table, a_restored_row_that_the_retained_status_contradicts_changes_unseen) {
    connection_table t;
    t.restore(remembered("s1", state::connected, t0 - 1h, 42));
    t.begin_resync();
    auto c = t.apply("s1", rec(json_status(0, 42, unix_ms(t0 - 1h), ",\"reason\":\"lost\"")), true, t0);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->kind, change_kind::changed);
    EXPECT_FALSE(c->live) << "it died while nobody watched";
    EXPECT_EQ(c->at, t0);
    EXPECT_FALSE(c->current.since) << "the time of death is unknown, never invented";
    EXPECT_EQ(c->current.transitions, 5u);

    // A live message afterwards is seen as it happens.
    c = t.apply("s1", rec(json_status(1, 43, unix_ms(t0 + 1s))), false, t0 + 1s);
    ASSERT_TRUE(c);
    EXPECT_TRUE(c->live);
}

TEST(connection_table, a_restored_row_the_broker_no_longer_holds_is_removed_at_the_resync) {
    connection_table t;
    t.restore(remembered("gone", state::disconnected, t0 - 1h, 1));
    t.restore(remembered("kept", state::connected, t0 - 1h, 2));
    t.begin_resync();
    t.apply("kept", rec(json_status(1, 2, unix_ms(t0 - 1h))), true, t0);
    const auto removed = t.finish_resync(t0 + 1s);
    ASSERT_EQ(removed.size(), 1u);
    EXPECT_EQ(removed[0].current.client, "gone");
    EXPECT_FALSE(removed[0].live);
    EXPECT_EQ(removed[0].at, t0 + 1s);
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(t.find("kept")->since, t0 - 1h);
}

TEST(connection_table, restoring_replaces_a_row_and_keeps_the_counts_right) {
    connection_table t;
    t.apply("s1", rec("1"), false, t0);
    t.restore(remembered("s1", state::disconnected, t0, 1));
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(t.counts().connected, 0u);
    EXPECT_EQ(t.counts().disconnected, 1u);
}

TEST(connection_table, a_live_death_records_last_down) {
    connection_table t;
    t.apply("s1", rec("1"), false, t0);
    t.apply("s1", rec("0"), false, t0 + 3s);
    EXPECT_EQ(t.find("s1")->last_down, t0 + 3s);
    t.apply("s1", rec("1"), false, t0 + 5s);
    EXPECT_EQ(t.find("s1")->last_down, t0 + 3s) << "the latest outage stays known after the return";
}

// A scanner whose clock is behind sees every epoch beyond its horizon: they order one another (a late will is
// ignored, a newer connection counts), and a believed epoch is never outranked by one of them.
TEST(connection_table, epochs_beyond_the_horizon_order_one_another) {
    connection_table t(10min);
    const auto behind = t0 - 15min;  // the scanner's clock
    const auto real = static_cast<std::uint64_t>(unix_ms(t0));
    t.apply("s1", rec(json_status(1, real, unix_ms(t0))), false, behind);
    EXPECT_EQ(t.find("s1")->epoch, real) << "kept, to order what follows";
    EXPECT_FALSE(t.apply("s1", rec(json_status(0, real - 60'000, unix_ms(t0 - 1min))), false, behind + 1s))
        << "a late will of an older connection";
    EXPECT_EQ(t.stats().stale_deaths_ignored, 1u);
    EXPECT_EQ(t.find("s1")->status, state::connected);
    auto c = t.apply("s1", rec(json_status(1, real + 5'000, unix_ms(t0 + 5s))), false, behind + 5s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->kind, change_kind::reconnected);
    ASSERT_TRUE(t.find("s1")->clock_skew);
    EXPECT_NEAR(static_cast<double>(t.find("s1")->clock_skew->count()), 15 * 60'000.0, 1'000.0) << "measured";
    c = t.apply("s1", rec(json_status(0, real + 5'000, unix_ms(t0 + 6s), ",\"reason\":\"lost\"")), false, behind + 6s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->current.status, state::disconnected) << "the will of the live connection";
}

// A will-only "connected" whose last word predates the broker's last start is unconfirmed (its will is lost if it
// died while the broker was down) until it speaks again; a heartbeat client and a disconnected one never are.
TEST(connection_table, will_only_rows_from_before_a_broker_start_are_unconfirmed_until_they_speak) {
    connection_table t;
    t.apply("plain", rec("1"), false, t0);                                       // heard live at t0
    t.apply("stamped", rec(json_status(1, 1, unix_ms(t0 - 1min))), true, t0);   // retained, stamped a minute ago
    t.apply("beating", rec(json_status(1, 2, unix_ms(t0), ",\"hb\":5")), false, t0);
    t.apply("down", rec("0"), false, t0);
    EXPECT_FALSE(t.find("plain")->unconfirmed) << "no broker start known";
    t.broker_started(t0 + 10s);
    EXPECT_TRUE(t.find("plain")->unconfirmed);
    EXPECT_TRUE(t.find("stamped")->unconfirmed);
    EXPECT_FALSE(t.find("beating")->unconfirmed) << "a heartbeat says whether it lives";
    EXPECT_FALSE(t.find("down")->unconfirmed);
    t.broker_started(t0 - 1h);
    EXPECT_TRUE(t.find("plain")->unconfirmed) << "only a later start moves it";
    t.apply("plain", rec("1"), false, t0 + 20s);  // it re-announces after the start
    EXPECT_FALSE(t.find("plain")->unconfirmed);
    t.apply("late", rec("1"), true, t0 + 30s);  // first seen after the start, no time stamp: nothing says otherwise
    EXPECT_FALSE(t.find("late")->unconfirmed);
}

// "Disconnected" again under a newer epoch: a whole connection began and ended while the scanner did not watch (it
// reconnected meanwhile). Reported, not dropped; an older epoch's is not.
TEST(connection_table, a_connection_that_began_and_ended_unseen_is_a_change) {
    connection_table t;
    t.apply("s", rec(json_status(0, 100, unix_ms(t0), ",\"reason\":\"lost\"")), false, t0);
    auto c = t.apply("s", rec(json_status(0, 200, unix_ms(t0 + 5s), ",\"reason\":\"lost\"")), true, t0 + 10s);
    ASSERT_TRUE(c) << "the newer connection's will";
    EXPECT_EQ(c->kind, change_kind::changed);
    EXPECT_EQ(c->previous, state::disconnected);
    EXPECT_EQ(c->current.epoch, 200u);
    EXPECT_FALSE(c->live);
    EXPECT_FALSE(t.apply("s", rec(json_status(0, 150, unix_ms(t0 + 5s), ",\"reason\":\"lost\"")), true, t0 + 11s))
        << "an older connection's will changes nothing";
    EXPECT_FALSE(t.apply("s", rec(json_status(0, 200, unix_ms(t0 + 5s), ",\"reason\":\"lost\"")), true, t0 + 12s))
        << "the same one again (a re-sync) changes nothing";
}
