// libFuzzer target: the decoder's flat-object fast path and nlohmann's parser must read every payload alike.
// Build: CMake builds it with clang++ when clang and libFuzzer are there (target fuzz_targets); the test
// decode_fuzz_short runs it briefly. A long run:  build/tests/fuzz/decode_fuzz -max_total_time=3600 -jobs=2 \
//     tests/fuzz/corpus
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <mqtt_presence/status_codec.hpp>

#include "codec_reference.hpp"

using namespace mqtt_presence;

namespace {

[[noreturn]] void differ(const char* field, std::string_view payload, const std::string& a, const std::string& b) {
    std::fprintf(stderr, "fast path and nlohmann differ in %s for payload (%zu bytes)\n  fast: %s\n  nlohmann: %s\n",
                 field, payload.size(), a.c_str(), b.c_str());
    std::abort();
}

template <class T>
std::string text(const std::optional<T>& v) {
    if (!v) return "none";
    if constexpr (std::is_same_v<T, time_point>) return std::to_string(v->time_since_epoch().count());
    else if constexpr (std::is_same_v<T, std::chrono::seconds>) return std::to_string(v->count());
    else return std::to_string(*v);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view payload(reinterpret_cast<const char*>(data), size);
    status_record fast, reference;
    decode(payload, fast);
    detail::decode_without_fast_path(payload, reference);
    if (fast.status != reference.status)
        differ("status", payload, std::string(to_string(fast.status)) + " " + fast.detail,
               std::string(to_string(reference.status)) + " " + reference.detail);
    if (fast.cleared != reference.cleared) differ("cleared", payload, "", "");
    // A syntax error's text names a byte offset that differs between the two lexers; anything else must match.
    const bool syntax = fast.detail.rfind("invalid JSON", 0) == 0 && reference.detail.rfind("invalid JSON", 0) == 0;
    if (!syntax && fast.detail != reference.detail) differ("detail", payload, fast.detail, reference.detail);
    if (fast.reason != reference.reason) differ("reason", payload, fast.reason, reference.reason);
    if (fast.epoch != reference.epoch) differ("epoch", payload, text(fast.epoch), text(reference.epoch));
    if (fast.timestamp != reference.timestamp) differ("ts", payload, text(fast.timestamp), text(reference.timestamp));
    if (fast.heartbeat != reference.heartbeat) differ("hb", payload, text(fast.heartbeat), text(reference.heartbeat));
    if (fast.client != reference.client) differ("client", payload, fast.client, reference.client);
    if (fast.ip != reference.ip) differ("ip", payload, fast.ip, reference.ip);
    if (fast.host != reference.host) differ("host", payload, fast.host, reference.host);
    if (fast.meta != reference.meta) differ("meta", payload, fast.meta, reference.meta);
    if (!syntax && fast.raw != reference.raw) differ("raw", payload, fast.raw, reference.raw);
    return 0;
}
