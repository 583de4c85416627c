// Sparkplug B edge nodes: the scheme's topics, the NBIRTH/NDEATH reader, and the table's bdSeq rule. Payloads are
// written here field by field in protobuf's wire format (independent of the nanopb reader under test), after the
// examples in the Sparkplug B 3.0 specification (section 6.4.6 NDEATH, 6.4.7 NBIRTH): a bdSeq metric of datatype
// Int64 (4) in long_value (field 11), the payload's timestamp in field 1.
#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/sparkplug/node_payload.hpp>
#include <mqtt_presence/topic_scheme.hpp>

#include <gtest/gtest.h>

#include "unix_ms.hpp"

#include <chrono>
#include <cstdint>
#include <string>

using namespace mqtt_presence;

namespace {

void varint(std::string& out, std::uint64_t v) {
    while (v >= 0x80) {
        out += static_cast<char>((v & 0x7F) | 0x80);
        v >>= 7;
    }
    out += static_cast<char>(v);
}
void tag(std::string& out, int field, int wire) { varint(out, static_cast<std::uint64_t>(field << 3 | wire)); }
void bytes(std::string& out, int field, const std::string& b) {
    tag(out, field, 2);
    varint(out, b.size());
    out += b;
}

std::string int64_metric(const std::string& name, std::uint64_t value, std::uint64_t ts) {
    std::string m;
    bytes(m, 1, name);
    tag(m, 3, 0), varint(m, ts);
    tag(m, 4, 0), varint(m, 4);  // datatype Int64
    tag(m, 11, 0), varint(m, value);
    return m;
}

std::string boolean_metric(const std::string& name) {
    std::string m;
    bytes(m, 1, name);
    tag(m, 4, 0), varint(m, 11);  // datatype Boolean
    tag(m, 14, 0), varint(m, 0);  // boolean_value false
    return m;
}

// NBIRTH: timestamp, bdSeq, "Node Control/Rebirth", seq 0 (the spec's example shape).
std::string nbirth(std::uint64_t bd_seq, std::uint64_t ts, const std::string& first_metric_name = "") {
    std::string p;
    tag(p, 1, 0), varint(p, ts);
    if (!first_metric_name.empty()) bytes(p, 2, boolean_metric(first_metric_name));
    bytes(p, 2, int64_metric("bdSeq", bd_seq, ts));
    bytes(p, 2, boolean_metric("Node Control/Rebirth"));
    tag(p, 3, 0), varint(p, 0);
    return p;
}

// NDEATH: the will registered at connect, only the bdSeq metric.
std::string ndeath(std::uint64_t bd_seq, std::uint64_t ts) {
    std::string p;
    tag(p, 1, 0), varint(p, ts);
    bytes(p, 2, int64_metric("bdSeq", bd_seq, ts));
    return p;
}

TEST(sparkplug, the_scheme_reads_births_and_deaths_of_group_and_edge) {
    const auto s = topic_scheme::preset("sparkplug-nodes");
    EXPECT_TRUE(s.sparkplug_nodes());
    EXPECT_EQ(s.filters(), (std::vector<std::string>{"spBv1.0/+/NBIRTH/+", "spBv1.0/+/NDEATH/+"}));
    EXPECT_EQ(s.match("spBv1.0/plant-1/NBIRTH/press-3"), std::optional<std::string_view>("plant-1/press-3"));
    EXPECT_EQ(s.match("spBv1.0/plant-1/NDEATH/press-3"), std::optional<std::string_view>("plant-1/press-3"));
    EXPECT_TRUE(topic_scheme::is_sparkplug_death("spBv1.0/plant-1/NDEATH/press-3"));
    EXPECT_FALSE(topic_scheme::is_sparkplug_death("spBv1.0/plant-1/NBIRTH/press-3"));
    EXPECT_FALSE(s.match("spBv1.0/plant-1/DBIRTH/press-3/dev"));  // devices are not nodes
    EXPECT_FALSE(s.match("spBv1.0/plant-1/NDATA/press-3"));
    EXPECT_FALSE(s.match("spBv1.0/STATE/scada"));
    EXPECT_EQ(s.topic_for("plant-1/press-3"), "spBv1.0/plant-1/NBIRTH/press-3");
    EXPECT_THROW((void)s.topic_for("press-3"), mqtt_presence::error);
    EXPECT_THROW((void)s.topic_for("a/b/c"), mqtt_presence::error);
}

TEST(sparkplug, nbirth_and_ndeath_give_session_and_time) {
    status_record birth;
    ASSERT_TRUE(sparkplug::read_node_payload(nbirth(7, 1486144502122), birth)) << birth.detail;
    EXPECT_EQ(birth.session, 7u);
    ASSERT_TRUE(birth.timestamp);
    EXPECT_EQ(unix_ms(*birth.timestamp), 1486144502122);
    EXPECT_EQ(birth.detail, "bdSeq 7");
    status_record death;
    ASSERT_TRUE(sparkplug::read_node_payload(ndeath(0, 1486144502122), death)) << death.detail;
    EXPECT_EQ(death.session, 0u);
    // A long metric name before bdSeq is skipped, not a failure.
    status_record long_name;
    ASSERT_TRUE(sparkplug::read_node_payload(nbirth(3, 1, std::string(300, 'x')), long_name)) << long_name.detail;
    EXPECT_EQ(long_name.session, 3u);
}

TEST(sparkplug, what_is_not_a_node_payload_is_unknown_with_the_reason) {
    status_record r;
    EXPECT_FALSE(sparkplug::read_node_payload("{\"online\":true}", r));
    EXPECT_EQ(r.status, state::unknown);
    EXPECT_NE(r.detail.find("not a Sparkplug B payload"), std::string::npos) << r.detail;
    EXPECT_FALSE(r.raw.empty());
    std::string no_bd_seq;
    tag(no_bd_seq, 1, 0), varint(no_bd_seq, 1000);
    bytes(no_bd_seq, 2, boolean_metric("Node Control/Rebirth"));
    status_record n;
    EXPECT_FALSE(sparkplug::read_node_payload(no_bd_seq, n));
    EXPECT_EQ(n.detail, "Sparkplug B payload without a bdSeq metric");
    std::string truncated = nbirth(1, 1);
    truncated.resize(truncated.size() - 3);
    status_record t;
    EXPECT_FALSE(sparkplug::read_node_payload(truncated, t));
}

// "An NDEATH whose bdSeq does not match the preceding NBIRTH's is ignored" (Sparkplug B 3.0, host applications).
TEST(sparkplug, a_death_counts_only_with_its_births_bd_seq) {
    connection_table table;
    const auto now = clock::now();
    const auto read = [](const std::string& payload, state s) {
        status_record r;
        EXPECT_TRUE(sparkplug::read_node_payload(payload, r));
        r.status = s;
        return r;
    };
    table.apply("plant/press", read(nbirth(5, 1000), state::connected), false, now);
    table.apply("plant/press", read(ndeath(4, 900), state::disconnected), false, now);  // an older session's will
    EXPECT_EQ(table.find("plant/press")->status, state::connected);
    EXPECT_EQ(table.stats().stale_deaths_ignored, 1u);
    table.apply("plant/press", read(ndeath(5, 1000), state::disconnected), false, now);
    EXPECT_EQ(table.find("plant/press")->status, state::disconnected);
    // bdSeq wraps at 255: a new birth with 0 after 255 is a new session, not an old one.
    table.apply("plant/press", read(nbirth(255, 2000), state::connected), false, now);
    table.apply("plant/press", read(ndeath(255, 2000), state::disconnected), false, now);
    table.apply("plant/press", read(nbirth(0, 3000), state::connected), false, now);
    EXPECT_EQ(table.find("plant/press")->status, state::connected);
    EXPECT_EQ(table.size(), 1u) << "one row per node";
}

}  // namespace
