// A consumer built against the installed package: it must compile, link and give the right topic.
#include <mqtt_presence/status_codec.hpp>
#include <mqtt_presence/topic_scheme.hpp>

#include <iostream>

int main() {
    auto scheme = mqtt_presence::topic_scheme::parse("sensors/{client}/connected");
    const bool ok = scheme.topic_for("s1") == "sensors/s1/connected" &&
                    mqtt_presence::decode("1").status == mqtt_presence::state::connected;
    std::cout << (ok ? "consumer ok" : "consumer FAILED") << "\n";
    return ok ? 0 : 1;
}
