// The publisher's rules (publisher_policy.hpp) at made-up times: backoff, the heartbeat grid, what a status heard on
// the client's own topic means, and which of two processes with one client id stops.
#include <gtest/gtest.h>

#include <mqtt_presence/connection_table.hpp>

#include "publisher_policy.hpp"

using namespace mqtt_presence;
using namespace mqtt_presence::detail;
using namespace std::chrono_literals;
using verdict = own_status_watch::verdict;

namespace {

status_record status(state s, std::optional<std::uint64_t> epoch = std::nullopt) {
    status_record r;
    r.status = s;
    r.epoch = epoch;
    return r;
}

const time_point now{std::chrono::milliseconds(1'796'000'000'000)};
const std::uint64_t mine = 1'795'999'990'000;

}  // namespace

TEST(publisher_policy, backoff_draws_in_the_upper_half_doubles_to_the_maximum_and_resets) {
    std::minstd_rand rng(7);
    reconnect_backoff backoff(500ms, 4000ms);
    for (const auto bound : {500ms, 1000ms, 2000ms, 4000ms, 4000ms}) {
        const auto wait = backoff.next(rng);
        EXPECT_GE(wait, bound / 2);
        EXPECT_LE(wait, bound);
    }
    backoff.reset();
    EXPECT_LE(backoff.next(rng), 500ms);
}

TEST(publisher_policy, backoff_spreads_a_fleet) {
    std::minstd_rand a(1), b(2);
    reconnect_backoff x(1000ms, 1000ms), y(1000ms, 1000ms);
    int same = 0;
    for (int i = 0; i < 20; ++i) same += x.next(a) == y.next(b) ? 1 : 0;
    EXPECT_LT(same, 5) << "two clients' waits differ";
}

TEST(publisher_policy, heartbeats_fall_on_one_grid_at_the_process_phase) {
    const std::chrono::steady_clock::time_point t{std::chrono::seconds(1000)};
    const auto beat = next_beat(t, 30s, 0.5);  // grid points at 15 s + k * 30 s
    EXPECT_EQ(beat, std::chrono::steady_clock::time_point{std::chrono::seconds(1005)});
    EXPECT_EQ(next_beat(beat, 30s, 0.5), beat + 30s) << "a beat due exactly now is the next grid point";
    EXPECT_EQ(next_beat(t + 1ms, 30s, 0.5), beat) << "clients of one process beat together";
    EXPECT_EQ(next_beat(std::chrono::steady_clock::time_point{std::chrono::seconds(5)}, 30s, 0.5),
              std::chrono::steady_clock::time_point{std::chrono::seconds(15)})
        << "early in the clock's life";
}

TEST(publisher_policy, a_late_will_an_older_epoch_or_a_cleared_status_heals) {
    own_status_watch watch(true);
    watch.connected();
    EXPECT_EQ(watch.heard(status(state::disconnected, mine - 1), true, mine, now), verdict::heal);
    EXPECT_EQ(watch.heard(status(state::connected, mine - 1), true, mine, now), verdict::heal);
    auto cleared = status(state::unknown);
    cleared.cleared = true;
    EXPECT_EQ(watch.heard(cleared, true, mine, now), verdict::heal);
    EXPECT_EQ(watch.heard(status(state::unknown), false, mine, now), verdict::heal) << "unreadable";
    EXPECT_EQ(watch.heard(status(state::connected, mine), false, mine, now), verdict::nothing) << "our own";
}

TEST(publisher_policy, a_newer_epoch_is_another_publisher_said_once_until_it_goes_away) {
    own_status_watch watch(true);
    watch.connected();
    EXPECT_EQ(watch.heard(status(state::connected, mine + 5), false, mine, now), verdict::newer_publisher);
    EXPECT_TRUE(watch.conflict());
    EXPECT_EQ(watch.heard(status(state::connected, mine + 6), false, mine, now), verdict::nothing) << "said once";
    EXPECT_EQ(watch.heard(status(state::disconnected, mine + 6), false, mine, now), verdict::heal)
        << "the other process died: this one says connected again";
    EXPECT_FALSE(watch.conflict());
}

