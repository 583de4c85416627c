// The alert rules with scripted times: debounce, recovery, flapping and its silence, a scheme's mass outage holding
// the individual alerts, the service's own outage, watch lists, new and removed clients.
#include <mqtt_presence/service/alert_engine.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <gtest/gtest.h>

using namespace mqtt_presence;
using namespace std::chrono_literals;

namespace {

const time_point t0 = time_point(std::chrono::milliseconds(1'700'000'000'000));

struct fleet {
    explicit fleet(alert_options o) : engine(std::move(o)) {}
    connection_table table;
    alert_engine engine;
    std::vector<alert> apply(const std::string& name, const char* payload, time_point at) {
        auto c = table.apply(name, decode(payload), false, at);
        if (!c) return {};
        c->current.topic = "s/" + name;
        return engine.on_change(*c, at);
    }
};

std::vector<std::string> kinds(const std::vector<alert>& v) {
    std::vector<std::string> out;
    for (const auto& a : v) out.push_back(a.kind + (a.client.empty() ? "" : " " + a.client));
    return out;
}

TEST(alert_engine, down_after_the_debounce_then_recovered_and_nothing_for_a_blip) {
    alert_options o;
    o.after = 60s;
    fleet f(o);
    f.apply("a", "1", t0);
    f.apply("a", "0", t0 + 1s);
    EXPECT_TRUE(f.engine.tick(t0 + 30s).empty());
    EXPECT_TRUE(f.apply("a", "1", t0 + 40s).empty()) << "a blip shorter than the debounce says nothing";
    EXPECT_TRUE(f.engine.tick(t0 + 200s).empty());
    f.apply("a", "0", t0 + 300s);
    EXPECT_EQ(f.engine.next_due(), t0 + 360s);
    const auto down = f.engine.tick(t0 + 361s);
    ASSERT_EQ(kinds(down), (std::vector<std::string>{"down a"}));
    EXPECT_EQ(down[0].since, t0 + 300s);
    EXPECT_TRUE(f.engine.tick(t0 + 400s).empty()) << "once";
    EXPECT_EQ(kinds(f.apply("a", "1", t0 + 500s)), (std::vector<std::string>{"recovered a"}));
}

TEST(alert_engine, flapping_is_one_alert_and_silence_until_stable) {
    alert_options o;
    o.after = 60s;
    o.flap_count = 5;
    o.flap_window = 10min;
    fleet f(o);
    std::vector<alert> all;
    for (int i = 0; i < 10; ++i) {
        auto a = f.apply("w", "1", t0 + std::chrono::seconds(20 * i));
        all.insert(all.end(), a.begin(), a.end());
        a = f.apply("w", "0", t0 + std::chrono::seconds(20 * i + 5));
        all.insert(all.end(), a.begin(), a.end());
        a = f.engine.tick(t0 + std::chrono::seconds(20 * i + 10));
        all.insert(all.end(), a.begin(), a.end());
    }
    EXPECT_EQ(kinds(all), (std::vector<std::string>{"flapping w"}));
    EXPECT_TRUE(f.engine.tick(t0 + 300s).empty()) << "silenced while it flaps, even when down long";
    f.apply("w", "1", t0 + 301s);
    f.engine.tick(t0 + 20min);  // stable for the window
    f.apply("w", "0", t0 + 21min);
    EXPECT_EQ(kinds(f.engine.tick(t0 + 23min)), (std::vector<std::string>{"down w"})) << "alerts again";
}

TEST(alert_engine, a_mass_outage_is_one_alert_counted_when_it_settles_and_one_summary_at_its_end) {
    alert_options o;
    o.after = 10s;
    o.outage_percent = 20;
    fleet f(o);
    for (int i = 0; i < 20; ++i) f.apply("c" + std::to_string(i), "1", t0);
    std::vector<alert> all;
    for (int i = 0; i < 10; ++i) {  // one a second: the fifth crosses 20 % of 20, five more follow
        auto a = f.apply("c" + std::to_string(i), "0", t0 + 1min + std::chrono::seconds(i));
        all.insert(all.end(), a.begin(), a.end());
    }
    EXPECT_TRUE(all.empty()) << "announced once the downs settle, not at the fifth";
    EXPECT_TRUE(f.engine.tick(t0 + 1min + 9s + 500ms).empty()) << "a down half a second ago: not settled";
    const auto outage = f.engine.tick(t0 + 1min + 10s + 100ms);
    ASSERT_EQ(kinds(outage), (std::vector<std::string>{"outage"}));
    EXPECT_EQ(outage[0].count, 10u) << "the whole outage, not the count when it was detected";
    EXPECT_EQ(outage[0].sample.size(), 5u);
    EXPECT_TRUE(f.engine.tick(t0 + 1min + 30s).empty()) << "individual alerts held";
    // Most come back, one a second; the outage ends 5 s after the last return, with one summary of who is still down.
    for (int i = 0; i < 8; ++i) {
        EXPECT_TRUE(f.apply("c" + std::to_string(i), "1", t0 + 2min + std::chrono::seconds(i)).empty());
        EXPECT_TRUE(f.engine.tick(t0 + 2min + std::chrono::seconds(i) + 500ms).empty()) << "not over while returning";
    }
    EXPECT_TRUE(f.engine.tick(t0 + 2min + 10s).empty()) << "a return 3 s ago";
    const auto over = f.engine.tick(t0 + 2min + 13s);
    ASSERT_EQ(kinds(over), (std::vector<std::string>{"outage-over"}));
    EXPECT_EQ(over[0].count, 2u) << "still down: c8, c9";
    EXPECT_EQ(over[0].sample, (std::vector<std::string>{"c8", "c9"}));
    EXPECT_TRUE(f.engine.tick(t0 + 10min).empty()) << "the summary stands for their own down";
    EXPECT_TRUE(f.apply("c8", "1", t0 + 11min).empty()) << "no recovered for a down that was never sent";
    // A member back for good is a client like any other: its next death is its own alert.
    f.apply("c8", "0", t0 + 12min);
    EXPECT_EQ(kinds(f.engine.tick(t0 + 12min + 11s)), (std::vector<std::string>{"down c8"}));
}

TEST(alert_engine, a_fleet_that_recovers_at_its_own_pace_is_two_alerts) {
    // 200 of 512 die within a second and come back at 20 a second: one outage (of 200) and one outage-over.
    alert_options o;
    o.after = 30s;
    fleet f(o);
    for (int i = 0; i < 512; ++i) f.apply("s" + std::to_string(i), "1", t0);
    std::vector<alert> all;
    const auto add = [&all](std::vector<alert> a) { all.insert(all.end(), a.begin(), a.end()); };
    for (int i = 0; i < 200; ++i) add(f.apply("s" + std::to_string(i), "0", t0 + 1min + std::chrono::milliseconds(5 * i)));
    for (int ms = 0; ms <= 5000; ms += 250) add(f.engine.tick(t0 + 1min + std::chrono::milliseconds(ms)));
    for (int i = 0; i < 200; ++i) {
        const auto at = t0 + 2min + std::chrono::milliseconds(50 * i);
        add(f.apply("s" + std::to_string(i), "1", at));
        if (i % 5 == 0) add(f.engine.tick(at));
    }
    for (int s = 0; s <= 120; ++s) add(f.engine.tick(t0 + 2min + 10s + std::chrono::seconds(s)));
    ASSERT_EQ(kinds(all), (std::vector<std::string>{"outage", "outage-over"}));
    EXPECT_EQ(all[0].count, 200u);
    EXPECT_EQ(all[1].count, 0u);
}

TEST(alert_engine, the_services_own_outage_after_the_debounce_and_its_end) {
    alert_options o;
    o.after = 5s;
    fleet f(o);
    for (int i = 0; i < 3; ++i) f.apply("c" + std::to_string(i), "1", t0);
    EXPECT_TRUE(f.engine.on_service(false, t0 + 1s).empty());
    EXPECT_TRUE(f.engine.tick(t0 + 3s).empty()) << "a short loss says nothing";
    const auto outage = f.engine.tick(t0 + 7s);
    ASSERT_EQ(outage.size(), 1u);
    EXPECT_EQ(outage[0].kind, "outage");
    EXPECT_EQ(outage[0].reason, "broker");
    EXPECT_EQ(outage[0].count, 3u);
    EXPECT_EQ(kinds(f.engine.on_service(true, t0 + 20s)), (std::vector<std::string>{"outage-over"}));
}

TEST(alert_engine, watch_lists_and_new_or_removed_clients) {
    alert_options o;
    o.after = 0s;
    o.only = {"gw-*", "pump"};
    o.exclude = {"gw-test*"};
    o.on_new = true;
    o.on_removed = true;
    fleet f(o);
    EXPECT_EQ(kinds(f.apply("gw-1", "1", t0)), (std::vector<std::string>{"new gw-1"}));
    EXPECT_TRUE(f.apply("lamp", "1", t0).empty()) << "not on the watch list";
    f.apply("gw-test9", "1", t0);
    f.apply("gw-1", "0", t0 + 1s);
    f.apply("lamp", "0", t0 + 1s);
    f.apply("gw-test9", "0", t0 + 1s);
    EXPECT_EQ(kinds(f.engine.tick(t0 + 2s)), (std::vector<std::string>{"down gw-1"}));
    EXPECT_EQ(kinds(f.apply("gw-1", "", t0 + 3s)), (std::vector<std::string>{"removed gw-1"}));
}

TEST(alert_engine, a_seeded_death_is_due_from_its_time_and_a_sent_one_is_not_repeated) {
    alert_options o;
    o.after = 60s;
    alert_engine e(o);
    client_status dead;
    dead.client = "late";
    dead.topic = "s/late";
    dead.status = state::disconnected;
    dead.since = t0;
    client_status told = dead;
    told.client = "old";
    told.topic = "s/old";
    e.seed(dead, false, t0 + 90s);
    e.seed(told, true, t0 + 90s);
    EXPECT_EQ(kinds(e.tick(t0 + 91s)), (std::vector<std::string>{"down late"}));
    EXPECT_TRUE(e.tick(t0 + 200s).empty());
}

}  // namespace

