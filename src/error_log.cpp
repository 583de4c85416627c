#include "error_log.hpp"

#include <chrono>
#include <cstdio>
#include <mutex>

namespace mqtt_presence::detail {

void write_unhandled_error(std::string_view who, std::string_view text) noexcept {
    static std::mutex m;
    static auto last = std::chrono::steady_clock::time_point{};
    static std::size_t suppressed = 0;
    std::lock_guard<std::mutex> lock(m);
    const auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::seconds(1)) {
        ++suppressed;
        return;
    }
    std::fprintf(stderr, "mqtt-presence: %.*s: %.*s", static_cast<int>(who.size()), who.data(),
                 static_cast<int>(text.size()), text.data());
    if (suppressed > 0) std::fprintf(stderr, " (and %zu more errors)", suppressed);
    std::fputc('\n', stderr);
    suppressed = 0;
    last = now;
}

}  // namespace mqtt_presence::detail
