// The scanner's sync protocol as each kind of broker plays it: the events in the order that broker sends them,
// at made-up times.
#include <gtest/gtest.h>

#include "sync_tracker.hpp"

using mqtt_presence::sync_state;
using mqtt_presence::detail::sync_tracker;
using namespace std::chrono_literals;

namespace {

const sync_tracker::steady::time_point t0{std::chrono::hours(1)};
constexpr auto quiet = 1000ms;

// The rows to confirm by their exact topics, counting how often it was asked.
struct rows_to_confirm {
    std::vector<std::string> topics;
    int asked = 0;
    sync_tracker::exact_topics fn() {
        return [this] {
            ++asked;
            return topics;
        };
    }
};

}  // namespace

TEST(sync_tracker, mosquitto_tail_then_marker_ends_complete_without_asking_for_exact_topics) {
    sync_tracker sync(true, quiet);
    rows_to_confirm rows{{"sensors/connected/restored"}};
    EXPECT_EQ(sync.connected(t0), 1u);
    EXPECT_EQ(sync.state(), sync_state::syncing);
    sync.status_message(true, t0 + 1ms);
    EXPECT_FALSE(sync.tail_back(true, "1", rows.fn()).ended) << "the marker is not back yet";
    const auto end = sync.marker_back("1", t0 + 2ms, rows.fn());
    ASSERT_TRUE(end.ended);
    EXPECT_EQ(sync.state(), sync_state::complete);
    EXPECT_TRUE(end.confirm.empty());
    EXPECT_EQ(rows.asked, 0) << "the tail came through a wildcard: the burst was the whole store";
    EXPECT_TRUE(end.remove_unconfirmed);
    EXPECT_TRUE(end.state_changed);
}

TEST(sync_tracker, aedes_marker_before_tail_waits_for_the_tail) {
    sync_tracker sync(true, quiet);
    rows_to_confirm rows;
    sync.connected(t0);
    EXPECT_FALSE(sync.marker_back("1", t0 + 1ms, rows.fn()).ended);
    EXPECT_EQ(sync.state(), sync_state::syncing);
    EXPECT_FALSE(sync.tick(t0 + 500ms, rows.fn()).ended) << "within the quiet period the tail may still come";
    EXPECT_TRUE(sync.tail_back(true, "1", rows.fn()).ended);
    EXPECT_EQ(sync.state(), sync_state::complete);
}

TEST(sync_tracker, rabbitmq_no_tail_asks_rows_by_exact_topic_then_ends_partial) {
    sync_tracker sync(true, quiet);
    rows_to_confirm rows{{"b/x", "a/y", "b/x"}};
    sync.connected(t0);
    sync.status_message(false, t0 + 10ms);  // live, not retained: RabbitMQ sends no retained message to wildcards
    EXPECT_FALSE(sync.marker_back("1", t0 + 20ms, rows.fn()).ended);
    EXPECT_FALSE(sync.tick(t0 + 20ms + quiet - 1ms, rows.fn()).ended);
    const auto first = sync.tick(t0 + 20ms + quiet, rows.fn());
    ASSERT_TRUE(first.ended);
    EXPECT_EQ(first.confirm, (std::vector<std::string>{"a/y", "b/x"})) << "sorted, once each";
    EXPECT_EQ(first.seq, 1u);
    EXPECT_FALSE(first.remove_unconfirmed) << "not before the exact topics answered";
    EXPECT_EQ(sync.state(), sync_state::syncing);
    EXPECT_FALSE(sync.tail_refused()) << "no retained status came: not an ACL";
    const auto second = sync.marker_back("confirm-1", t0 + 2s, rows.fn());
    ASSERT_TRUE(second.ended);
    EXPECT_EQ(sync.state(), sync_state::partial);
    EXPECT_TRUE(second.confirm.empty());
    EXPECT_TRUE(second.remove_unconfirmed);
    EXPECT_EQ(second.unsubscribe, first.confirm) << "the round's exact subscriptions are dropped";
    EXPECT_EQ(rows.asked, 1);
}

TEST(sync_tracker, an_acl_refusing_the_tail_ends_complete_with_the_marker_after_a_quiet_period) {
    sync_tracker sync(true, quiet);
    rows_to_confirm rows{{"restored"}};
    sync.connected(t0);
    sync.status_message(true, t0 + 5ms);
    sync.marker_back("1", t0 + 6ms, rows.fn());
    const auto end = sync.tick(t0 + 6ms + quiet, rows.fn());
    ASSERT_TRUE(end.ended);
    EXPECT_TRUE(sync.tail_refused());
    EXPECT_EQ(rows.asked, 0) << "retained statuses came through the wildcards";
    EXPECT_EQ(sync.state(), sync_state::complete);
}

TEST(sync_tracker, a_status_message_restarts_the_quiet_period) {
    sync_tracker sync(true, quiet);
    rows_to_confirm rows;
    sync.connected(t0);
    sync.marker_back("1", t0, rows.fn());
    sync.status_message(false, t0 + 900ms);
    EXPECT_FALSE(sync.tick(t0 + 1500ms, rows.fn()).ended);
    EXPECT_TRUE(sync.tick(t0 + 1900ms, rows.fn()).ended);
}