namespace {

// Every alert says why, in fields and in words: the cause, the time of death, how long it was down, for one client.
TEST(alert_engine, an_alert_says_its_cause_its_times_and_how_long_the_client_was_down) {
    alert_options o;
    o.after = 10s;
    fleet f(o);
    f.apply("boiler", R"({"status":1,"epoch":1})", t0);
    f.apply("boiler", R"({"status":0,"epoch":1,"reason":"lost"})", t0 + 5s);
    const auto down = f.engine.tick(t0 + 16s);
    ASSERT_EQ(kinds(down), (std::vector<std::string>{"down boiler"}));
    EXPECT_EQ(down[0].cause, "lost");
    EXPECT_EQ(down[0].count, 1u) << "a client's own alert is about one client";
    EXPECT_EQ(down[0].title(), "boiler is down");
    EXPECT_NE(down[0].message().find("broker published its will"), std::string::npos) << down[0].message();
    const auto back = f.apply("boiler", R"({"status":1,"epoch":2})", t0 + 95s);
    ASSERT_EQ(kinds(back), (std::vector<std::string>{"recovered boiler"}));
    EXPECT_EQ(back[0].cause, "connected");
    ASSERT_TRUE(back[0].down_for);
    EXPECT_EQ(*back[0].down_for, 90s);
    EXPECT_NE(back[0].json().find("\"down_for_s\":90.0"), std::string::npos) << back[0].json();
    EXPECT_NE(back[0].message().find("after 1m30s down"), std::string::npos) << back[0].message();
    const auto again = alert::from_json(back[0].json());  // an outbox row read back after a restart
    ASSERT_TRUE(again);
    EXPECT_EQ(again->cause, "connected");
    EXPECT_EQ(again->down_for, back[0].down_for);

    f.apply("pump", "1", t0);
    f.apply("pump", "0", t0 + 1s);  // a plain 0: no reason given
    const auto plain = f.engine.tick(t0 + 12s);
    ASSERT_EQ(kinds(plain), (std::vector<std::string>{"down pump"}));
    EXPECT_EQ(plain[0].cause, "unknown");
}

// The first start: the dead of before are one summary, and each of them counts as alerted.
TEST(alert_engine, clients_down_at_the_first_start_are_one_already_down_summary) {
    alert_options o;
    o.after = 10s;
    o.exclude = {"ignored-*"};
    alert_engine engine(o);
    std::vector<client_status> down;
    for (int i = 0; i < 25; ++i) {
        client_status r;
        r.client = "dead-" + std::to_string(100 + i);
        r.topic = "s/" + r.client;
        r.status = state::disconnected;
        down.push_back(r);
    }
    client_status ignored;
    ignored.client = "ignored-1";
    ignored.status = state::disconnected;
    down.push_back(ignored);
    const auto summary = engine.already_down(down, t0);
    ASSERT_TRUE(summary);
    EXPECT_EQ(summary->kind, "already-down");
    EXPECT_EQ(summary->count, 25u) << "watched ones only";
    EXPECT_EQ(summary->sample.size(), 20u);
    EXPECT_EQ(summary->sample.front(), "dead-100");
    EXPECT_NE(summary->message().find("(5 more)"), std::string::npos) << summary->message();
    EXPECT_TRUE(engine.tick(t0 + 1h).empty()) << "no \"down\" for each of them";
    EXPECT_FALSE(engine.already_down({}, t0)) << "nothing down: no summary";
}

}  // namespace

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/service/alert_sinks.hpp>

