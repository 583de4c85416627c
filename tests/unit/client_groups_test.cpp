// Groups: rules on names, topics and metadata; a client in several groups or none; bad rules refused by name.
#include <mqtt_presence/client_groups.hpp>
#include <mqtt_presence/error.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace mqtt_presence;

namespace {

client_status row(const std::string& name, const std::string& topic, const std::string& meta = "",
                  const std::string& host = "") {
    client_status r;
    r.client = name;
    r.topic = topic;
    r.meta = meta;
    r.host = host;
    return r;
}

TEST(client_groups, names_topics_and_metadata_put_a_client_in_several_groups_or_none) {
    const client_groups groups({group_rule::parse("garage=garage-*"), group_rule::parse("tasmota=tele/*/LWT"),
                                group_rule::parse("battery=meta.power=battery"),
                                group_rule::parse("garage=door-?"), group_rule::parse("old=meta.fw=1.5"),
                                group_rule::parse("vm=meta.host=vm-3"), group_rule::parse("on=meta.ok=true")});
    EXPECT_EQ(groups.names(), (std::vector<std::string>{"garage", "tasmota", "battery", "old", "vm", "on"}));
    EXPECT_EQ(groups.of(row("garage-door", "tele/garage-door/LWT", R"({"power":"battery"})")),
              (std::vector<std::string>{"garage", "tasmota", "battery"}));
    EXPECT_EQ(groups.of(row("door-1", "sensors/connected/door-1")), std::vector<std::string>{"garage"})
        << "a second rule of the same group";
    EXPECT_TRUE(groups.of(row("kitchen", "sensors/connected/kitchen", R"({"power":"mains"})")).empty());
    EXPECT_EQ(groups.of(row("k", "t", R"({"fw":1.5,"ok":true})")), (std::vector<std::string>{"old", "on"}))
        << "numbers and booleans as JSON writes them";
    EXPECT_EQ(groups.of(row("k", "t", "", "vm-3")), std::vector<std::string>{"vm"}) << "the host it reported";
    EXPECT_TRUE(groups.of(row("k", "t", "{not json")).empty()) << "unreadable metadata fits no rule";
    EXPECT_EQ(groups.of("garage-x", ""), std::vector<std::string>{"garage"}) << "by name alone";
    EXPECT_TRUE(client_groups().of(row("a", "b")).empty());
}

TEST(client_groups, a_bad_rule_is_refused_saying_how_to_write_one) {
    for (const char* bad : {"garage", "=x*", "g=", "g=meta.", "g=meta.=x", "g=meta.key", "a,b=x", "a\"b=x"}) {
        try {
            (void)group_rule::parse(bad);
            ADD_FAILURE() << "accepted " << bad;
        } catch (const error& e) {
            EXPECT_NE(std::string(e.what()).find("write e.g."), std::string::npos) << e.what();
        }
    }
}

}  // namespace
