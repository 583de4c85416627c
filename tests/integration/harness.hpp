#pragma once
// Helpers for tests against a real mosquitto: the fixture's broker port, child processes that can be killed with
// real signals, and an independent observer (mosquitto_sub) of the broker's retained state.
// Every wait is bounded and says what it waited for.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../postgres_cluster.hpp"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

extern char** environ;

namespace harness {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

inline std::string env_or_fail(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr) throw std::runtime_error(std::string(name) + " is not set: run this test through ctest");
    return v;
}

/// The port of the broker the CTest fixture started.
inline int broker_port(const std::string& dir = env_or_fail("MQTT_PRESENCE_TEST_BROKER_DIR")) {
    std::ifstream in(dir + "/port");
    int port = 0;
    in >> port;
    if (port == 0) throw std::runtime_error("no broker port in " + dir + "/port: did the broker fixture run?");
    return port;
}

inline std::string broker_uri(int port) { return "tcp://127.0.0.1:" + std::to_string(port); }

/// A prefix no other test uses, so tests can share one broker and run in parallel.
inline std::string unique_prefix() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return std::string("t") + std::to_string(getpid()) + "-" + info->name();
}

/// Where a test's history lives: the test's own SQLite file, with no file (nor WAL, nor shared memory) left from an
/// earlier run or, when ctest runs a test binary again with MQTT_PRESENCE_TEST_HISTORY=postgresql, a new database
/// in a private PostgreSQL cluster of this test process (a new one at each call).
/// The private PostgreSQL cluster of this test process, started at its first use.
inline test_support::postgres_cluster& postgres() {
    static test_support::postgres_cluster cluster;
    return cluster;
}

/// The private PostgreSQL cluster when this test process's histories are in PostgreSQL, else null.
inline test_support::postgres_cluster* history_cluster() {
    const char* backend = std::getenv("MQTT_PRESENCE_TEST_HISTORY");
    if (!backend || std::string(backend) != "postgresql") return nullptr;
    return &postgres();
}

inline std::string db_path() {
    if (auto* cluster = history_cluster()) {
        static int n = 0;
        return cluster->create_database("db" + std::to_string(++n));
    }
    const std::string path = std::string(TEST_TMP_DIR) + "/" + unique_prefix() + ".db";
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
    return path;
}

/// A child process with its stdout and stderr in pipes, read line by line with bounded waits.
class child {
public:
    explicit child(std::vector<std::string> argv) : argv_(std::move(argv)) {
        int out[2], err[2];
        if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out[1], 1);
        posix_spawn_file_actions_adddup2(&actions, err[1], 2);
        std::vector<char*> args;
        for (auto& a : argv_) args.push_back(a.data());
        args.push_back(nullptr);
        const int rc = posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        close(out[1]);
        close(err[1]);
        out_ = out[0];
        err_ = err[0];
        if (rc != 0) throw std::runtime_error("cannot start " + argv_[0]);
    }
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    ~child() {
        if (!exit_code_ && pid_ > 0) {
            kill(pid_, SIGCONT);
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        close(out_);
        close(err_);
    }

    void signal(int sig) const { kill(pid_, sig); }
    [[nodiscard]] pid_t pid() const { return pid_; }

    /// Waits for exit; the exit code (128 + signal for a signal), or nullopt on timeout.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
        const auto deadline = steady::now() + timeout;
        while (!exit_code_) {
            int status = 0;
            const pid_t r = waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            if (steady::now() > deadline) return std::nullopt;
            drain(10);
        }
        drain(0);
        return exit_code_;
    }

    /// Waits for a stdout line matching `pred`; returns it, or nullopt on timeout. Lines seen are kept.
    std::optional<std::string> wait_stdout(const std::function<bool(const std::string&)>& pred,
                                           std::chrono::milliseconds timeout) {
        return wait_line(out_lines_, next_out_, pred, timeout);
    }
    std::optional<std::string> wait_stderr(const std::function<bool(const std::string&)>& pred,
                                           std::chrono::milliseconds timeout) {
        return wait_line(err_lines_, next_err_, pred, timeout);
    }
    const std::vector<std::string>& stdout_lines() { drain(0); return out_lines_; }
    const std::vector<std::string>& stderr_lines() { drain(0); return err_lines_; }
    std::string stderr_text() {
        std::string all;
        for (const auto& l : stderr_lines()) all += l + "\n";
        return all + partial_err_;
    }
    std::string stdout_text() {
        std::string all;
        for (const auto& l : stdout_lines()) all += l + "\n";
        return all + partial_out_;
    }