namespace {

TEST(alert_sinks, a_template_with_an_unknown_placeholder_or_a_bad_header_is_refused_at_the_start) {
    alert_sink_options o;
    o.webhook = "http://127.0.0.1:9/hook";
    o.template_text = R"({"text":"{{title}} ({{cause}}) {{count}} {{down_for}} {{url}}"})";
    o.headers = {"Authorization: Bearer abc", "X-Gotify-Key:abc"};
    EXPECT_NO_THROW(o.validate());
    o.template_text = R"({"text":"{{client}} is {{state}}"})";
    try {
        o.validate();
        ADD_FAILURE() << "an unknown placeholder was taken";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("{{state}}"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("{{title}}"), std::string::npos) << "the known ones listed: " << e.what();
    }
    o.template_text.clear();
    for (const char* bad : {"no colon", ": value", "Bad Name: v", "X-Split: a\r\nInjected: b"}) {
        o.headers = {bad};
        EXPECT_THROW(o.validate(), error) << bad;
    }
    o.headers.clear();
    o.public_url = "presence.lan";
    EXPECT_THROW(o.validate(), error) << "a public URL without its scheme";
}

TEST(alert_sinks, a_template_is_filled_json_safe_and_count_is_one_for_a_client) {
    alert a;
    a.kind = "down";
    a.cause = "lost";
    a.client = "pump \"7\"";
    a.topic = "s/pump \"7\"";
    a.time = t0;
    a.count = 1;
    const auto body = fill_template(R"({"t":"{{title}}","n":{{count}},"d":{{down_for_s}}})", a);
    EXPECT_EQ(body, R"({"t":"pump \"7\" is down","n":1,"d":null})");
}

}  // namespace

