// The client id claim's rules: its payload both ways, freshness, and which of two processes is the newcomer.
#include <gtest/gtest.h>

#include "client_id_claim.hpp"

using namespace mqtt_presence::detail;

TEST(client_id_claim, a_claim_reads_back_as_it_was_written) {
    const client_id_claim claim{1'796'000'000'123, 0xfedcba9876543210ull, 1'796'000'004'000};
    const auto back = decode_claim(encode_claim(claim));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->started_ms, claim.started_ms);
    EXPECT_EQ(back->token, claim.token) << "a 64-bit token survives (it is text in the JSON)";
    EXPECT_EQ(back->at_ms, claim.at_ms);
}

TEST(client_id_claim, a_cleared_or_foreign_payload_is_no_claim) {
    for (const char* payload : {"", "1", "{}", "[1,2]", R"({"started":1,"token":"x","at":2})",
                                R"({"started":-1,"token":"1","at":2})", R"({"started":1,"token":"1 ","at":2})",
                                R"({"started":1,"token":1,"at":2})", "{\"started\":1,"})
        EXPECT_FALSE(decode_claim(payload)) << payload;
}

TEST(client_id_claim, the_topic_is_the_client_id_under_a_reserved_prefix_or_none) {
    EXPECT_EQ(claim_topic("twin"), "mqtt-presence/claim/twin");
    EXPECT_EQ(claim_topic("site/a"), "mqtt-presence/claim/site/a");
    EXPECT_EQ(claim_topic(""), "");
    EXPECT_EQ(claim_topic("a+b"), "") << "a wildcard cannot be published to";
    EXPECT_EQ(claim_topic("a#"), "");
}

TEST(client_id_claim, the_process_created_later_is_the_newcomer_and_ties_go_by_token) {
    const client_id_claim first{1000, 5, 0};
    const client_id_claim second{2000, 3, 0};
    EXPECT_TRUE(is_newcomer(second, first));
    EXPECT_FALSE(is_newcomer(first, second));
    const client_id_claim twin{1000, 9, 0};
    EXPECT_TRUE(is_newcomer(twin, first));
    EXPECT_FALSE(is_newcomer(first, twin)) << "exactly one of two is the newcomer";
}

TEST(client_id_claim, only_a_claim_published_within_a_minute_either_way_is_a_live_rival) {
    const std::uint64_t now = 1'796'000'000'000;
    EXPECT_TRUE(is_fresh({0, 1, now - 60'000}, now));
    EXPECT_FALSE(is_fresh({0, 1, now - 60'001}, now)) << "a dead process's leftover";
    EXPECT_TRUE(is_fresh({0, 1, now + 60'000}, now)) << "a clock a little ahead";
    EXPECT_FALSE(is_fresh({0, 1, now + 60'001}, now));
}