private:
    std::optional<std::string> wait_line(std::vector<std::string>& lines, std::size_t& next,
                                         const std::function<bool(const std::string&)>& pred,
                                         std::chrono::milliseconds timeout) {
        const auto deadline = steady::now() + timeout;
        for (;;) {
            while (next < lines.size()) {
                const auto& l = lines[next++];
                if (pred(l)) return l;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
            if (left.count() <= 0) return std::nullopt;
            if (!drain(static_cast<int>(std::min<long long>(left.count(), 100))) && exit_code_) return std::nullopt;
        }
    }

    // Reads what is available from both pipes, waiting up to `ms` for something. False at end of both.
    bool drain(int ms) {
        pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
        if (poll(fds, 2, ms) <= 0) return true;
        bool open = false;
        open |= read_into(fds[0], out_, partial_out_, out_lines_);
        open |= read_into(fds[1], err_, partial_err_, err_lines_);
        return open;
    }

    static bool read_into(const pollfd& p, int fd, std::string& partial, std::vector<std::string>& lines) {
        if (!(p.revents & (POLLIN | POLLHUP))) return true;
        char buf[65536];
        const auto n = read(fd, buf, sizeof buf);
        if (n <= 0) return false;
        partial.append(buf, static_cast<std::size_t>(n));
        std::size_t pos;
        while ((pos = partial.find('\n')) != std::string::npos) {
            lines.push_back(partial.substr(0, pos));
            partial.erase(0, pos + 1);
        }
        return true;
    }

    std::vector<std::string> argv_;
    pid_t pid_ = -1;
    int out_ = -1, err_ = -1;
    std::optional<int> exit_code_;
    std::vector<std::string> out_lines_, err_lines_;
    std::size_t next_out_ = 0, next_err_ = 0;
    std::string partial_out_, partial_err_;
};

/// What a child process said and how it ended.
struct finished {
    int code = -1;  ///< the exit code (128 + signal), or -1 when it did not end within the bound
    std::string out, err;
};

/// Runs `argv` to its end (bounded by `timeout`) and keeps its output.
inline finished run_to_end(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 20s) {
    child c(argv);
    finished r;
    r.code = c.wait_exit(timeout).value_or(-1);
    r.out = c.stdout_text();
    r.err = c.stderr_text();
    return r;
}

/// An independent observer of a topic filter: mosquitto_sub printing "topic payload" lines, retained ones first.
class observer {
public:
    /// `extra`: further mosquitto_sub arguments (credentials, --cafile).
    observer(int port, const std::string& filter, const std::vector<std::string>& extra = {})
        : sub_(args(port, filter, extra)) {}

    /// Waits for a message on `topic` whose payload satisfies `pred`; fails the test with `what` on timeout.
    std::string expect(const std::string& topic, const std::function<bool(const std::string&)>& pred,
                       const std::string& what, std::chrono::milliseconds timeout = 10s) {
        auto line = sub_.wait_stdout(
            [&](const std::string& l) {
                return l.compare(0, topic.size() + 1, topic + " ") == 0 && pred(l.substr(topic.size() + 1));
            },
            timeout);
        if (!line) {
            ADD_FAILURE() << "waited " << timeout.count() << " ms for " << what << " on " << topic
                          << "; saw:\n" << sub_.stdout_text();
            return {};
        }
        return line->substr(topic.size() + 1);
    }
    /// Waits for a message on any topic whose "topic payload" line satisfies `pred`; returns the whole line.
    std::string expect_any(const std::function<bool(const std::string&)>& pred, const std::string& what,
                           std::chrono::milliseconds timeout = 10s) {
        auto line = sub_.wait_stdout(pred, timeout);
        if (!line) {
            ADD_FAILURE() << "waited " << timeout.count() << " ms for " << what << "; saw:\n" << sub_.stdout_text();
            return {};
        }
        return *line;
    }
    /// Every "topic payload" line seen so far.
    std::vector<std::string> lines() { return sub_.stdout_lines(); }
    /// Every payload seen so far on `topic`.
    std::vector<std::string> payloads(const std::string& topic) {
        std::vector<std::string> out;
        for (const auto& l : sub_.stdout_lines())
            if (l.compare(0, topic.size() + 1, topic + " ") == 0) out.push_back(l.substr(topic.size() + 1));
        return out;
    }

private:
    static std::vector<std::string> args(int port, const std::string& filter, const std::vector<std::string>& extra) {
        std::vector<std::string> a{"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(port),
                                   "-t", filter, "-v", "-q", "1"};
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    }
    child sub_;
};

