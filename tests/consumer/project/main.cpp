// A consumer built against the installed package: it must compile and link the Paho-facing classes too
// (status_announcer with a real mqtt::async_client, presence_client, scanner), and give the right topic.
#include <mqtt/async_client.h>
#include <mqtt_presence/presence_client.hpp>
#include <mqtt_presence/scanner.hpp>
#include <mqtt_presence/status_codec.hpp>
#include <mqtt_presence/topic_scheme.hpp>

#include <iostream>

int main() {
    auto scheme = mqtt_presence::topic_scheme::parse("sensors/{client}/connected");
    bool ok = scheme.topic_for("s1") == "sensors/s1/connected" &&
              mqtt_presence::decode("1").status == mqtt_presence::state::connected;

    // Nothing connects: these are built and torn down without a broker.
    mqtt::async_client cli("tcp://127.0.0.1:1", "consumer-app");
    mqtt::connect_options conn_opts;
    mqtt_presence::status_announcer status("consumer-app");
    status.add_will(conn_opts);
    ok = ok && status.topic() == "sensors/connected/consumer-app" && !status.announce(cli);

    mqtt_presence::presence_options p;
    p.broker.server_uri = "tcp://127.0.0.1:1";
    p.status.name = "consumer-client";
    mqtt_presence::presence_client client(p);
    ok = ok && client.topic() == "sensors/connected/consumer-client";

    mqtt_presence::scanner_options s;
    s.broker.server_uri = "tcp://127.0.0.1:1";
    mqtt_presence::scanner scan(s);
    ok = ok && scan.snapshot().empty() && !scan.status().connected;

    std::cout << (ok ? "consumer ok" : "consumer FAILED") << "\n";
    return ok ? 0 : 1;
}
