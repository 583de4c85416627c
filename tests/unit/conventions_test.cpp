// Every --convention preset, read end to end as the scanner reads it: the project's own topic and payloads (each
// case names the document or source it is taken from) go through the scheme's filters, match() and decode() into
// a connection_table, which must show one row per device with the right state.
#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/status_codec.hpp>
#include <mqtt_presence/topic_scheme.hpp>

#include <gtest/gtest.h>

#include "unix_ms.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

using namespace mqtt_presence;

namespace {

struct convention_case {
    std::string preset;
    std::string source;  // where the topic and payloads are documented
    std::string topic;   // a status topic as the project publishes it
    std::string name;    // the row's name
    std::string online;  // its "connected" payload
    std::string offline; // its will / clean-stop payload
};

void PrintTo(const convention_case& c, std::ostream* os) { *os << c.preset; }

// A filter matches a topic as a broker would match it (MQTT 3.1.1, 4.7): '+' one level, '#' the rest.
bool filter_matches(const std::string& filter, const std::string& topic) {
    std::size_t f = 0, t = 0;
    while (f < filter.size()) {
        const auto f_end = std::min(filter.find('/', f), filter.size());
        const auto level = filter.substr(f, f_end - f);
        if (level == "#") return true;
        if (t > topic.size()) return false;
        const auto t_end = std::min(topic.find('/', t), topic.size());
        if (level != "+" && level != topic.substr(t, t_end - t)) return false;
        f = f_end + 1;
        t = t_end + 1;
    }
    return t == topic.size() + 1;
}

class conventions : public ::testing::TestWithParam<convention_case> {};

TEST_P(conventions, a_device_is_one_row_connected_then_disconnected) {
    const auto& c = GetParam();
    const auto scheme = topic_scheme::preset(c.preset);
    EXPECT_TRUE(std::any_of(scheme.filters().begin(), scheme.filters().end(),
                            [&](const std::string& f) { return filter_matches(f, c.topic); }))
        << c.topic << " is under none of " << c.preset << "'s filters (" << c.source << ")";
    const auto name = scheme.match(c.topic);
    ASSERT_TRUE(name) << c.topic << " (" << c.source << ")";
    EXPECT_EQ(*name, c.name);
    EXPECT_EQ(scheme.topic_for(c.name), c.topic);

    connection_table table;
    const auto now = clock::now();
    table.apply(*name, decode(c.online), true, now);
    ASSERT_EQ(table.size(), 1u);
    EXPECT_EQ(table.find(c.name)->status, state::connected) << c.online << " (" << c.source << ")";
    table.apply(*name, decode(c.offline), false, now + std::chrono::seconds(1));
    EXPECT_EQ(table.size(), 1u);
    EXPECT_EQ(table.find(c.name)->status, state::disconnected) << c.offline << " (" << c.source << ")";
    EXPECT_EQ(table.stats().malformed, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    presets, conventions,
    ::testing::Values(
        convention_case{"zigbee2mqtt-devices",
                        "zigbee2mqtt.io, Device availability: zigbee2mqtt/[FRIENDLY_NAME]/availability, "
                        "{\"state\":\"online\"}; friendly names may contain '/'",
                        "zigbee2mqtt/living room/lamp/availability", "living room/lamp", R"({"state":"online"})",
                        R"({"state":"offline"})"},
        convention_case{"zigbee2mqtt-devices", "zigbee2mqtt.io, legacy_availability_payload: plain online/offline",
                        "zigbee2mqtt/0x00158d0001e1a2b3/availability", "0x00158d0001e1a2b3", "online", "offline"},
        convention_case{"homie5",
                        "Homie 5 convention, Device lifecycle: homie/5/<device-id>/$state, init/ready/disconnected/"
                        "sleeping/lost",
                        "homie/5/thermostat-1/$state", "thermostat-1", "ready", "lost"},
        convention_case{"valetudo", "Valetudo docs, MQTT: Homie-style valetudo/<identifier>/$state",
                        "valetudo/GentleMellowMole/$state", "GentleMellowMole", "ready", "lost"},
        convention_case{"shelly", "Shelly Gen1 API, MQTT: shellies/<model>-<deviceid>/online, true/false (LWT)",
                        "shellies/shellyplug-s-7A3F12/online", "shellyplug-s-7A3F12", "true", "false"},
        convention_case{"shelly-gen2", "Shelly Gen2+ API, MQTT: <topic_prefix>/online, true/false (LWT)",
                        "shellyplus1pm-a8032ab636ec/online", "shellyplus1pm-a8032ab636ec", "true", "false"},
        convention_case{"frigate", "Frigate docs, MQTT: frigate/available, online/offline",
                        "frigate/available", "frigate", "online", "offline"},
        convention_case{"openmqttgateway",
                        "OpenMQTTGateway docs: home/<gateway>/LWT, online/offline (Theengs Gateway the same)",
                        "home/OpenMQTTGateway_ESP32_BLE/LWT", "OpenMQTTGateway_ESP32_BLE", "online", "offline"},
        convention_case{"openmqttgateway", "Theengs Gateway docs: home/TheengsGateway/LWT, online/offline",
                        "home/TheengsGateway/LWT", "TheengsGateway", "online", "offline"},
        convention_case{"zwave-js-ui",
                        "zwave-js-ui server/lib/MqttClient.js: <prefix>/_CLIENTS/ZWAVE_GATEWAY-<name>/status, "
                        "{\"value\":true,\"time\":ms}",
                        "zwave/_CLIENTS/ZWAVE_GATEWAY-zwavejs/status", "ZWAVE_GATEWAY-zwavejs",
                        R"({"value":true,"time":1548683523859})", R"({"value":false,"time":1548683533859})"},
        convention_case{"tasmota", "Tasmota docs, MQTT: tele/<topic>/LWT, Online/Offline", "tele/tasmota_1A2B3C/LWT",
                        "tasmota_1A2B3C", "Online", "Offline"},
        convention_case{"sparkplug",
                        "Sparkplug 3.0, host application STATE: spBv1.0/STATE/<host_id>, "
                        "{\"online\":true,\"timestamp\":ms}",
                        "spBv1.0/STATE/scada-1", "scada-1", R"({"online":true,"timestamp":1668114759262})",
                        R"({"online":false,"timestamp":1668114759262})"}));

TEST(conventions_all, names_every_preset_once) {
    const auto all = topic_scheme::convention_templates("all");
    EXPECT_EQ(all.size(), topic_scheme::presets().size());
    for (const auto& [name, templ] : topic_scheme::presets())
        EXPECT_EQ(std::count(all.begin(), all.end(), templ), 1) << name;
    EXPECT_EQ(topic_scheme::convention_templates("frigate"), std::vector<std::string>{"{client}/available"});
}

// Where a convention's devices publish readings: activity templates beside the status, each matching the status's
// names (Tasmota's tele/<topic>/STATE beside tele/<topic>/LWT; a Zigbee2MQTT device's state topic beside its
// availability).
TEST(conventions_activity, readings_beside_the_status_match_the_same_names) {
    using list = std::vector<std::string>;
    EXPECT_EQ(topic_scheme::convention_activity("tasmota"), (list{"tele/{client}/STATE", "tele/{client}/SENSOR"}));
    EXPECT_EQ(topic_scheme::convention_activity("Zigbee2MQTT-devices"), list{"zigbee2mqtt/{client+}"});
    EXPECT_TRUE(topic_scheme::convention_activity("sensors").empty());
    EXPECT_EQ(topic_scheme::convention_activity("all").size(), 3u);
    EXPECT_THROW((void)topic_scheme::convention_activity("nosuch"), mqtt_presence::error);
    EXPECT_EQ(topic_scheme::parse("tele/{client}/STATE").match("tele/tasmota_1A2B3C/STATE"), "tasmota_1A2B3C");
    EXPECT_EQ(topic_scheme::parse("zigbee2mqtt/{client+}").match("zigbee2mqtt/kitchen/lamp"), "kitchen/lamp");
    EXPECT_EQ(topic_scheme::preset("zigbee2mqtt-devices").match("zigbee2mqtt/kitchen/lamp/availability"),
              "kitchen/lamp");
}

TEST(conventions_zwave, time_is_the_time_stamp_and_value_as_metadata_stays_metadata) {
    const auto r = decode(R"({"value":true,"time":1548683523859})");
    ASSERT_TRUE(r.timestamp);
    EXPECT_EQ(unix_ms(*r.timestamp), 1548683523859);
    EXPECT_TRUE(r.meta.empty());
    // Our own JSON with a reading called "value": still metadata, and "ts" wins over "time".
    const auto own = decode(R"({"status":1,"value":21.5,"ts":1000,"time":2000})");
    EXPECT_EQ(own.status, state::connected);
    EXPECT_EQ(own.meta, R"({"value":21.5})");
    EXPECT_EQ(unix_ms(*own.timestamp), 1000);
    EXPECT_EQ(decode(R"({"value":"on"})").status, state::unknown);  // no status member at all
}

// Sparkplug 3.0: "If the timestamp of a STATE offline message is older than the online one, it is ignored."
TEST(conventions_sparkplug_state, an_older_offline_is_ignored_an_equal_one_is_not) {
    connection_table table;
    const auto now = clock::now();
    const auto ms = unix_ms(now);
    const auto state_json = [](bool online, long long ts) {
        return std::string(R"({"online":)") + (online ? "true" : "false") + R"(,"timestamp":)" + std::to_string(ts) +
               "}";
    };
    table.apply("scada-1", decode(state_json(true, ms - 1000)), false, now);
    table.apply("scada-1", decode(state_json(false, ms - 5000)), false, now);  // an older session's will
    EXPECT_EQ(table.find("scada-1")->status, state::connected);
    EXPECT_EQ(table.stats().stale_deaths_ignored, 1u);
    table.apply("scada-1", decode(state_json(false, ms - 1000)), false, now);  // this session's will
    EXPECT_EQ(table.find("scada-1")->status, state::disconnected);
}

}  // namespace