inline std::function<bool(const std::string&)> equals(std::string v) {
    return [v](const std::string& s) { return s == v; };
}
inline std::function<bool(const std::string&)> contains(std::string v) {
    return [v](const std::string& s) { return s.find(v) != std::string::npos; };
}

// A command in a detached tmux session of a given size (its own tmux server), and its screen as tmux shows it.
// tmux's screen has no event to wait for: it is polled, bounded.
class tmux_session {
public:
    tmux_session(std::string socket, int width, int height, const std::string& command) : socket_(std::move(socket)) {
        run({"new-session", "-d", "-s", "live", "-x", std::to_string(width), "-y", std::to_string(height), command});
    }
    ~tmux_session() { run({"kill-server"}); }
    tmux_session(const tmux_session&) = delete;
    tmux_session& operator=(const tmux_session&) = delete;

    std::string run(std::vector<std::string> args) const {
        std::vector<std::string> argv{"tmux", "-L", socket_};
        argv.insert(argv.end(), args.begin(), args.end());
        child c(argv);
        c.wait_exit(10s);
        return c.stdout_text();
    }
    [[nodiscard]] std::string screen() const { return run({"capture-pane", "-p", "-t", "live"}); }
    void keys(std::vector<std::string> keys) const {
        keys.insert(keys.begin(), {"send-keys", "-t", "live"});
        run(keys);
    }
    /// The screen once `ok` holds of it; a test failure naming `what` (and the screen) after `timeout`.
    std::string wait_screen(const std::string& what, const std::function<bool(const std::string&)>& ok,
                            std::chrono::milliseconds timeout = 10s) const {
        const auto until = steady::now() + timeout;
        std::string shown;
        while (steady::now() < until) {
            shown = screen();
            if (ok(shown)) return shown;
            std::this_thread::sleep_for(50ms);  // polled: see above
        }
        ADD_FAILURE() << "waited for " << what << "; the screen:\n" << shown;
        return shown;
    }
    /// Whether the command ended (its session gone) within `timeout`.
    [[nodiscard]] bool wait_gone(std::chrono::milliseconds timeout) const {
        const auto until = steady::now() + timeout;
        while (steady::now() < until && run({"list-sessions"}).find("live") != std::string::npos)
            std::this_thread::sleep_for(50ms);  // tmux says nothing when its command exits
        return run({"list-sessions"}).find("live") == std::string::npos;
    }

private:
    std::string socket_;
};

}  // namespace harness

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <thread>

namespace harness {

/// A TCP proxy on a free loopback port in front of a broker. hold() keeps what the client sends (as a frozen
/// network would) until release(); the broker's side is untouched, so it never sees an error of its own.
class tcp_proxy {
public:
    explicit tcp_proxy(int upstream_port) : upstream_port_(upstream_port) {
        listen_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listen_, 4) != 0)
            throw std::runtime_error("proxy: cannot listen");
        socklen_t len = sizeof a;
        getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { run(); });
    }
    ~tcp_proxy() {
        stop_ = true;
        thread_.join();
        close(listen_);
    }
    [[nodiscard]] int port() const { return port_; }
    void hold() { held_ = true; }
    void release() { held_ = false; }
    /// The client closed its side (seen while holding or not).
    [[nodiscard]] bool client_closed() const { return client_closed_; }

