// Activity intake: how fast a scanner with an activity template beside N clients' statuses takes M readings,
// against mosquitto_sub -t 'act/#' in the same run. Both subscribers are stopped (SIGSTOP) while a publisher puts
// the M readings (QoS 0, spread over the N clients) into the broker, which queues them; then both are continued
// and each one's time to its last reading is its intake rate, not the publisher's. Also the scanner's resident
// memory per client before and after the readings.
// Usage: activity_bench URI [CLIENTS] [READINGS]     (defaults 10000 1000000; bench/activity starts a broker)
#include <mqtt_presence/scanner.hpp>

#include <mqtt/async_client.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

long rss_kib() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return 0;
}

void seed_statuses(const std::string& uri, int clients) {
    mqtt::async_client cli(uri, "activity-bench-seed", mqtt::create_options(MQTTVERSION_3_1_1, clients + 10));
    cli.connect()->wait();
    mqtt::delivery_token_ptr last;
    for (int i = 0; i < clients; ++i) last = cli.publish("act-s/c" + std::to_string(i), "1", 1, true);
    last->wait();
    cli.disconnect()->wait();
}

// A child process running `argv`, stdout to /dev/null; its pid.
pid_t spawn(const std::vector<std::string>& args) {
    const pid_t pid = fork();
    if (pid == 0) {
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        if (!std::freopen("/dev/null", "w", stdout)) _exit(126);
        execvp(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

// The readings, from a process of their own (their buffer is not the scanner's memory): QoS 0, as fast as Paho
// takes them, spread over the clients.
int publish_readings(const std::string& uri, int clients, long readings) {
    mqtt::async_client pub(uri, "activity-bench-pub", mqtt::create_options(MQTTVERSION_3_1_1, 1'000'000));
    pub.connect()->wait();
    const std::string payload = R"({"Time":"2026-12-07T10:00:00","POWER":"ON","Wifi":{"RSSI":70}})";
    std::vector<std::string> topics;
    for (int c = 0; c < clients; ++c) topics.push_back("act/c" + std::to_string(c) + "/STATE");
    const auto started = steady::now();
    for (long i = 0; i < readings; ++i) {
        for (;;) {
            try {
                pub.publish(topics[static_cast<std::size_t>(i % clients)], payload.data(), payload.size(), 0, false);
                break;
            } catch (const mqtt::exception&) {  // Paho's buffer is full: let it drain
                std::this_thread::sleep_for(100us);
            }
        }
    }
    std::fprintf(stderr, "publisher: %ld readings handed to Paho in %.2f s\n", readings,
                 std::chrono::duration<double>(steady::now() - started).count());
    pub.disconnect()->wait();
    return 0;
}

// The scanner's side, a process of its own: "ready RSS" once synced, then "done SECONDS RSS" (from SIGCONT's
// epoch) once every reading is in.
int scan_readings(const std::string& uri, int clients, long readings) {
    mqtt_presence::scanner_options o;
    o.broker.server_uri = uri;
    o.topics = {"act-s/{client}"};
    o.activity = {"act/{client}/STATE"};
    // BENCH_EXPECT (e.g. auto, 10m): every client expected, so each reading also restarts its wait (and, for auto,
    // is a gap of its cadence): what --expect costs the intake and each row.
    if (const char* expect = std::getenv("BENCH_EXPECT")) o.expect = {mqtt_presence::expectation::parse(expect)};
    mqtt_presence::scanner scan(o);
    scan.start();
    if (!scan.wait_synced(60s) || scan.snapshot().size() != static_cast<std::size_t>(clients)) {
        std::fprintf(stderr, "the scanner did not sync %d clients\n", clients);
        return 1;
    }
    std::printf("ready %ld\n", rss_kib());
    std::fflush(stdout);
    // Polled, not awaited with wait_for(): a waiter is woken by every message, a cost the tools do not have.
    const auto until = steady::now() + 600s;
    bool all = false;
    while (!(all = scan.stats().activity >= static_cast<std::uint64_t>(readings)) && steady::now() < until)
        std::this_thread::sleep_for(2ms);
    const auto done = steady::now();
    std::printf("done %.3f %ld %llu\n", std::chrono::duration<double>(done.time_since_epoch()).count(), rss_kib(),
                static_cast<unsigned long long>(scan.stats().activity_unknown));
    std::fflush(stdout);
    scan.stop();
    return all ? 0 : 1;
}

// Reads one line from a child's stdout pipe.
std::string read_line(FILE* from) {
    char buffer[256] = {};
    return std::fgets(buffer, sizeof buffer, from) ? std::string(buffer) : std::string();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 5 && std::string(argv[1]) == "publish") return publish_readings(argv[2], std::atoi(argv[3]), std::atol(argv[4]));
    if (argc == 5 && std::string(argv[1]) == "scan") return scan_readings(argv[2], std::atoi(argv[3]), std::atol(argv[4]));
    if (argc < 2) {
        std::fprintf(stderr, "usage: activity_bench URI [CLIENTS] [READINGS]\n");
        return 2;
    }
    const std::string uri = argv[1];
    const int clients = argc > 2 ? std::atoi(argv[2]) : 10'000;
    const long readings = argc > 3 ? std::atol(argv[3]) : 1'000'000;
    const auto colon = uri.rfind(':');
    seed_statuses(uri, clients);

    char path[4096] = {};
    const std::string self(path, static_cast<std::size_t>(std::max<ssize_t>(0, readlink("/proc/self/exe", path,
                                                                                         sizeof path - 1))));
    FILE* scanner = popen((self + " scan " + uri + " " + std::to_string(clients) + " " + std::to_string(readings) +
                           " & echo $!").c_str(), "r");
    const pid_t scanner_pid = std::atoi(read_line(scanner).c_str());
    const auto ready = read_line(scanner);
    if (ready.rfind("ready ", 0) != 0) {
        std::fprintf(stderr, "the scanner did not start: %s\n", ready.c_str());
        return 1;
    }
    const long rss_before = std::atol(ready.c_str() + 6);
    const pid_t sub = spawn({"mosquitto_sub", "-h", uri.substr(6, colon - 6), "-p", uri.substr(colon + 1), "-t",
                             "act/#", "-C", std::to_string(readings)});
    const std::string bare_path = self.substr(0, self.rfind('/') + 1) + "bare_subscriber";
    const pid_t bare = spawn({bare_path, uri, "act/#", std::to_string(readings), "0"});
    std::this_thread::sleep_for(500ms);  // both subscribe (a bench: no event to await here)
    for (const pid_t pid : {scanner_pid, sub, bare}) kill(pid, SIGSTOP);
    int status = 0;
    waitpid(spawn({self, "publish", uri, std::to_string(clients), std::to_string(readings)}), &status, 0);
    std::this_thread::sleep_for(1s);  // the broker queues the last of them
    const auto continued = steady::now();
    for (const pid_t pid : {scanner_pid, sub, bare}) kill(pid, SIGCONT);
    // Each one's end, as it comes (mosquitto_sub and bare Paho exit after their last reading).
    double sub_secs = 0, bare_secs = 0;
    for (int ended = 0; ended < 2; ++ended) {
        const pid_t pid = waitpid(-1, &status, 0);
        const auto secs = std::chrono::duration<double>(steady::now() - continued).count();
        if (pid == sub) sub_secs = secs;
        else if (pid == bare) bare_secs = secs;
        else --ended;
    }
    const auto done = read_line(scanner);
    pclose(scanner);
    double done_at = 0;
    long rss_after = 0;
    unsigned long long unknown = 0;
    if (std::sscanf(done.c_str(), "done %lf %ld %llu", &done_at, &rss_after, &unknown) != 3) {
        std::fprintf(stderr, "the scanner did not take every reading: %s\n", done.c_str());
        return 1;
    }
    const double scan_secs = done_at - std::chrono::duration<double>(continued.time_since_epoch()).count();
    std::printf("%d clients, %ld readings (QoS 0) queued in the broker for both stopped subscribers, then continued\n",
                clients, readings);
    const auto rate = [readings](double secs) { return static_cast<double>(readings) / secs; };
    std::printf("in the same run: scanner %.2f s (%.0f/s); mosquitto_sub -t 'act/#' %.2f s (%.0f/s); bare Paho C++ "
                "subscriber %.2f s (%.0f/s); scanner / mosquitto_sub %.2f, scanner / bare Paho %.2f\n",
                scan_secs, rate(scan_secs), sub_secs, rate(sub_secs), bare_secs, rate(bare_secs), scan_secs / sub_secs,
                scan_secs / bare_secs);
    std::printf("unknown names %llu; scanner RSS %ld KiB after the sync, %ld after the readings: %.1f bytes per "
                "client\n",
                unknown, rss_before, rss_after, static_cast<double>(rss_after - rss_before) * 1024.0 / clients);
    return 0;
}
