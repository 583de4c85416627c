// The alert engine under a mass outage (prints numbers; not a test): N clients up, then every one of them goes
// down, each change through alert_engine::on_change as the service's delivery thread feeds it.
// Usage: alert_bench N
#include <mqtt_presence/service/alert_engine.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace mqtt_presence;

int main(int argc, char** argv) {
    const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100000;
    connection_table table;
    alert_engine engine(alert_options{});
    const auto t0 = clock::now();
    std::size_t alerts = 0;
    for (std::size_t i = 0; i < n; ++i) {
        auto c = table.apply("c" + std::to_string(i), decode("1"), false, t0);
        alerts += engine.on_change(*c, t0).size();
    }
    const auto started = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < n; ++i) {
        auto c = table.apply("c" + std::to_string(i), decode("0"), false, t0 + std::chrono::seconds(1));
        alerts += engine.on_change(*c, t0 + std::chrono::seconds(1)).size();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::printf("alert engine: %zu clients going down in %.3f s (%.2f us a change), %zu alert(s)\n", n, s,
                s * 1e6 / static_cast<double>(n), alerts);
    return 0;
}
