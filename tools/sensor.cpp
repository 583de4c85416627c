// mqtt-presence-sensor: one (or N simulated) client(s) that keep their connection status on the broker.
// Exit codes: 0 clean stop (SIGINT/SIGTERM), 1 runtime failure, 2 bad options.
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/presence_client.hpp>

#include <CLI/CLI.hpp>
#include <MQTTAsync.h>

#include "cli_options.hpp"
#include "exit_codes.hpp"
#include "help_formatter.hpp"
#include "sensor_workers.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace {

// Lines are written by a thread of their own: the handlers that log run on Paho's thread, which must never wait
// on a terminal or a pipe.
class line_writer {
public:
    line_writer() : thread_([this] { run(); }) {}
    ~line_writer() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            done_ = true;
        }
        cv_.notify_one();
        thread_.join();
    }
    std::string prefix;  // "worker 3: " in a worker process; set before the first line
    void write(std::string line) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            lines_.push_back(std::move(line));
            ++queued_;
        }
        cv_.notify_one();
    }
    /// Waits until every line so far is written (never on Paho's thread).
    void drain() {
        std::unique_lock<std::mutex> lock(mutex_);
        drained_.wait(lock, [this] { return written_ == queued_; });
    }

private:
    void run() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            cv_.wait(lock, [this] { return done_ || !lines_.empty(); });
            if (lines_.empty()) return;
            std::deque<std::string> batch;
            batch.swap(lines_);
            lock.unlock();
            // One write per line: worker processes share the terminal, and a write of a line is not split.
            for (const auto& l : batch) {
                const auto line = "mqtt-presence-sensor: " + prefix + l + "\n";
                if (::write(STDERR_FILENO, line.data(), line.size()) < 0) break;
            }
            lock.lock();
            written_ += batch.size();
            drained_.notify_all();
        }
    }
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::string> lines_;
    std::condition_variable drained_;
    std::size_t queued_ = 0, written_ = 0;
    bool done_ = false;
    std::thread thread_;
};

// One process runs a Paho client per sensor (and one scheduler thread for all of them); Paho C keeps its clients in
// one list that it searches linearly, so its per-client costs grow with the count.
constexpr int max_count = 100000;

line_writer& log_writer() {
    static line_writer writer;
    return writer;
}

void log(const std::string& line) { log_writer().write(line); }

std::string with_commas(std::size_t n) {
    auto digits = std::to_string(n);
    for (auto i = static_cast<std::ptrdiff_t>(digits.size()) - 3; i > 0; i -= 3)
        digits.insert(static_cast<std::size_t>(i), ",");
    return digits;
}

std::string numbered(const std::string& base, int i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "-%06d", i);
    return base + buf;
}

struct sensor_settings {
    mqtt_presence::presence_options opts;
    int count = 0;  // 0: one sensor named opts.status.name
    double connect_rate = 4000;  // faster starts overflowed the broker's listen queue now and then (docs/performance.md)
    int per_process = 500;
};

