#include <mqtt_presence/error.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <gtest/gtest.h>

#include "unix_ms.hpp"

#include <chrono>
#include <cstdio>
#include <vector>

using namespace mqtt_presence;
using namespace std::chrono_literals;

namespace {

struct accepted_case {
    std::string payload;
    state expected;
    std::string detail;
};

// Names the case by its payload in test listings.
void PrintTo(const accepted_case& c, std::ostream* os) { *os << ::testing::PrintToString(c.payload); }

class decode_accepts : public ::testing::TestWithParam<accepted_case> {};

TEST_P(decode_accepts, every_convention) {
    const auto& c = GetParam();
    const auto r = decode(c.payload);
    EXPECT_EQ(r.status, c.expected) << "payload: " << c.payload << " detail: " << r.detail;
    EXPECT_EQ(r.detail, c.detail) << "payload: " << c.payload;
    EXPECT_FALSE(r.malformed());
    EXPECT_FALSE(r.cleared);
}

INSTANTIATE_TEST_SUITE_P(
    forms, decode_accepts,
    ::testing::Values(
        accepted_case{"1", state::connected, ""}, accepted_case{"0", state::disconnected, ""},
        accepted_case{"2", state::connected, "device-ok"}, accepted_case{"true", state::connected, ""},
        accepted_case{"false", state::disconnected, ""}, accepted_case{"online", state::connected, ""},
        accepted_case{"Online", state::connected, ""}, accepted_case{"OFFLINE", state::disconnected, ""},
        accepted_case{"connected", state::connected, ""},
        accepted_case{"disconnected", state::disconnected, ""}, accepted_case{"ready", state::connected, ""},
        accepted_case{"lost", state::disconnected, "lost"}, accepted_case{"init", state::connected, "init"},
        accepted_case{"sleeping", state::disconnected, "sleeping"},
        accepted_case{"alert", state::connected, "alert"}, accepted_case{"  1\r\n", state::connected, ""},
        accepted_case{"\toffline ", state::disconnected, ""},
        accepted_case{R"({"status":1})", state::connected, ""},
        accepted_case{R"({"status":0})", state::disconnected, ""},
        accepted_case{R"({"status":2})", state::connected, "device-ok"},
        accepted_case{R"({"status":true})", state::connected, ""},
        accepted_case{R"({"status":false})", state::disconnected, ""},
        accepted_case{R"({"status":"online"})", state::connected, ""},
        accepted_case{R"({"status":"offline"})", state::disconnected, ""},
        accepted_case{R"({"online":true,"timestamp":1668114759262})", state::connected, ""},
        accepted_case{R"({"online":false})", state::disconnected, ""},
        accepted_case{R"({"state":"online"})", state::connected, ""},
        accepted_case{R"({"state":"offline"})", state::disconnected, ""},
        accepted_case{R"(  { "status" : 1 , "fw" : "1.2" }  )", state::connected, ""},
        accepted_case{R"({"status":1,"online":true})", state::connected, ""}),
    [](const ::testing::TestParamInfo<accepted_case>& p) { return "case_" + std::to_string(p.index); });

class decode_rejects : public ::testing::TestWithParam<std::string> {};

TEST_P(decode_rejects, malformed_input_is_unknown_with_a_reason) {
    const auto& payload = GetParam();
    status_record r;
    ASSERT_NO_THROW(r = decode(payload));
    EXPECT_EQ(r.status, state::unknown) << "payload: " << payload.substr(0, 80);
    EXPECT_TRUE(r.malformed());
    EXPECT_FALSE(r.detail.empty()) << "a reason must be kept";
    EXPECT_LE(r.raw.size(), max_raw_copy + 3);
}

std::string nested(std::size_t depth) {
    return R"({"status":1,"x":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
}

INSTANTIATE_TEST_SUITE_P(
    forms, decode_rejects,
    ::testing::Values(
        std::string("garbage"), std::string("dead"), std::string("3"), std::string("-1"), std::string("1.0"), std::string("01"),
        std::string("yes please"), std::string("   "), std::string("\n"), std::string("1 0"),
        std::string("\xff\xfe"), std::string("onl\xc3\x28ine"), std::string("1\0", 2), std::string("\0", 1),
        std::string(R"({"status":1)"), std::string(R"({"status":)"), std::string("{"), std::string("{}"),
        std::string(R"({"status":"1"})"), std::string(R"({"status":"0"})"), std::string(R"({"status":3})"),
        std::string(R"({"status":-1})"), std::string(R"({"status":1.5})"), std::string(R"({"status":1e400})"),
        std::string(R"({"status":null})"), std::string(R"({"status":[1]})"), std::string(R"({"status":{"a":1}})"),
        std::string(R"({"status":"maybe"})"), std::string(R"({"online":"true"})"),
        std::string(R"({"online":1})"), std::string(R"({"state":1})"), std::string(R"({"status":1,"online":false})"),
        std::string(R"({"status":1,"epoch":-5})"), std::string(R"({"status":1,"epoch":"7"})"),
        std::string(R"({"status":1,"epoch":1.5})"), std::string(R"({"status":1,"ts":99999999999999999999})"),
        std::string(R"({"status":1,"ts":"now"})"), std::string(R"({"status":1,"hb":-3})"),
        std::string(R"({"status":1,"hb":100000000})"), std::string(R"({"status":1,"client":5})"),
        std::string(R"({"status":1,"ip":["a"]})"), std::string("{\"status\":1,\"ip\":\"\xff\"}"),
        std::string("{\"status\":1}\0", 13), std::string(R"({"status":1} trailing)"),
        std::string(R"([1])"), std::string(R"({"fw":"1.2"})"), std::string(R"("online")"),
        std::string(R"({'status':1})"), std::string(R"({"status":1,})"), std::string(1024 * 1024, 'a'),
        std::string(1024 * 1024, ' ') + "1", nested(10000), nested(40),
        std::string(R"({"status":)") + std::string(10000, '[')),
    [](const ::testing::TestParamInfo<std::string>& p) { return "case_" + std::to_string(p.index); });

TEST(decode, empty_payload_clears_the_retained_status) {
    const auto r = decode("");
    EXPECT_TRUE(r.cleared);
    EXPECT_FALSE(r.malformed());
}

TEST(decode, reasons_say_what_to_fix) {
    EXPECT_NE(decode(R"({"status":"1"})").detail.find("write the number 1 without quotes"), std::string::npos);
    EXPECT_NE(decode(R"({"status":1,"epoch":"7"})").detail.find("member \"epoch\" is a string"), std::string::npos);
    EXPECT_NE(decode(R"({"fw":1})").detail.find("without a status"), std::string::npos);
    EXPECT_NE(decode(std::string(1024 * 1024, 'a')).detail.find("too large"), std::string::npos);
    EXPECT_NE(decode(nested(10000)).detail.find("nested deeper"), std::string::npos);
}

TEST(decode, raw_copy_is_printable_and_bounded) {
    const auto r = decode(std::string("bad\x01\xff") + std::string(1000, 'x'));
    EXPECT_EQ(r.raw.substr(0, 11), "bad\\x01\\xff");
    EXPECT_LE(r.raw.size(), max_raw_copy + 3);
    EXPECT_EQ(r.raw.substr(r.raw.size() - 3), "...");
}

TEST(decode, json_members_are_read) {
    const auto r = decode(
        R"({"status":0,"client":"s1","epoch":17,"ts":1700000000123,"ip":"10.0.0.5","hb":30,"reason":"lost",)"
        R"("fw":"1.2","loc":{"room":"hall","pos":[1,2]}})");
    EXPECT_EQ(r.status, state::disconnected);
    EXPECT_EQ(r.client, "s1");
    EXPECT_EQ(r.epoch, 17u);
    ASSERT_TRUE(r.timestamp);
    EXPECT_EQ(unix_ms(*r.timestamp), 1700000000123);
    EXPECT_EQ(r.ip, "10.0.0.5");
    EXPECT_EQ(r.heartbeat, std::chrono::seconds(30));
    EXPECT_EQ(r.reason, "lost");
    EXPECT_EQ(r.meta, R"({"fw":"1.2","loc":{"pos":[1,2],"room":"hall"}})");
}

TEST(decode, sparkplug_timestamp_is_the_time) {
    const auto r = decode(R"({"online":true,"timestamp":1668114759262})");
    ASSERT_TRUE(r.timestamp);
    EXPECT_EQ(unix_ms(*r.timestamp), 1668114759262);
    EXPECT_TRUE(r.meta.empty());
}

// The same payload with its first key's first letter written as a \u escape: outside the flat fast path's subset,
// so nlohmann's parser reads it. Both paths must say the same.
std::string escaped_first_key(const std::string& json) {
    const auto q = json.find('"');
    if (q == std::string::npos || q + 1 >= json.size()) return {};
    char esc[8];
    std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned char>(json[q + 1]));
    return json.substr(0, q + 1) + esc + json.substr(q + 2);
}

