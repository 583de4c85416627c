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