TEST(publisher_policy, a_forged_epoch_beyond_the_horizon_heals_instead_of_silencing) {
    own_status_watch watch(true);
    watch.connected();
    const auto horizon = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(
            (now + connection_table::default_max_clock_skew).time_since_epoch())
            .count());
    EXPECT_EQ(watch.heard(status(state::connected, horizon + 1), false, mine, now), verdict::heal);
    EXPECT_FALSE(watch.conflict());
    EXPECT_TRUE(connection_table::beyond_horizon(horizon + 1, now)) << "the table's rule is the same";
    EXPECT_FALSE(connection_table::beyond_horizon(horizon, now));
    EXPECT_EQ(watch.heard(status(state::connected, horizon), false, mine, now), verdict::newer_publisher);
}

TEST(publisher_policy, a_plain_connected_beyond_our_own_echoes_is_another_publisher_on_311) {
    own_status_watch watch(false);
    watch.connected();
    watch.sent_connected();
    EXPECT_EQ(watch.heard(status(state::connected), false, mine, now), verdict::nothing) << "our echo";
    EXPECT_EQ(watch.heard(status(state::connected), true, mine, now), verdict::nothing) << "retained";
    EXPECT_EQ(watch.heard(status(state::connected), false, mine, now), verdict::plain_publisher);
    EXPECT_EQ(watch.heard(status(state::connected), false, mine, now), verdict::nothing) << "said once";
    watch.connected();
    EXPECT_EQ(watch.heard(status(state::connected), false, mine, now), verdict::plain_publisher)
        << "each connection looks again";
}

TEST(publisher_policy, on_mqtt5_no_local_means_any_plain_connected_is_another_publisher) {
    own_status_watch watch(true);
    watch.connected();
    watch.sent_connected();
    EXPECT_EQ(watch.heard(status(state::connected), false, mine, now), verdict::plain_publisher);
}

TEST(publisher_policy, a_fresh_rival_claim_decides_by_start_time_at_any_session_end) {
    takeover_watch watch;
    EXPECT_FALSE(watch.session_ended(10s)) << "a long session";
    const std::uint64_t t = 1'796'000'000'000;
    watch.rival_claim({t - 5000, 9, t - 1000});
    std::string why;
    EXPECT_TRUE(watch.is_newcomer({t, 3, 0}, t, "mqtt-presence/claim/x", why));
    EXPECT_NE(why.find("5000 ms before this one"), std::string::npos) << why;
    EXPECT_FALSE(watch.is_newcomer({t - 9000, 3, 0}, t, "mqtt-presence/claim/x", why)) << "the incumbent goes on";
    EXPECT_FALSE(watch.is_newcomer({t, 3, 0}, t + 61'000, "mqtt-presence/claim/x", why))
        << "a claim older than a minute weighs nothing (and this client had a long session)";
}

TEST(publisher_policy, without_a_claim_four_short_sessions_and_no_long_one_make_the_newcomer) {
    takeover_watch watch;
    std::string why;
    for (int i = 0; i < 3; ++i) {
        EXPECT_TRUE(watch.session_ended(1s));
        EXPECT_FALSE(watch.is_newcomer({1, 1, 0}, 1000, "", why));
    }
    EXPECT_TRUE(watch.should_warn());
    EXPECT_FALSE(watch.should_warn()) << "said once";
    watch.session_ended(1s);
    EXPECT_TRUE(watch.is_newcomer({1, 1, 0}, 1000, "", why));
    EXPECT_NE(why.find("4 sessions in a row"), std::string::npos) << why;

    takeover_watch incumbent;
    incumbent.session_ended(1h);
    for (int i = 0; i < 6; ++i) incumbent.session_ended(1s);
    EXPECT_FALSE(incumbent.is_newcomer({1, 1, 0}, 1000, "", why)) << "it once had a long session";
    EXPECT_EQ(incumbent.short_sessions(), 6);
}

TEST(publisher_policy, a_long_session_resets_the_count_of_short_ones) {
    takeover_watch watch;
    watch.session_ended(1s);
    watch.session_ended(2999ms);
    EXPECT_EQ(watch.short_sessions(), 2);
    EXPECT_FALSE(watch.session_ended(3s)) << "three seconds is not short";
    EXPECT_EQ(watch.short_sessions(), 0);
}
