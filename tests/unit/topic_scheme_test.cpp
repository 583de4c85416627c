#include <mqtt_presence/error.hpp>
#include <mqtt_presence/topic_scheme.hpp>

#include <gtest/gtest.h>

using mqtt_presence::topic_scheme;

namespace {

// Expects `fn` to throw mqtt_presence::error whose message contains `fragment`.
template <class F>
void expect_error(F&& fn, const std::string& fragment) {
    try {
        fn();
        ADD_FAILURE() << "expected mqtt_presence::error containing \"" << fragment << "\", nothing was thrown";
    } catch (const mqtt_presence::error& e) {
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
            << "message \"" << e.what() << "\" lacks \"" << fragment << "\"";
    }
}

TEST(topic_scheme, seed_layouts_give_topic_and_filter) {
    auto sys = topic_scheme::system_wide();
    EXPECT_EQ(sys.topic_for("s1"), "$CONNECTED/s1");
    EXPECT_EQ(sys.filter(), "$CONNECTED/+");
    auto g1 = topic_scheme::group_connected("sensors");
    EXPECT_EQ(g1.topic_for("s1"), "sensors/connected/s1");
    EXPECT_EQ(g1.filter(), "sensors/connected/+");
    auto g2 = topic_scheme::group_client_connected("sensors");
    EXPECT_EQ(g2.topic_for("s1"), "sensors/s1/connected");
    EXPECT_EQ(g2.filter(), "sensors/+/connected");
}

TEST(topic_scheme, presets_cover_the_conventions) {
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"homie", "homie/dev/$state"},          {"tasmota", "tele/dev/LWT"},
        {"esphome", "dev/status"},              {"zigbee2mqtt", "dev/bridge/state"},
        {"sparkplug", "spBv1.0/STATE/dev"},     {"smarthome", "dev/connected"},
        {"connected", "$CONNECTED/dev"},        {"sensors", "sensors/connected/dev"},
    };
    for (const auto& [name, topic] : expected) {
        auto s = topic_scheme::preset(name);
        EXPECT_EQ(s.topic_for("dev"), topic) << name;
        EXPECT_EQ(s.match(topic), std::optional<std::string_view>("dev")) << name;
    }
    EXPECT_EQ(topic_scheme::preset("HOMIE").template_text(), "homie/{client}/$state");
    expect_error([] { (void)topic_scheme::preset("nosuch"); }, "known: sensors, connected, homie");
}

TEST(topic_scheme, match_accepts_only_this_schemes_topics) {
    auto s = topic_scheme::parse("sensors/{client}/connected");
    EXPECT_EQ(s.match("sensors/a/connected"), std::optional<std::string_view>("a"));
    EXPECT_EQ(s.match("sensors/a b/connected"), std::optional<std::string_view>("a b"));
    EXPECT_FALSE(s.match("sensors//connected"));
    EXPECT_FALSE(s.match("sensors/a/b/connected"));
    EXPECT_FALSE(s.match("sensors/a/connected/x"));
    EXPECT_FALSE(s.match("other/a/connected"));
    EXPECT_FALSE(s.match("sensors/connected"));
    auto first = topic_scheme::parse("{client}/status");
    EXPECT_EQ(first.match("dev/status"), std::optional<std::string_view>("dev"));
    EXPECT_FALSE(first.match("$SYS/status")) << "'+' as first level never matches $ topics";
}

TEST(topic_scheme, bad_templates_say_what_is_wrong) {
    expect_error([] { (void)topic_scheme::parse(""); }, "it is empty");
    expect_error([] { (void)topic_scheme::parse("sensors/connected"); }, "no {client} placeholder");
    expect_error([] { (void)topic_scheme::parse("a/{client}/{client}"); }, "more than one");
    expect_error([] { (void)topic_scheme::parse("a/x{client}"); }, "whole topic level");
    expect_error([] { (void)topic_scheme::parse("a/{client}x"); }, "whole topic level");
    expect_error([] { (void)topic_scheme::parse("a/+/{client}"); }, "wildcard");
    expect_error([] { (void)topic_scheme::parse("a/#/{client}"); }, "wildcard");
    expect_error([] { (void)topic_scheme::parse("a/{name}/{client}"); }, "brace");
    expect_error([] { (void)topic_scheme::parse(std::string("a/\0/{client}", 13)); }, "NUL");
    expect_error([] { (void)topic_scheme::parse("a/\xff/{client}"); }, "not valid UTF-8");
    expect_error([] { (void)topic_scheme::parse("a/{client}/" + std::string(70000, 'x')); }, "65535");
    expect_error([] { (void)topic_scheme::parse("a"); }, "e.g. \"sensors/connected/{client}\"");
}

