// Resident memory of a process with one Paho client, with Paho's eager OpenSSL initialisation or without it (the
// sensor's choice: OpenSSL 1.1 and later initialise themselves when a TLS connection needs them).
// Usage: paho_rss eager|lazy    (one process each: the choice is process-wide and made before the first client)
#include <MQTTAsync.h>
#include <mqtt/async_client.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace {
std::string vm_rss() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("VmRSS:", 0) == 0) return line.substr(6);
    return "?";
}
}  // namespace

int main(int argc, char** argv) {
    const bool lazy = argc > 1 && std::strcmp(argv[1], "lazy") == 0;
    if (argc != 2 || (!lazy && std::strcmp(argv[1], "eager") != 0)) {
        std::fprintf(stderr, "usage: paho_rss eager|lazy\n");
        return 2;
    }
    if (lazy) {
        MQTTAsync_init_options init = MQTTAsync_init_options_initializer;
        init.do_openssl_init = 0;
        MQTTAsync_global_init(&init);
    }
    mqtt::async_client client("tcp://127.0.0.1:1883", "paho-rss");
    std::printf("%s OpenSSL initialisation, one client: VmRSS%s\n", lazy ? "lazy" : "eager", vm_rss().c_str());
}