private:
    void run() {
        int client = -1, upstream = -1;
        std::string pending;  // client bytes held back
        bool upstream_shut = false;
        while (!stop_) {
            std::vector<pollfd> fds{{listen_, POLLIN, 0}};
            if (client >= 0) fds.push_back({client, POLLIN, 0});
            if (upstream >= 0) fds.push_back({upstream, POLLIN, 0});
            poll(fds.data(), fds.size(), 20);
            if (fds[0].revents & POLLIN) {
                const int c = accept(listen_, nullptr, nullptr);
                if (client >= 0) { close(c); } else {
                    if (upstream >= 0) {  // a reconnect: the old connection's held bytes never arrive, as in a cut
                        close(upstream);
                        pending.clear();
                        upstream_shut = false;
                        client_closed_ = false;
                    }
                    client = c;
                    upstream = socket(AF_INET, SOCK_STREAM, 0);
                    sockaddr_in a{};
                    a.sin_family = AF_INET;
                    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                    a.sin_port = htons(static_cast<uint16_t>(upstream_port_));
                    if (connect(upstream, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) { close(client); client = -1; }
                }
            }
            char buf[65536];
            for (std::size_t i = 1; i < fds.size(); ++i) {
                if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                const auto n = read(fds[i].fd, buf, sizeof buf);
                if (fds[i].fd == client) {
                    if (n <= 0) { client_closed_ = true; close(client); client = -1; }
                    else pending.append(buf, static_cast<std::size_t>(n));
                } else if (fds[i].fd == upstream) {
                    if (n <= 0) { close(upstream); upstream = -1; if (client >= 0) { close(client); client = -1; } }
                    else if (client >= 0 && write(client, buf, static_cast<std::size_t>(n)) < 0) { /* client gone */ }
                }
            }
            if (!held_ && upstream >= 0) {
                if (!pending.empty()) {
                    const auto w = write(upstream, pending.data(), pending.size());
                    if (w > 0) pending.erase(0, static_cast<std::size_t>(w));
                }
                if (pending.empty() && client_closed_ && !upstream_shut) {
                    shutdown(upstream, SHUT_WR);  // what the client did, in order, after its bytes
                    upstream_shut = true;
                }
            }
        }
        if (client >= 0) close(client);
        if (upstream >= 0) close(upstream);
    }

    int upstream_port_;
    int listen_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false}, held_{false}, client_closed_{false};
    std::thread thread_;
};

}  // namespace harness

namespace harness {

/// A loopback port nothing listens on (bound for a moment by the kernel's choice, then closed).
inline int free_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        close(fd);
        throw std::runtime_error("no free loopback port");
    }
    close(fd);
    return ntohs(addr.sin_port);
}

/// A self-signed certificate for 127.0.0.1 in dir/cert.pem, its key in dir/key.pem (openssl, not the code under test).
inline void self_signed_cert(const std::string& dir) {
    child cert({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"});
    ASSERT_EQ(cert.wait_exit(30s), 0) << cert.stderr_text();
}

/// Publishes a retained QoS 1 message with mosquitto_pub (not the code under test).
inline void publish_retained(int port, const std::string& topic, const std::string& payload) {
    child pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-r", "-q", "1", "-t", topic,
               "-m", payload});
    ASSERT_EQ(pub.wait_exit(10s), 0) << pub.stderr_text();
}

/// A private broker for a test that stops, freezes or restarts it.
class private_broker {
public:
    explicit private_broker(const std::string& mode = "start") : dir_(std::string(TEST_TMP_DIR) + "/" + unique_prefix()) {
        static int made = 0;  // several in one test: a directory each
        if (++made > 1) dir_ += "-" + std::to_string(made);
        child start({TEST_BROKER_SCRIPT, mode, dir_});
        if (start.wait_exit(30s) != 0) throw std::runtime_error("private broker did not start: " + start.stderr_text());
        port_ = broker_port(dir_);
    }
    ~private_broker() {
        child stop({TEST_BROKER_SCRIPT, "stop", dir_});
        stop.wait_exit(20s);
    }
    [[nodiscard]] int port() const { return port_; }
    [[nodiscard]] const std::string& dir() const { return dir_; }
    [[nodiscard]] pid_t pid() const {
        std::ifstream in(dir_ + "/pid");
        pid_t p = 0;
        in >> p;
        return p;
    }
    /// A crash: no will is sent, the last autosave of the retained store is what a restart finds.
    void crash() {
        const pid_t p = pid();
        ASSERT_GT(p, 0);
        ASSERT_EQ(kill(p, SIGKILL), 0);
        // Gone once reaped; a zombie nobody reaps still holds no port, so the bound is only a safety net.
        const auto until = steady::now() + 5s;
        while (kill(p, 0) == 0 && steady::now() < until) std::this_thread::sleep_for(10ms);
    }
    void restart() {
        child restart({TEST_BROKER_SCRIPT, "restart", dir_});
        ASSERT_EQ(restart.wait_exit(30s), 0) << restart.stderr_text();
    }

private:
    std::string dir_;
    int port_ = 0;
};

#ifdef SCANNER_BIN
/// `mqtt-presence-scanner serve` on the test's broker and topic, its history at `db`, its dashboard on a free port,
/// then `extra`.
inline std::vector<std::string> serve_args(int port, const std::string& templ, const std::string& db,
                                           const std::vector<std::string>& extra = {}) {
    std::vector<std::string> a{SCANNER_BIN, "serve", "--broker", broker_uri(port), "--topic", templ, "--db", db,
                               "--listen", "127.0.0.1:0"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
}
#endif

}  // namespace harness
