// Throughput of the pure core on one thread: decode, table apply, and both together, at 1k / 100k / 1M clients.
// Targets (DESIGN.md): plain decode+apply >= 5 M/s, JSON decode+apply >= 1 M/s.
#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

using namespace mqtt_presence;

namespace {

std::vector<std::string> names(std::size_t n) {
    std::vector<std::string> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        auto s = std::to_string(i);
        out.push_back("sensor-" + std::string(7 - std::min<std::size_t>(7, s.size()), '0') + s);
    }
    return out;
}

// The payload our publisher writes in JSON format.
std::string json_payload(std::size_t i, int status) {
    return "{\"status\":" + std::to_string(status) + ",\"client\":\"sensor-" + std::to_string(i) +
           "\",\"epoch\":1700000000" + std::to_string(i % 1000) + ",\"ts\":1700000000123,\"ip\":\"10.1.2." +
           std::to_string(i % 250) + "\",\"host\":\"rack-7\"}";
}

const time_point t0 = time_point(std::chrono::milliseconds(1'700'000'000'000));

void decode_plain(benchmark::State& st) {
    const std::string payloads[] = {"1", "0", "online", "offline"};
    std::size_t i = 0;
    for (auto _ : st) benchmark::DoNotOptimize(decode(payloads[i++ & 3]));
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(decode_plain);

void decode_json(benchmark::State& st) {
    std::vector<std::string> payloads;
    for (std::size_t i = 0; i < 64; ++i) payloads.push_back(json_payload(i, int(i & 1)));
    std::size_t i = 0;
    for (auto _ : st) benchmark::DoNotOptimize(decode(payloads[i++ & 63]));
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(decode_json);

// Table apply alone, with the records decoded beforehand; clients are pre-filled so this measures updates.
// Every step flips a client's state, so every apply reports a change, written into one reused `change` as the
// scanner does.
void table_apply(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    const auto all = names(n);
    const status_record up = decode("1"), down = decode("0");
    connection_table t;
    t.reserve(n);
    for (const auto& name : all) t.apply(name, up, true, t0);
    change c;
    std::size_t i = 0;
    for (auto _ : st) {
        const auto k = i++;
        benchmark::DoNotOptimize(t.apply(all[k % n], (k / n) & 1 ? up : down, false, t0, 0, &c));
    }
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(table_apply)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);

// What the scanner does per message: decode the payload into a reused record and apply it.
void decode_apply_plain(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    const auto all = names(n);
    connection_table t;
    t.reserve(n);
    change c;
    status_record r;
    std::size_t i = 0;
    for (auto _ : st) {
        const auto k = i++;
        decode((k / n) & 1 ? "0" : "1", r);
        benchmark::DoNotOptimize(t.apply(all[k % n], r, false, t0, 0, &c));
    }
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(decode_apply_plain)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);

void decode_apply_json(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    const auto all = names(n);
    std::vector<std::string> payloads;
    for (std::size_t i = 0; i < 1024; ++i) payloads.push_back(json_payload(i, int(i & 1)));
    connection_table t;
    t.reserve(n);
    change c;
    status_record r;
    std::size_t i = 0;
    for (auto _ : st) {
        const auto k = i++;
        decode(payloads[(k + k / n) & 1023], r);
        benchmark::DoNotOptimize(t.apply(all[k % n], r, false, t0, 0, &c));
    }
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(decode_apply_json)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);

}  // namespace

BENCHMARK_MAIN();