TEST(sync_tracker, drops_the_broker_admits_make_the_sync_unverified_and_keep_every_row) {
    sync_tracker sync(true, quiet);
    rows_to_confirm rows{{"restored"}};
    sync.connected(t0);
    sync.dropped(7);
    sync.dropped(9);
    EXPECT_EQ(sync.broker_dropped(), 2u);
    sync.tail_back(true, "1", rows.fn());
    const auto end = sync.marker_back("1", t0 + 1ms, rows.fn());
    ASSERT_TRUE(end.ended);
    EXPECT_EQ(sync.state(), sync_state::unverified);
    EXPECT_FALSE(end.remove_unconfirmed) << "a burst with holes does not say what is gone";
    EXPECT_EQ(rows.asked, 0);
}

TEST(sync_tracker, a_drop_after_a_complete_sync_makes_it_unverified) {
    sync_tracker sync(true, quiet);
    rows_to_confirm rows;
    sync.connected(t0);
    sync.dropped(3);
    sync.tail_back(true, "1", rows.fn());
    sync.marker_back("1", t0, rows.fn());
    ASSERT_EQ(sync.state(), sync_state::complete);
    sync.dropped(3);
    EXPECT_EQ(sync.state(), sync_state::complete) << "the same count: nothing dropped";
    sync.dropped(4);
    EXPECT_EQ(sync.state(), sync_state::unverified);
    sync.connected(t0 + 1s);
    sync.dropped(4);
    EXPECT_EQ(sync.broker_dropped(), 0u) << "a new sync counts from its own start";
}

TEST(sync_tracker, an_old_connections_marker_or_tail_and_foreign_payloads_end_nothing) {
    sync_tracker sync(true, quiet);
    rows_to_confirm rows;
    sync.connected(t0);
    sync.connected(t0 + 1s);  // a reconnect: marker 2
    for (const char* payload : {"1", "", "2x", "confirm-", "confirm-1", "-2", "99999999999999999999999"})
        EXPECT_FALSE(sync.marker_back(payload, t0 + 2s, rows.fn()).ended) << payload;
    EXPECT_FALSE(sync.tail_back(true, "1", rows.fn()).ended);
    EXPECT_FALSE(sync.tail_back(false, "2", rows.fn()).ended) << "a live tail is not the retained store's";
    EXPECT_FALSE(sync.tick(t0 + 10s, rows.fn()).ended) << "no marker of this connection came back";
    EXPECT_FALSE(sync.tail_back(true, "2", rows.fn()).ended) << "the marker of this connection is not back yet";
    EXPECT_TRUE(sync.marker_back("2", t0 + 11s, rows.fn()).ended);
}

TEST(sync_tracker, a_borrowed_client_has_no_tail_and_its_marker_ends_the_burst) {
    sync_tracker sync(false, quiet);
    rows_to_confirm rows{{"restored"}};
    sync.connected(t0);
    const auto first = sync.marker_back("1", t0, rows.fn());
    ASSERT_TRUE(first.ended);
    EXPECT_EQ(first.confirm, std::vector<std::string>{"restored"}) << "not known whether wildcards get retained";
    EXPECT_TRUE(sync.marker_back("confirm-1", t0, rows.fn()).ended);
    EXPECT_EQ(sync.state(), sync_state::complete) << "wildcards never proved to get no retained message";
}

TEST(sync_tracker, a_loss_during_the_sync_leaves_it_unverified_and_later_markers_are_ignored) {
    sync_tracker sync(true, quiet);
    rows_to_confirm rows;
    sync.connected(t0);
    sync.lost();
    EXPECT_FALSE(sync.is_connected());
    EXPECT_EQ(sync.state(), sync_state::unverified);
    sync.tail_back(true, "1", rows.fn());
    EXPECT_FALSE(sync.marker_back("1", t0, rows.fn()).ended);
    EXPECT_EQ(sync.state(), sync_state::unverified);
    EXPECT_EQ(sync.wait_state(t0 + 1h), sync_tracker::quiet::waiting) << "a wait goes on until a connection";
}

TEST(sync_tracker, without_the_marker_a_wait_ends_unverified_after_a_quiet_period_once) {
    sync_tracker sync(true, quiet);
    EXPECT_EQ(sync.wait_state(t0), sync_tracker::quiet::waiting) << "never connected";
    sync.connected(t0);
    sync.status_message(true, t0 + 1500ms);
    EXPECT_EQ(sync.wait_state(t0 + 1900ms), sync_tracker::quiet::waiting) << "two quiet periods after subscribing";
    EXPECT_EQ(sync.wait_state(t0 + 2400ms), sync_tracker::quiet::waiting) << "a quiet period after the last status";
    EXPECT_EQ(sync.wait_state(t0 + 2500ms), sync_tracker::quiet::ended_unverified);
    EXPECT_EQ(sync.state(), sync_state::unverified);
    EXPECT_EQ(sync.wait_state(t0 + 2600ms), sync_tracker::quiet::ended) << "said once";
}

TEST(sync_tracker, the_second_round_does_not_ask_again) {
    sync_tracker sync(false, quiet);
    rows_to_confirm rows{{"x"}};
    sync.connected(t0);
    sync.marker_back("1", t0, rows.fn());
    sync.marker_back("confirm-1", t0, rows.fn());
    EXPECT_EQ(rows.asked, 1);
    sync.connected(t0 + 1s);
    const auto again = sync.marker_back("2", t0 + 1s, rows.fn());
    EXPECT_EQ(again.confirm.size(), 1u) << "each connection confirms its own rows";
    EXPECT_EQ(rows.asked, 2);
}