TEST(decode, flat_json_fast_path_agrees_with_nlohmann) {
    const std::vector<std::string> payloads{
        R"({"status":1})", R"({"status":0,"reason":"clean"})", R"({"status":2})", R"({"status":true})",
        R"({"status":"online"})", R"({"online":false,"timestamp":1668114759262})", R"({"state":"offline"})",
        R"( { "status" : 1 , "fw" : "1.2" } )", "{\t\"status\":1,\r\n\"hb\":30}",
        R"({"status":1,"client":"s1","epoch":1700000000123,"ts":1700000000123,"ip":"10.0.0.5","host":"h"})",
        R"({"status":1,"fw":"1.4","room":"hall","n":0,"ok":true,"off":false,"none":null})",
        R"({"status":1,"b":"2","a":"1"})", R"({"status":1,"status":1})", R"({"status":1,"status":0})",
        R"({"status":1,"x":1,"x":2})", R"({"status":1,"epoch":9999999999999999999})",
        R"({"status":1,"epoch":18446744073709551615})", R"({"status":1,"epoch":18446744073709551616})",
        R"({"status":1,"epoch":007})", R"({"status":1,"n":-0})", R"({"status":1,"n":1E3})",
        R"({"status":"1"})", R"({"status":3})", R"({"status":null})", R"({"online":1})", R"({"state":1})",
        R"({"status":1,"epoch":"7"})", R"({"status":1,"ts":99999999999999})", R"({"status":1,"hb":100000000})",
        R"({"status":1,"client":5})", R"({"fw":"1.2"})", R"({"status":1,})", R"({"status":1} x)",
        R"({"status":1 "a":2})", R"({"status":1,"a":tru})", R"({"status":1,"a":"x\"y"})", R"({"status":truex})",
        "{\"status\":1,\"a\":\"caf\xc3\xa9\"}", "{\"status\":1,\"a\":\"\x01\"}",
        R"({"status":1,"loc":{"room":"hall"}})", R"({"status":1,"pos":[1,2]})"};
    for (const auto& fast : payloads) {
        const auto slow = escaped_first_key(fast);
        ASSERT_FALSE(slow.empty()) << fast;
        const auto a = decode(fast), b = decode(slow);
        const auto where = "payload " + fast + " vs " + slow;
        EXPECT_EQ(a.status, b.status) << where << ": " << a.detail << " / " << b.detail;
        EXPECT_EQ(a.client, b.client) << where;
        EXPECT_EQ(a.epoch, b.epoch) << where;
        EXPECT_EQ(a.timestamp, b.timestamp) << where;
        EXPECT_EQ(a.heartbeat, b.heartbeat) << where;
        EXPECT_EQ(a.ip, b.ip) << where;
        EXPECT_EQ(a.host, b.host) << where;
        EXPECT_EQ(a.reason, b.reason) << where;
        EXPECT_EQ(a.meta, b.meta) << where;
        if (a.detail.rfind("invalid JSON", 0) != 0) {  // syntax errors name byte offsets, which the escape moves
            EXPECT_EQ(a.detail, b.detail) << where;
        }
    }
}