// Reads the command line into `s`; returns an exit code when the process should end here (--help, bad options).
std::optional<int> parse_command_line(int argc, char** argv, sensor_settings& s) {
    CLI::App app{"Publishes this client's connection status to an MQTT broker: a retained \"connected\" on every "
                 "(re)connect, a retained \"disconnected\" Last Will, and a clean \"disconnected\" on SIGINT/SIGTERM.",
                 "mqtt-presence-sensor"};
    app.set_help_flag("--help", "Print this help message and exit");
    app.formatter(std::make_shared<cli::help_formatter>());  // before the groups and subcommands: they copy it
    app.footer(R"(Examples:
  mqtt-presence-sensor                  # sensors/connected/<host name>, "1"/"0"
  mqtt-presence-sensor --name kitchen --format json --heartbeat 30
  mqtt-presence-sensor --topic '$CONNECTED/{client}' --name gw-1
  mqtt-presence-sensor --topic 'homie/{client}/$state' --format text --name lamp
  mqtt-presence-sensor --broker ssl://broker:8883 --cafile ca.crt -u alice \
      --pw-env MQTT_PASSWORD
  mqtt-presence-sensor -b tcp://node1:1883 -b tcp://node2:1883   # a cluster:
      # the next node when one cannot be reached (at every reconnect)
  mqtt-presence-sensor --count 1000 --name sim   # sim-000001 ... sim-001000
  mqtt-presence-sensor --count 10000 --connect-rate 2000 --name sim  # in 5 s
  mqtt-presence-sensor --topic 'zigbee2mqtt/{client+}/availability' \
      --name kitchen/lamp -f text

Exit codes: 0 stopped cleanly by SIGINT/SIGTERM, 1 runtime failure,
2 bad options.)");

    auto& opts = s.opts;
    cli::broker_flags broker;
    std::string format = "plain";
    int heartbeat = 0;
    int will_delay = 0;
    cli::add_broker_options(app, opts.broker, broker);
    cli::add_version_and_config(app, "sensor");
    app.add_option("-n,--name", opts.status.name, "Client name in the status topic (default: host name)");
    app.add_option("-t,--topic", opts.status.topic_template,
                   "Status topic template: one {client} level, or {client+} for names with '/'")
        ->capture_default_str();
    app.add_option("-f,--format", format, "Payload format: plain (1/0), json, text (online/offline)")
        ->capture_default_str();
    app.add_option("--heartbeat", heartbeat, "Republish \"connected\" every SEC seconds (0: off)")
        ->capture_default_str();
    app.add_option("--will-delay", will_delay, "MQTT 5 will delay in seconds (anti-flap; 0: off)");
    app.add_option("-q,--qos", opts.status.qos, "QoS of the status and the will")->capture_default_str();
    app.add_option("--meta", opts.status.meta, "Extra JSON members, e.g. '{\"fw\":\"1.4\"}' (json format)");
    app.add_option("--ip", opts.status.ip, "Address to report (default: the local address toward the broker)");
    app.add_option("--count", s.count, "Run N simulated sensors named <name>-000001 ... (1-" +
                                     std::to_string(max_count) + " in one process)")
        ->check(CLI::Range(1, max_count));
    app.add_option("--per-process", s.per_process, "Sensors per process: a larger --count runs in worker processes "
                                                 "of this size, supervised by this one")
        ->check(CLI::Range(1, max_count))->capture_default_str();
    app.add_option("--connect-rate", s.connect_rate, "Connects per second, first connects and reconnects alike (0: "
                                                   "unpaced); workers connect one after another, half this each")
        ->check(CLI::Range(0.0, 1e6))->capture_default_str();

    try {
        app.parse(argc, argv);
        cli::refuse_empty_values(app);
        cli::finish_broker_options(opts.broker, broker, true);  // several: one cluster's nodes, in order
        opts.status.format = mqtt_presence::parse_payload_format(format);
        opts.status.heartbeat = std::chrono::seconds(heartbeat);
        opts.will_delay = std::chrono::seconds(will_delay);
        opts.validate();
        // The default name is this machine's short host name (a '.' would be a level on RabbitMQ, see below).
        if (opts.status.name.empty()) {
            auto host = mqtt_presence::status_announcer(opts.status).options().name;
            opts.status.name = host.substr(0, host.find('.'));
        }
        if (opts.status.name.find('.') != std::string::npos)
            std::cerr << "mqtt-presence-sensor: warning: the name " << opts.status.name << " has a '.': RabbitMQ's "
                      << "MQTT plugin turns it into '/', so a scanner there reads another topic than this one (a "
                      << "name without dots is read the same on every broker)\n";
    } catch (const CLI::ConfigError& e) {
        std::cerr << "mqtt-presence-sensor: " << cli::config_error_text(app, e) << "\n";
        return exit_code::usage;
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? exit_code::ok : exit_code::usage;
    } catch (const mqtt_presence::error& e) {
        std::cerr << "mqtt-presence-sensor: " << e.what() << "\n(see --help)\n";
        return exit_code::usage;
    }
    return std::nullopt;
}

// Makes the clients of sensors first ... first + count - 1 (one sensor when count is 0) into `clients`, whose
// handlers refer to it. Throws what presence_client's constructor throws.
void make_clients(const sensor_settings& s, int first, int count,
                  std::vector<std::unique_ptr<mqtt_presence::presence_client>>& clients) {
    const int n = count > 0 ? count : 1;
    for (int i = first; i < first + n; ++i) {
        auto o = s.opts;
        if (count > 0) {
            o.status.name = numbered(s.opts.status.name, i);
            if (!s.opts.broker.client_id.empty()) o.broker.client_id = numbered(s.opts.broker.client_id, i);
        }
        const auto name = o.status.name;
        const bool verbose = n <= 10;
        o.on_connected = [name, verbose, &clients, at = clients.size()] {
            if (verbose) log(name + ": connected, epoch " + std::to_string(clients[at]->epoch()));
        };
        o.on_connection_lost = [name](const std::string& cause) {
            log(name + ": connection lost" + (cause.empty() ? "" : " (" + cause + ")") + ", reconnecting");
        };
        o.on_conflict = [](const std::string& what) { log("name conflict: " + what); };
        o.on_error = [name](const std::string& what) { log(name + ": " + what); };
        o.on_client_id_conflict = [name](const std::string& what) {
            log(name + ": client id conflict: " + what);
            kill(getpid(), SIGUSR1);
        };
        clients.push_back(std::make_unique<mqtt_presence::presence_client>(std::move(o)));
    }
}

