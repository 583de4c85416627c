// The history store's figures (not a test; prints numbers):
//   history_bench persist N                 changes persisted per second, batched (N changes over 100,000 clients)
//   history_bench intake URI PREFIX N RUNS   a scanner's sync of N retained statuses with the store off and on
//   history_bench build FILE CLIENTS EVENTS  writes a history of that size (for restore)
//   history_bench restore FILE               time and peak RSS to open it and restore the table from it
//   history_bench resync FILE URI            restore it, then sync with a broker that lost every status (its
//                                            retained store empty): the time to the sync's end and peak RSS
// bench/history runs them all against a private broker.
#include <mqtt_presence/scanner.hpp>
#include <mqtt_presence/service/history_store.hpp>
#include <mqtt_presence/service/presence_service.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

using namespace mqtt_presence;
using steady = std::chrono::steady_clock;

namespace {

double seconds_since(steady::time_point t) { return std::chrono::duration<double>(steady::now() - t).count(); }

double peak_rss_mib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

void wait_written(history_store& store, std::uint64_t n) {
    while (store.stats().written < n) std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

// N changes: clients c0..c99999 flip between connected and disconnected, as a JSON status each.
std::vector<change> make_changes(std::size_t n, time_point start) {
    connection_table table;
    std::vector<change> out;
    out.reserve(n);
    const std::size_t clients = std::min<std::size_t>(n, 100'000);
    for (std::size_t i = 0; out.size() < n; ++i) {
        const auto name = "c" + std::to_string(i % clients);
        const bool up = (i / clients) % 2 == 0;
        const auto payload = std::string("{\"status\":") + (up ? "1" : "0") + ",\"epoch\":" +
                             std::to_string(1'700'000'000'000 + i / clients) + ",\"ip\":\"10.1.2.3\"}";
        auto c = table.apply(name, decode(payload), false, start + std::chrono::milliseconds(i));
        if (!c) continue;
        c->current.topic = "bench/" + name;
        out.push_back(std::move(*c));
    }
    return out;
}

// Into an SQLite file, or into the PostgreSQL database `where` names (an empty one: bench/history makes it).
int persist(std::size_t n, const std::string& where) {
    const std::string path = where.empty() ? "/tmp/mqtt-presence-bench-persist.db" : where;
    if (where.empty())
        for (const char* s : {"", "-wal", "-shm"}) std::remove((path + s).c_str());
    const auto changes = make_changes(n, clock::now() - std::chrono::hours(1));
    history_options o{path};
    o.queue_limit = n + 1;
    history_store store(o);
    store.begin_session("bench", "bench/{client}", "bench");
    const auto t = steady::now();
    for (const auto& c : changes) store.record(c);
    const double enqueue = seconds_since(t);
    wait_written(store, n);
    const double total = seconds_since(t);
    store.end_session();
    const auto s = store.stats();
    std::printf("persist (%s): %zu changes in %.3f s = %.0f changes/s written (%llu batches); record() alone %.0f ns "
                "each\n",
                history_is_postgresql(path) ? "PostgreSQL" : "SQLite", n, total, static_cast<double>(n) / total, static_cast<unsigned long long>(s.batches),
                enqueue * 1e9 / static_cast<double>(n));
    return s.dropped == 0 ? 0 : 1;
}

enum class store_mode { off, queue_only, on };

// Seconds for a scanner to sync N retained statuses and deliver every change; with the store on, each change also
// goes into a history; queue_only records into a store whose writer is not started (the cost of record() alone).
double sync_time(const std::string& uri, const std::string& prefix, std::size_t n, store_mode mode) {
    const std::string path = "/tmp/mqtt-presence-bench-intake.db";
    scanner_options o;
    o.broker.server_uri = uri;
    o.topics = {prefix + "/{client}"};
    o.quiet_period = std::chrono::seconds(10);
    std::unique_ptr<history_store> store;
    if (mode != store_mode::off) {
        for (const char* s : {"", "-wal", "-shm"}) std::remove((path + s).c_str());
        store = std::make_unique<history_store>(history_options{path});
        if (mode == store_mode::on) store->begin_session(uri, prefix, "bench");
    }
    scanner scan(o);
    std::atomic<std::size_t> delivered{0};
    scan.on_change([&](const change& c) {
        if (store) store->record(c);
        ++delivered;
    });
    const auto t = steady::now();
    scan.start();
    if (!scan.wait_synced(std::chrono::seconds(120)) || scan.counts().total() != n) {
        std::fprintf(stderr, "intake: the sync did not complete (%zu of %zu)\n", scan.counts().total(), n);
        std::exit(1);
    }
    while (delivered < n) std::this_thread::sleep_for(std::chrono::microseconds(200));
    const double took = seconds_since(t);
    scan.stop();
    if (store) {
        if (mode == store_mode::on) wait_written(*store, n);
        store->end_session();
    }
    return took;
}

int intake(const std::string& uri, const std::string& prefix, std::size_t n, int runs) {
    std::vector<double> t[3];
    for (int r = 0; r < runs; ++r)  // interleaved, so that a drift in the machine's speed touches all alike
        for (int m = 0; m < 3; ++m) t[m].push_back(sync_time(uri, prefix, n, static_cast<store_mode>(m)));
    double median[3];
    for (int m = 0; m < 3; ++m) {
        std::sort(t[m].begin(), t[m].end());
        median[m] = t[m][t[m].size() / 2];
    }
    std::printf("intake: %zu retained statuses synced and every change delivered, median of %d:\n", n, runs);
    const char* names[3] = {"store off", "record() only, no writer", "store on"};
    for (int m = 0; m < 3; ++m)
        std::printf("  %-26s %.3f s  %7.0f changes/s  %+5.1f %%\n", names[m], median[m],
                    static_cast<double>(n) / median[m], (median[m] / median[0] - 1) * 100);
    return 0;
}

// A history of `clients` clients and `events` events, written through the store (a file, or an empty PostgreSQL
// database).
int build(const std::string& path, std::size_t clients, std::size_t events) {
    if (!history_is_postgresql(path))
        for (const char* s : {"", "-wal", "-shm"}) std::remove((path + s).c_str());
    history_options o{path};
    o.queue_limit = 1u << 21;
    history_store store(o);
    store.begin_session("bench", "bench/{client}", "bench");
    connection_table table;
    table.reserve(clients);
    const auto start = clock::now() - std::chrono::hours(24 * 20);
    std::uint64_t recorded = 0;
    const auto t = steady::now();
    for (std::size_t i = 0; recorded < events; ++i) {
        const auto name = "sensor-" + std::to_string(i % clients);
        const bool up = (i / clients) % 2 == 0;
        const auto at = start + std::chrono::milliseconds(i * 100);
        auto c = table.apply(name, decode(up ? "{\"status\":1,\"ip\":\"10.0.0.1\",\"hb\":30}" : "0"), false, at);
        if (!c) continue;
        c->current.topic = "bench/" + name;
        while (!store.record(*c)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        ++recorded;
        if (recorded % 1'000'000 == 0)
            std::fprintf(stderr, "\rbuild: %llu / %zu events", static_cast<unsigned long long>(recorded), events);
    }
    wait_written(store, recorded);
    store.end_session();
    std::fprintf(stderr, "\n");
    std::printf("build: %zu clients, %zu events written in %.1f s\n", clients, events, seconds_since(t));
    return 0;
}

int restore(const std::string& path) {
    const double before = peak_rss_mib();
    const auto t = steady::now();
    // What presence_service does: the rows in chunks into the scanner's table.
    history_store store(history_options{path});
    scanner_options o;
    o.topics = {"bench/{client}"};
    scanner scan(o);
    const auto restored = restore_table(store, scan);
    const double total = seconds_since(t);
    std::printf("restore (%s): %zu clients in %.2f s; peak RSS %.0f MiB (%.0f MiB before)\n",
                history_is_postgresql(path) ? "PostgreSQL" : "SQLite", restored, total,
                peak_rss_mib(), before);
    return 0;
}

// After a broker restart without persistence: every restored row is gone from the broker, which the sync must
// find out (each becomes a removal).
int resync(const std::string& path, const std::string& uri) {
    history_store store(history_options{path});
    scanner_options o;
    o.broker.server_uri = uri;
    o.topics = {"bench/{client}"};
    scanner scan(o);
    std::atomic<std::size_t> removed{0};
    scan.on_change([&removed](const change& c) {
        if (c.kind == change_kind::removed) removed.fetch_add(1, std::memory_order_relaxed);
    });
    const auto restored = restore_table(store, scan);
    const double before = peak_rss_mib();
    const auto t = steady::now();
    scan.start();
    const bool synced = scan.wait_synced(std::chrono::minutes(15));
    const double sync_s = seconds_since(t);
    while (removed.load() < restored && seconds_since(t) < 900)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::printf("resync: %zu restored clients, none on the broker: %s in %.2f s, %zu removals delivered in %.2f s; "
                "peak RSS %.0f MiB (%.0f MiB after the restore)\n",
                restored, synced ? "synced" : "NOT synced", sync_s, removed.load(), seconds_since(t), peak_rss_mib(),
                before);
    scan.stop();
    return synced ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string what = argc > 1 ? argv[1] : "";
    if (what == "persist" && (argc == 3 || argc == 4))
        return persist(std::strtoull(argv[2], nullptr, 10), argc == 4 ? argv[3] : "");
    if (what == "intake" && argc == 6)
        return intake(argv[2], argv[3], std::strtoull(argv[4], nullptr, 10), std::atoi(argv[5]));
    if (what == "build" && argc == 5)
        return build(argv[2], std::strtoull(argv[3], nullptr, 10), std::strtoull(argv[4], nullptr, 10));
    if (what == "restore" && argc == 3) return restore(argv[2]);
    if (what == "resync" && argc == 4) return resync(argv[2], argv[3]);
    std::fprintf(stderr, "usage: history_bench persist N [POSTGRESQL-URI] | intake URI PREFIX N RUNS | build FILE CLIENTS EVENTS | "
                         "restore FILE | resync FILE URI\n");
    return 2;
}
