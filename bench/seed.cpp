// Seeds N retained statuses <prefix>/c<i> (half "1", half "0"; or our JSON payloads) into a broker.
// Usage: seed URI PREFIX N plain|json
#include <mqtt/async_client.h>

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: seed URI PREFIX N plain|json\n");
        return 2;
    }
    const std::string uri = argv[1], prefix = argv[2], format = argv[4];
    const int n = std::atoi(argv[3]);
    mqtt::async_client cli(uri, "mqtt-presence-seed", mqtt::create_options(MQTTVERSION_3_1_1, n + 10));
    cli.connect()->wait();
    mqtt::delivery_token_ptr last;
    for (int i = 0; i < n; ++i) {
        const int up = i % 2;
        const std::string payload =
            format == "json" ? "{\"status\":" + std::to_string(up) + ",\"client\":\"c" + std::to_string(i) +
                                   "\",\"epoch\":1700000000" + std::to_string(i % 1000) +
                                   ",\"ts\":1700000000123,\"ip\":\"10.1.2.3\",\"host\":\"rack-7\"}"
                             : std::string(up ? "1" : "0");
        last = cli.publish(prefix + "/c" + std::to_string(i), payload, 1, true);
    }
    last->wait();
    cli.disconnect()->wait();
    return 0;
}