TEST(topic_scheme, bad_names_say_what_is_wrong) {
    auto s = topic_scheme::parse("sensors/connected/{client}");
    expect_error([&] { (void)s.topic_for(""); }, "empty");
    expect_error([&] { (void)s.topic_for("a/b"); }, "'/'");
    expect_error([&] { (void)s.topic_for("a+"); }, "'+'");
    expect_error([&] { (void)s.topic_for("a#"); }, "'#'");
    expect_error([&] { (void)s.topic_for(std::string("a\0b", 3)); }, "NUL");
    expect_error([&] { (void)s.topic_for("\xc3\x28"); }, "UTF-8");
    expect_error([&] { (void)s.topic_for(std::string(70000, 'n')); }, "65535");
    EXPECT_EQ(s.topic_for("$x"), "sensors/connected/$x") << "'$' is fine below the first level";
    expect_error([] { (void)topic_scheme::parse("{client}/status").topic_for("$x"); }, "starts with '$'");
    EXPECT_EQ(s.topic_for("k\xc3\xbc" "che"), "sensors/connected/k\xc3\xbc" "che");
}

}  // namespace

namespace {

TEST(topic_scheme_multi_level, client_plus_reads_names_over_several_levels) {
    auto z = topic_scheme::parse("zigbee2mqtt/{client+}/availability");
    EXPECT_TRUE(z.multi_level());
    ASSERT_EQ(z.filters().size(), topic_scheme::max_name_levels);
    EXPECT_EQ(z.filters().front(), "zigbee2mqtt/+/availability");
    EXPECT_EQ(z.filters()[1], "zigbee2mqtt/+/+/availability");
    EXPECT_EQ(z.filters().back(), "zigbee2mqtt/+/+/+/+/+/+/+/+/availability");
    EXPECT_EQ(z.match("zigbee2mqtt/kitchen/availability"), std::optional<std::string_view>("kitchen"));
    EXPECT_EQ(z.match("zigbee2mqtt/living room/lamp/availability"),
              std::optional<std::string_view>("living room/lamp"));
    EXPECT_EQ(z.topic_for("a/b/c"), "zigbee2mqtt/a/b/c/availability");
    EXPECT_FALSE(z.match("zigbee2mqtt//availability"));
    EXPECT_FALSE(z.match("zigbee2mqtt/a//b/availability"));
    EXPECT_FALSE(z.match("zigbee2mqtt/1/2/3/4/5/6/7/8/9/availability"));  // deeper than the filters reach
    EXPECT_FALSE(z.match("zigbee2mqtt/bridge/state"));
    expect_error([&] { (void)z.topic_for("a//b"); }, "empty topic level");
    expect_error([&] { (void)z.topic_for("/a"); }, "empty topic level");
    expect_error([&] { (void)z.topic_for("a/+"); }, "wildcards");
    expect_error([&] { (void)z.topic_for("1/2/3/4/5/6/7/8/9"); }, "up to 8");

    auto tail = topic_scheme::parse("home/{client+}");
    EXPECT_EQ(tail.filters(), std::vector<std::string>{"home/#"});
    EXPECT_EQ(tail.match("home/1/2/3/4/5/6/7/8/9/10"), std::optional<std::string_view>("1/2/3/4/5/6/7/8/9/10"));
}

TEST(topic_scheme_multi_level, shapes_that_cannot_be_subscribed_are_refused) {
    expect_error([] { (void)topic_scheme::parse("{client+}"); }, "every topic");
    expect_error([] { (void)topic_scheme::parse("a/{client+}/{client}"); }, "more than one");
    expect_error([] { (void)topic_scheme::parse("a/{client}/{client+}"); }, "more than one");
    expect_error([] { (void)topic_scheme::parse("a/x{client+}/b"); }, "whole topic levels");
    expect_error([] { (void)topic_scheme::parse("a/+/{client+}"); }, "wildcard");
    // One level stays one level: a '/' in a {client} name is refused.
    expect_error([] { (void)topic_scheme::parse("a/{client}/b").topic_for("x/y"); }, "'/'");
}

}  // namespace

TEST(topic_scheme, a_client_ending_the_template_is_subscribed_with_hash_so_deeper_topics_are_seen) {
    const auto end = topic_scheme::parse("sensors/connected/{client}");
    EXPECT_EQ(end.filter(), "sensors/connected/+");
    EXPECT_EQ(end.subscription_filters(), std::vector<std::string>{"sensors/connected/#"});
    EXPECT_FALSE(end.match("sensors/connected/lab/sim-1")) << "subscribed, but no name: counted as unmatched";
    EXPECT_EQ(topic_scheme::parse("$CONNECTED/{client}").subscription_filters(),
              std::vector<std::string>{"$CONNECTED/#"});
    // A suffix cannot follow '#': one filter per depth; a template without a fixed level would take too much.
    const auto middle = topic_scheme::parse("sensors/{client}/connected");
    ASSERT_EQ(middle.subscription_filters().size(), topic_scheme::max_name_levels);
    EXPECT_EQ(middle.subscription_filters()[0], "sensors/+/connected");
    EXPECT_EQ(middle.subscription_filters()[1], "sensors/+/+/connected");
    EXPECT_EQ(middle.filters(), std::vector<std::string>{"sensors/+/connected"});
    EXPECT_FALSE(middle.match("sensors/a/b/connected"));
    EXPECT_EQ(topic_scheme::parse("{client}/status").subscription_filters(), std::vector<std::string>{"+/status"});
    EXPECT_EQ(topic_scheme::parse("zigbee2mqtt/{client+}").subscription_filters(),
              std::vector<std::string>{"zigbee2mqtt/#"});
}