TEST(decode, a_reused_record_keeps_nothing_of_the_last_payload) {
    status_record r;
    for (const std::string next : {"0", "garbage", "", R"({"online":true})", "sleeping"}) {
        decode(R"({"status":1,"client":"s1","epoch":7,"ts":1700000000123,"ip":"10.0.0.5","hb":30,"fw":"1"})", r);
        ASSERT_EQ(r.client, "s1");
        decode(next, r);
        const auto fresh = decode(next);
        EXPECT_EQ(r.status, fresh.status) << next;
        EXPECT_EQ(r.cleared, fresh.cleared) << next;
        EXPECT_EQ(r.detail, fresh.detail) << next;
        EXPECT_EQ(r.raw, fresh.raw) << next;
        EXPECT_TRUE(r.client.empty() && r.ip.empty() && r.meta.empty()) << next;
        EXPECT_FALSE(r.epoch || r.heartbeat) << next;
        EXPECT_EQ(r.timestamp, fresh.timestamp) << next;
    }
}

status_record full_record(state s) {
    status_record r;
    r.status = s;
    r.client = "s1";
    r.epoch = 1700000000000ULL;
    r.timestamp = time_point(std::chrono::milliseconds(1700000000456));
    r.ip = "192.168.1.20";
    r.host = "rack-7";
    r.heartbeat = 15s;
    r.reason = s == state::disconnected ? "lost" : "";
    r.meta = R"({"fw":"2.0","room":"hall"})";
    return r;
}