namespace {

// Overdue (--expect) is down by silence: "overdue" after the debounce, with since = when it was last heard and the
// interval it was expected at; "back" when it is heard again, with how long it was silent. A blip says nothing.
TEST(alert_engine, an_overdue_client_alerts_after_the_debounce_and_is_back_when_heard) {
    alert_options o;
    o.after = 60s;
    fleet f(o);
    f.table.expect([](std::string_view, std::uint16_t) { return 30u; });
    f.apply("plug", "1", t0);
    const auto judge = [&](time_point at) {
        std::vector<alert> out;
        for (auto c : f.table.expire(at)) {
            c.current.topic = "s/" + c.current.client;
            auto a = f.engine.on_change(c, at);
            out.insert(out.end(), a.begin(), a.end());
        }
        auto a = f.engine.tick(at);
        out.insert(out.end(), a.begin(), a.end());
        return out;
    };
    const auto heard = [&](time_point at) {
        change c;
        if (f.table.seen("plug", 0, at, &c) != sighting::freshened) return std::vector<alert>{};
        c.current.topic = "s/plug";
        return f.engine.on_change(c, at);
    };
    EXPECT_TRUE(judge(t0 + 31s).empty()) << "overdue, but within the debounce";
    EXPECT_TRUE(heard(t0 + 40s).empty()) << "a blip says nothing";
    EXPECT_TRUE(judge(t0 + 71s).empty());
    EXPECT_TRUE(judge(t0 + 130s).empty());
    const auto overdue = judge(t0 + 131s);
    ASSERT_EQ(kinds(overdue), (std::vector<std::string>{"overdue plug"}));
    EXPECT_EQ(overdue[0].cause, "overdue");
    EXPECT_EQ(overdue[0].since, t0 + 40s) << "when it was last heard";
    EXPECT_EQ(overdue[0].expected, std::chrono::milliseconds(30s));
    EXPECT_EQ(overdue[0].title(), "plug is overdue");
    EXPECT_NE(overdue[0].message().find("expected within 30s"), std::string::npos) << overdue[0].message();
    const auto round_trip = alert::from_json(overdue[0].json());
    ASSERT_TRUE(round_trip);
    EXPECT_EQ(round_trip->expected, std::chrono::milliseconds(30s));

    const auto back = heard(t0 + 200s);
    ASSERT_EQ(kinds(back), (std::vector<std::string>{"back plug"}));
    EXPECT_EQ(back[0].cause, "seen");
    EXPECT_EQ(back[0].down_for, std::chrono::milliseconds(160s)) << "silent from its last sign of life";
}

}  // namespace

