#pragma once
// Paho workarounds private to the library (the public client set-up is mqtt_presence/paho_client.hpp).

#include <mqtt/async_client.h>
#include <mqtt/connect_options.h>
#include <mqtt/disconnect_options.h>

#include <mqtt_presence/paho_client.hpp>

// Paho C++ 1.2 (Debian 12) builds disconnect_options from the version-0 C struct, which has no reason code, so
// set_reason_code() is silently ignored (later Paho versions start from the version-1 struct). The C struct is
// reached through the friend class Paho declares for its own unit tests; nothing else is touched.
namespace mqtt {
class disconnect_options_test {
public:
    static void keep_will(disconnect_options& options) {
        options.opts_.struct_version = 1;
        options.opts_.reasonCode = MQTTREASONCODE_DISCONNECT_WITH_WILL_MESSAGE;
    }
};
}  // namespace mqtt

namespace mqtt_presence::detail {

/// MQTT 5 disconnect options with reason 0x04 (disconnect with will message): the broker publishes the will.
inline mqtt::disconnect_options disconnect_keeping_will() {
    mqtt::disconnect_options options(0);
    mqtt::disconnect_options_test::keep_will(options);
    return options;
}

}  // namespace mqtt_presence::detail
