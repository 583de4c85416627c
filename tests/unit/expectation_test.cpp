// Expected intervals: parsing, which rule applies, the learned cadence, and what the table makes of them (overdue
// after the interval, back when heard, never for a disconnected client, and a retained status read again is no
// sign of life).
#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/expectation.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace mqtt_presence;
using namespace std::chrono_literals;

namespace {

const time_point t0 = time_point(std::chrono::milliseconds(1'700'000'000'000));

// A table whose clients are expected every `seconds` (or learned, with connection_table::learned_expectation).
connection_table expecting(std::uint32_t seconds) {
    connection_table t;
    t.expect([seconds](std::string_view client, std::uint16_t) { return client == "free" ? 0u : seconds; });
    return t;
}

std::vector<change_kind> kinds(const std::vector<change>& changes) {
    std::vector<change_kind> out;
    for (const auto& c : changes) out.push_back(c.kind);
    return out;
}

TEST(expectation, parses_durations_globs_and_auto_and_refuses_the_rest_by_name) {
    auto e = expectation::parse("10m");
    EXPECT_EQ(e.match, "");
    EXPECT_EQ(e.every, 600s);
    EXPECT_FALSE(e.learned);
    e = expectation::parse("auto");
    EXPECT_TRUE(e.learned);
    e = expectation::parse("kitchen*=2h");
    EXPECT_EQ(e.match, "kitchen*");
    EXPECT_EQ(e.every, 7200s);
    EXPECT_EQ(e.text(), "kitchen*=7200s");
    e = expectation::parse("a=b=5s");  // the last '=' splits
    EXPECT_EQ(e.match, "a=b");
    EXPECT_EQ(e.every, 5s);
    EXPECT_TRUE(expectation::parse("zigbee2mqtt/*=auto").learned);
    for (const char* bad : {"", "=5s", "x=", "500ms", "10q", "400d", "x=-1"}) {
        try {
            (void)expectation::parse(bad);
            ADD_FAILURE() << "accepted \"" << bad << "\"";
        } catch (const error& x) {
            EXPECT_NE(std::string(x.what()).find("--expect"), std::string::npos) << x.what();
            EXPECT_NE(std::string(x.what()).find("write e.g."), std::string::npos) << x.what();
        }
    }
}

TEST(expectation, the_first_fitting_glob_wins_else_the_rule_without_one) {
    const std::vector<expectation> rules{expectation::parse("1h"), expectation::parse("plug-*=5m"),
                                         expectation::parse("tele/*/LWT=auto"), expectation::parse("plug-9=1m")};
    EXPECT_EQ(expectation_for(rules, "plug-9", "x/plug-9")->every, 300s) << "the first glob that fits";
    EXPECT_TRUE(expectation_for(rules, "lamp", "tele/lamp/LWT")->learned) << "a glob on the topic";
    EXPECT_EQ(expectation_for(rules, "other", "x/other")->every, 3600s) << "the rule without a glob";
    EXPECT_EQ(expectation_for({expectation::parse("a*=1m")}, "b", ""), nullptr);
}

TEST(expectation, a_cadence_is_the_median_gap_and_a_burst_is_one_sign_of_life) {
    cadence c;
    c.sighted(0);
    c.sighted(10'000);
    c.sighted(10'005);  // the same burst
    c.sighted(20'000);
    EXPECT_EQ(c.median_ms(), 0u) << "two gaps are not enough to judge";
    EXPECT_EQ(c.limit_ms(), 0u);
    c.sighted(30'000);
    EXPECT_EQ(c.median_ms(), 10'000u);
    EXPECT_EQ(c.limit_ms(), 30'000u) << "three of its median gaps";
    c.sighted(80'000);  // one long gap: the limit grows to 1.5 times it
    EXPECT_EQ(c.median_ms(), 10'000u);
    EXPECT_EQ(c.limit_ms(), 75'000u);
    for (int i = 0; i < 8; ++i) c.sighted(80'000 + (i + 1) * 100'000);
    EXPECT_EQ(c.median_ms(), 100'000u) << "only the last eight gaps count";
}

TEST(expectation, a_connected_client_unheard_for_its_interval_is_overdue_until_heard) {
    auto t = expecting(10);
    ASSERT_TRUE(t.apply("plug", decode("1"), false, t0));
    EXPECT_EQ(t.find("plug")->expected, 10s);
    EXPECT_TRUE(t.expire(t0 + 9s).empty());
    t.seen("plug", 0, t0 + 9s, nullptr);  // a reading: the wait starts again
    EXPECT_TRUE(t.expire(t0 + 18s).empty());
    const auto due = t.expire(t0 + 19s);
    ASSERT_EQ(kinds(due), std::vector<change_kind>{change_kind::overdue});
    EXPECT_TRUE(due[0].current.overdue);
    EXPECT_EQ(due[0].current.last_seen, t0 + 9s) << "when it was last heard";
    EXPECT_EQ(t.counts().overdue, 1u);
    EXPECT_EQ(t.counts().connected, 1u) << "still connected by its word";
    EXPECT_TRUE(t.expire(t0 + 60s).empty()) << "overdue once";

    change back;
    EXPECT_EQ(t.seen("plug", 0, t0 + 61s, &back), sighting::freshened);
    EXPECT_EQ(back.kind, change_kind::back);
    EXPECT_FALSE(back.current.overdue);
    EXPECT_EQ(t.counts().overdue, 0u);

    ASSERT_EQ(kinds(t.expire(t0 + 71s)), std::vector<change_kind>{change_kind::overdue});
    const auto heard = t.apply("plug", decode("1"), false, t0 + 72s);  // its own status, live
    ASSERT_TRUE(heard);
    EXPECT_EQ(heard->kind, change_kind::back);
}

TEST(expectation, a_disconnected_or_unexpected_client_is_never_overdue) {
    auto t = expecting(10);
    t.apply("gone", decode("0"), false, t0);
    t.apply("free", decode("1"), false, t0);
    EXPECT_TRUE(t.expire(t0 + 1h).empty());
    EXPECT_FALSE(t.find("free")->expected);
    t.apply("plug", decode("1"), false, t0);
    ASSERT_EQ(kinds(t.expire(t0 + 11s)), std::vector<change_kind>{change_kind::overdue});
    const auto died = t.apply("plug", decode("0"), false, t0 + 12s);
    ASSERT_TRUE(died);
    EXPECT_EQ(died->kind, change_kind::changed);
    EXPECT_FALSE(died->current.overdue) << "disconnected says more than overdue";
    EXPECT_EQ(t.counts().overdue, 0u);
}

TEST(expectation, a_retained_status_read_again_at_a_resync_is_no_sign_of_life) {
    auto t = expecting(10);
    t.apply("plug", decode("1"), true, t0);
    ASSERT_EQ(kinds(t.expire(t0 + 10s)), std::vector<change_kind>{change_kind::overdue})
        << "the wait starts when the scanner first sees it";
    t.begin_resync();
    EXPECT_FALSE(t.apply("plug", decode("1"), true, t0 + 20s)) << "the broker's memory, not the client";
    EXPECT_TRUE(t.find("plug")->overdue);
}

TEST(expectation, auto_waits_for_a_cadence_then_judges_by_a_multiple_of_it) {
    auto t = expecting(connection_table::learned_expectation);
    t.apply("sleepy", decode("1"), false, t0);
    EXPECT_TRUE(t.find("sleepy")->expected_learned);
    EXPECT_FALSE(t.find("sleepy")->expected) << "nothing learned yet";
    EXPECT_TRUE(t.expire(t0 + 24h).empty()) << "never overdue before its cadence is known";
    for (int day = 1; day <= 3; ++day) t.seen("sleepy", 0, t0 + day * 25h, nullptr);
    const auto row = t.find("sleepy");
    EXPECT_EQ(row->cadence, std::chrono::milliseconds(25h));
    EXPECT_EQ(row->expected, std::chrono::milliseconds(75h));
    EXPECT_TRUE(t.expire(t0 + 3 * 25h + 10min).empty()) << "a 25 h sleeper is not paged at ten minutes";
    EXPECT_TRUE(t.expire(t0 + 3 * 25h + 74h).empty());
    EXPECT_EQ(kinds(t.expire(t0 + 3 * 25h + 75h)), std::vector<change_kind>{change_kind::overdue});
}

TEST(expectation, a_restored_row_waits_from_the_restart_and_an_overdue_one_stays_overdue) {
    auto t = expecting(10);
    client_status quiet;
    quiet.client = "quiet";
    quiet.status = state::connected;
    quiet.overdue = true;
    client_status fine = quiet;
    fine.client = "fine";
    fine.overdue = false;
    t.restore(quiet, t0);
    t.restore(fine, t0);
    EXPECT_TRUE(t.find("quiet")->overdue);
    EXPECT_EQ(t.counts().overdue, 1u);
    ASSERT_EQ(kinds(t.expire(t0 + 10s)), std::vector<change_kind>{change_kind::overdue});
    EXPECT_EQ(t.counts().overdue, 2u);
}

TEST(expectation, a_cadence_kept_as_text_reads_back_the_same_and_bad_text_is_refused) {
    cadence c;
    for (int i = 0; i <= 10; ++i) c.sighted(i * 60'000 + (i % 3) * 1'000);  // ten gaps: the ring wrapped
    const auto text = c.gaps_text();
    EXPECT_EQ(text, "58000,61000,61000,58000,61000,61000,58000,61000") << "the last eight gaps, oldest first";
    const auto back = cadence::from_gaps_text(text);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->median_ms(), c.median_ms());
    EXPECT_EQ(back->limit_ms(), c.limit_ms());
    EXPECT_EQ(back->last_ms, -1) << "the next message starts a gap; the restart's downtime is none";
    EXPECT_EQ(back->gaps_text(), text);
    EXPECT_EQ(cadence::from_gaps_text("")->count, 0u);
    for (const char* bad : {"x", "1000,", ",1000", "999", "1000,,1000", "-5000", "1000;2000", "99999999999",
                            "1000,1000,1000,1000,1000,1000,1000,1000,1000"})
        EXPECT_FALSE(cadence::from_gaps_text(bad)) << bad;
}

TEST(expectation, a_learned_cadence_resumes_after_a_restart_and_judges_at_once) {
    auto t = expecting(connection_table::learned_expectation);
    t.apply("sleepy", decode("1"), false, t0);
    for (int day = 1; day <= 3; ++day) t.seen("sleepy", 0, t0 + day * 25h, nullptr);
    t.apply("new", decode("1"), false, t0);
    const auto learned = t.cadences();
    ASSERT_EQ(learned.size(), 1u) << "only a row with a gap learned";
    EXPECT_EQ(learned[0].client, "sleepy");
    EXPECT_TRUE(t.cadences(std::chrono::duration_cast<std::chrono::milliseconds>((t0 + 3 * 25h + 1s).time_since_epoch()).count()).empty()) << "nothing heard since";

    // The next run: the row restored, its cadence resumed; overdue after 75 h without a message, not before.
    auto next = expecting(connection_table::learned_expectation);
    const auto restart = t0 + 100h;
    next.restore(*t.find("sleepy"), restart);
    EXPECT_FALSE(next.find("sleepy")->expected) << "nothing learned in this run yet";
    EXPECT_TRUE(next.resume_cadence("sleepy", 0, learned[0].learned, restart));
    EXPECT_EQ(next.find("sleepy")->cadence, std::chrono::milliseconds(25h));
    EXPECT_FALSE(next.resume_cadence("sleepy", 0, learned[0].learned, restart)) << "once: what it learns wins";
    EXPECT_FALSE(next.resume_cadence("absent", 0, learned[0].learned, restart));
    EXPECT_TRUE(next.expire(restart + 74h).empty());
    EXPECT_EQ(kinds(next.expire(restart + 75h)), std::vector<change_kind>{change_kind::overdue});

    auto fixed = expecting(10);  // a row with a fixed interval takes no cadence
    fixed.restore(*t.find("sleepy"), restart);
    EXPECT_FALSE(fixed.resume_cadence("sleepy", 0, learned[0].learned, restart));
}

TEST(expectation, problems_first_puts_overdue_after_disconnected_and_before_stale) {
    auto t = expecting(10);
    t.apply("a-up", decode("1"), false, t0);
    t.apply("b-down", decode("0"), false, t0);
    t.apply("c-stale", decode(R"({"status":1,"hb":1})"), false, t0);
    t.apply("d-quiet", decode("1"), false, t0);
    t.seen("a-up", 0, t0 + 9s, nullptr);
    t.seen("c-stale", 0, t0 + 9s, nullptr);
    t.expire(t0 + 12s);  // d-quiet overdue; c-stale's heartbeat missed; a-up neither
    ASSERT_TRUE(t.find("d-quiet")->overdue);
    ASSERT_TRUE(t.find("c-stale")->stale);
    std::vector<std::string> order;
    for (const auto& r : t.snapshot(SIZE_MAX, row_order::state)) order.push_back(r.client);
    EXPECT_EQ(order, (std::vector<std::string>{"b-down", "d-quiet", "c-stale", "a-up"}));
}

}  // namespace