namespace {

// A group's clients going down together are one "outage" of the group ("8 of 20 in garage are down"), not eight
// pages; its end is one "outage-over".
TEST(alert_engine, a_groups_clients_going_down_together_are_one_outage_of_the_group) {
    alert_options o;
    o.after = 10s;
    o.outage_percent = 20;
    alert_engine engine(o, {"sensors/connected/+"});
    connection_table table;
    std::vector<alert> all;
    const auto feed = [&](const std::string& name, const char* payload, time_point at) {
        auto c = table.apply(name, decode(payload), false, at);
        if (!c) return;
        c->current.topic = "sensors/connected/" + name;
        if (name.rfind("garage-", 0) == 0) c->current.groups = {"garage"};
        auto a = engine.on_change(*c, at);
        all.insert(all.end(), a.begin(), a.end());
    };
    for (int i = 0; i < 20; ++i) feed("garage-" + std::to_string(i), "1", t0);
    for (int i = 0; i < 30; ++i) feed("house-" + std::to_string(i), "1", t0);
    for (int i = 0; i < 8; ++i) feed("garage-" + std::to_string(i), "0", t0 + 1s);
    for (int s = 2; s < 30; ++s) {
        auto a = engine.tick(t0 + std::chrono::seconds(s));
        all.insert(all.end(), a.begin(), a.end());
    }
    ASSERT_EQ(kinds(all), (std::vector<std::string>{"outage"})) << "one alert, not eight";
    EXPECT_EQ(all[0].group, "garage");
    EXPECT_EQ(all[0].count, 8u);
    EXPECT_EQ(all[0].total, 20u);
    EXPECT_EQ(all[0].title(), "8 of 20 in garage are down");
    EXPECT_EQ(all[0].cause, "group");
    all.clear();
    for (int i = 0; i < 8; ++i) feed("garage-" + std::to_string(i), "1", t0 + 40s);
    for (int s = 41; s < 60; ++s) {
        auto a = engine.tick(t0 + std::chrono::seconds(s));
        all.insert(all.end(), a.begin(), a.end());
    }
    ASSERT_EQ(kinds(all), (std::vector<std::string>{"outage-over"}));
    EXPECT_EQ(all[0].title(), "the outage of garage is over");
}

}  // namespace