TEST(encode, round_trips_every_format) {
    for (auto s : {state::connected, state::disconnected}) {
        const auto rec = full_record(s);
        for (auto f : {payload_format::plain, payload_format::json, payload_format::text}) {
            const auto back = decode(encode(rec, f));
            EXPECT_EQ(back.status, s) << to_string(f);
            EXPECT_FALSE(back.malformed()) << to_string(f) << ": " << back.detail;
        }
        const auto back = decode(encode(rec, payload_format::json));
        EXPECT_EQ(back.client, rec.client);
        EXPECT_EQ(back.epoch, rec.epoch);
        EXPECT_EQ(back.timestamp, rec.timestamp);
        EXPECT_EQ(back.ip, rec.ip);
        EXPECT_EQ(back.host, rec.host);
        EXPECT_EQ(back.heartbeat, rec.heartbeat);
        EXPECT_EQ(back.reason, rec.reason);
        EXPECT_EQ(back.meta, rec.meta);
    }
}

TEST(encode, exact_texts) {
    status_record up;
    up.status = state::connected;
    EXPECT_EQ(encode(up, payload_format::plain), "1");
    EXPECT_EQ(encode(up, payload_format::text), "online");
    EXPECT_EQ(encode(up, payload_format::json), R"({"status":1})");
    status_record down;
    down.status = state::disconnected;
    EXPECT_EQ(encode(down, payload_format::plain), "0");
    EXPECT_EQ(encode(down, payload_format::text), "offline");
    EXPECT_EQ(encode(full_record(state::connected), payload_format::json),
              R"({"status":1,"client":"s1","epoch":1700000000000,"ts":1700000000456,"ip":"192.168.1.20",)"
              R"("host":"rack-7","hb":15,"fw":"2.0","room":"hall"})");
}

TEST(encode, refuses_what_it_cannot_say) {
    EXPECT_THROW((void)encode(status_record{}, payload_format::plain), mqtt_presence::error);
    auto bad_meta = full_record(state::connected);
    bad_meta.meta = "[1,2]";
    EXPECT_THROW((void)encode(bad_meta, payload_format::json), mqtt_presence::error);
    bad_meta.meta = R"({"status":5})";
    EXPECT_THROW((void)encode(bad_meta, payload_format::json), mqtt_presence::error);
}

TEST(names, formats_and_states_parse) {
    EXPECT_EQ(parse_payload_format("JSON"), payload_format::json);
    EXPECT_THROW((void)parse_payload_format("xml"), mqtt_presence::error);
    EXPECT_EQ(parse_state("disconnected"), state::disconnected);
    EXPECT_FALSE(parse_state("up"));
}

}  // namespace