// Starts the clients (a worker: in its turn), shows the progress of a fleet until all are connected, and waits for
// a stop signal. Returns the signal.
int connect_and_wait(const std::vector<std::unique_ptr<mqtt_presence::presence_client>>& clients,
                     const std::string& server_uri, bool worker, const sigset_t& stop_signals) {
    // A worker connects in its turn and passes it on when half of its clients are up (sensor_workers.hpp); a stop
    // signal may come first.
    int sig = worker ? sensor_workers::wait_for_turn() : 0;
    if (sig == SIGUSR2) sig = 0;
    if (sig == 0) {
        for (auto& c : clients) c->start();
        log("started " + std::to_string(clients.size()) + " client(s) on " + server_uri + ", status topic " +
            clients.front()->topic() + (clients.size() > 1 ? " ..." : ""));
    }
    // Progress on stderr while a fleet connects: "2,500 / 10,000 connected", twice a second, until all are.
    const bool progress = clients.size() > 10;
    std::size_t up = 0, shown = SIZE_MAX;
    bool turn_passed = !worker;
    auto next_report = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (sig == 0) {
        if (up == clients.size() || (!progress && turn_passed)) {
            sigwait(&stop_signals, &sig);
            break;
        }
        const timespec tick{0, 20'000'000};
        sig = std::max(0, sigtimedwait(&stop_signals, nullptr, &tick));
        if (sig > 0) break;
        up = static_cast<std::size_t>(std::count_if(clients.begin(), clients.end(),
                                                    [](const auto& c) { return c->connected(); }));
        if (!turn_passed && 2 * up >= clients.size()) {
            log_writer().drain();  // this worker's lines so far come before the next one's
            sensor_workers::pass_turn();
            turn_passed = true;
        }
        const auto now = std::chrono::steady_clock::now();
        if (!progress || up == shown || (now < next_report && up != clients.size())) continue;
        log(with_commas(up) + " / " + with_commas(clients.size()) + " connected");
        shown = up;
        next_report = now + std::chrono::milliseconds(500);
    }
    return sig;
}

}  // namespace

int main(int argc, char** argv) {
    sensor_settings s;
    if (const auto code = parse_command_line(argc, argv, s)) return *code;

    // Signals are taken by sigwait below, so block them before any thread starts.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGUSR1);  // a client stopped itself: its client id is taken
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    // A fleet larger than one process's share is spread over workers; a worker runs its slice of it.
    int first = 1, count = s.count;
    double connect_rate = s.connect_rate;
    bool worker = false;
    if (count > s.per_process) {
        const auto base = s.opts.status.name;
        // The supervisor writes its lines itself (one write each): it starts no thread, so that every fork, also a
        // restart of a dead worker, is a copy of a single-threaded process.
        const auto outcome = sensor_workers::run(count, s.per_process, connect_rate,
                                                 [&base](int i) { return numbered(base, i); },
                                                 [](const std::string& l) {
                                                     const auto line = "mqtt-presence-sensor: " + l + "\n";
                                                     (void)!::write(STDERR_FILENO, line.data(), line.size());
                                                 });
        if (!outcome.worker) return outcome.exit_code;
        worker = true;  // this process is a fork of the parent: it runs its slice
        first = outcome.worker->first;
        count = outcome.worker->count;
        connect_rate = outcome.worker->connect_rate;
        log_writer().prefix = "worker " + std::to_string(outcome.worker->index) + ": ";
    }
    log_writer();  // its thread starts with the signals blocked, like every other
    // OpenSSL (1.1 and later) initialises itself when a TLS connection needs it. Paho's eager initialisation (all
    // algorithms, all error strings) costs every process 1.5 MiB of resident memory, TLS or not, and a fleet runs
    // in many processes.
    MQTTAsync_init_options paho_init = MQTTAsync_init_options_initializer;
    paho_init.do_openssl_init = 0;
    MQTTAsync_global_init(&paho_init);

    std::vector<std::unique_ptr<mqtt_presence::presence_client>> clients;
    try {
        make_clients(s, first, count, clients);
        mqtt_presence::presence_client::set_connect_rate(connect_rate);
    } catch (const mqtt_presence::error& e) {
        std::cerr << "mqtt-presence-sensor: " << e.what() << "\n";
        return exit_code::usage;
    } catch (const std::system_error& e) {  // out of threads or memory for this many clients
        std::cerr << "mqtt-presence-sensor: cannot start " << clients.size() + 1 << " clients: " << e.what() << "\n";
        for (auto& c : clients) c->stop();
        return exit_code::failure;
    }

    std::string where = s.opts.broker.server_uri;  // and a cluster's other nodes, in the order they are tried
    const auto& failover = s.opts.broker.failover;
    for (const auto& uri : failover) where += (&uri == &failover.front() ? " (then " : ", ") + uri;
    if (!failover.empty()) where += ")";
    const int sig = connect_and_wait(clients, where, worker, stop_signals);
    log(sig == SIGUSR1 ? std::string("stopping: a client id is used by another process")
                       : std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
    std::vector<mqtt_presence::presence_client*> all;
    for (auto& c : clients) all.push_back(c.get());
    const std::size_t delivered = mqtt_presence::stop_all(all);  // in parallel: one stop_timeout for all
    log("stopped: clean \"disconnected\" delivered for " + std::to_string(delivered) + " of " +
        std::to_string(clients.size()));
    return sig == SIGUSR1 ? 1 : 0;
}
