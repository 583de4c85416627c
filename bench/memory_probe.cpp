// Fills a connection table with N clients (default 1,000,000) and prints the resident memory per client beyond
// the bytes of its name. Target: <= 256 bytes a client. Usage: memory_probe [N] [plain|json]
#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>

using namespace mqtt_presence;

namespace {

long resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    long pages = 0, resident = 0;
    statm >> pages >> resident;
    return resident * sysconf(_SC_PAGESIZE);
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1'000'000;
    const bool json = argc > 2 && std::string(argv[2]) == "json";
    const auto now = clock::now();
    std::size_t name_bytes = 0;
    const long before = resident_bytes();
    {
        connection_table t;
        for (std::size_t i = 0; i < n; ++i) {
            std::string name = "sensor-" + std::to_string(i);
            name_bytes += name.size();
            const std::string payload =
                json ? "{\"status\":1,\"epoch\":" + std::to_string(i) + ",\"ts\":1700000000123,\"ip\":\"10.0.0.1\"}"
                     : std::string(i % 2 ? "1" : "0");
            t.apply(name, decode(payload), true, now);
        }
        const long after = resident_bytes();
        const double per_client = double(after - before - long(name_bytes)) / double(n);
        std::printf("clients: %zu (%s payloads), table size: %zu\n", n, json ? "json" : "plain", t.size());
        std::printf("resident growth: %.1f MiB, names: %.1f MiB\n", double(after - before) / 1048576.0,
                    double(name_bytes) / 1048576.0);
        std::printf("bytes per client beyond the name: %.1f\n", per_client);
    }
    return 0;
}
