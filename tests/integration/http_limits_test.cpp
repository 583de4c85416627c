// The dashboard's HTTP side under hostile load, against a real `serve`: thousands of idle sockets, slowloris
// clients, more live viewers than allowed and huge bodies, with and without a login. /healthz and /metrics answer
// within a second throughout and the service's memory stays bounded.
#include "harness.hpp"

#include <httplib.h>
#include <sys/resource.h>

#include <regex>

using namespace harness;

namespace {

struct service {
    explicit service(std::vector<std::string> extra = {}) : proc(args(std::move(extra))) {
        const auto line = proc.wait_stderr(contains("dashboard: "), 15s);
        if (!line) throw std::runtime_error("serve printed no dashboard URL:\n" + proc.stderr_text());
        std::smatch m;
        std::regex_search(*line, m, std::regex(R"(://([^:/]+):(\d+)/)"));
        http_port = std::stoi(m[2]);
        if (!proc.wait_stderr(contains("synced"), 15s)) throw std::runtime_error("serve did not sync");
    }
    static std::vector<std::string> args(std::vector<std::string> extra) {
        std::vector<std::string> a{SCANNER_BIN, "serve", "--broker", broker_uri(broker_port()), "--topic",
                                   unique_prefix() + "/{client}", "--db", db_path(), "--listen", "127.0.0.1:0"};
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    }
    // GET `path` with a 1 s budget: the status, 0 for no answer in time.
    int get(const std::string& path, const httplib::Headers& headers = {}) const {
        httplib::Client c("127.0.0.1", http_port);
        c.set_connection_timeout(1, 0);
        c.set_read_timeout(1, 0);
        const auto res = c.Get(path.c_str(), headers);
        return res ? res->status : 0;
    }
    [[nodiscard]] long rss_kib() const {
        std::ifstream in("/proc/" + std::to_string(proc.pid()) + "/status");
        std::string line;
        while (std::getline(in, line))
            if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
        return 0;
    }
    child proc;
    int http_port = 0;
};

int connect_to(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void send_text(int fd, const std::string& text) { (void)!send(fd, text.data(), text.size(), MSG_NOSIGNAL); }

// Reads what the server answers on `fd` within `within`: its status line, or "" if none.
std::string status_line(int fd, std::chrono::milliseconds within) {
    std::string got;
    const auto until = steady::now() + within;
    while (steady::now() < until && got.find("\r\n") == std::string::npos) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        char buf[4096];
        const auto n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    return got.substr(0, got.find("\r\n"));
}

// Both probes answer within 1 s, `rounds` times ~100 ms apart.
void probes_answer(const service& svc, int rounds, const std::string& during, const httplib::Headers& login = {}) {
    for (int i = 0; i < rounds; ++i) {
        const auto start = steady::now();
        EXPECT_EQ(svc.get("/healthz", login), 200) << "/healthz during " << during;
        EXPECT_EQ(svc.get("/metrics", login), 200) << "/metrics during " << during;
        EXPECT_LE(steady::now() - start, 2s) << "both probes during " << during;
        std::this_thread::sleep_for(100ms);  // spread over the attack's life
    }
}

void raise_fd_limit() {
    rlimit r{};
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
}

TEST(http_limits, idle_sockets_slowloris_and_too_many_viewers_leave_the_probes_answering) {
    raise_fd_limit();
    service svc;
    std::vector<int> fds;
    for (int i = 0; i < 2000; ++i)
        if (const int fd = connect_to(svc.http_port); fd >= 0) fds.push_back(fd);
    ASSERT_GT(fds.size(), 1900u);
    probes_answer(svc, 10, "2,000 idle sockets");

    std::vector<int> slow;
    for (int i = 0; i < 100; ++i) {
        const int fd = connect_to(svc.http_port);
        send_text(fd, "GET /api/clients HTTP/1.1\r\nHost: x\r\n");
        slow.push_back(fd);
    }
    for (int round = 0; round < 16; ++round) {  // a header line every ~400 ms for 6 s, never the end of the headers
        for (const int fd : slow) send_text(fd, "X-a: b\r\n");
        probes_answer(svc, 1, "100 slowloris connections");
        std::this_thread::sleep_for(300ms);  // the attacker's pace
    }
    // The slow ones were closed: a send now finds the connection reset, or the read finds its end.
    int closed = 0;
    for (const int fd : slow) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 0) > 0) {
            char c;
            if (recv(fd, &c, 1, MSG_DONTWAIT) <= 0) ++closed;
        }
    }
    EXPECT_GE(closed, 95) << "slowloris connections closed by the service after 5 s without a whole request";

    std::vector<int> viewers;
    int refused = 0;
    for (int i = 0; i < 70; ++i) {
        const int fd = connect_to(svc.http_port);
        send_text(fd, "GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n");
        const auto line = status_line(fd, 2s);
        if (line.find(" 503") != std::string::npos) ++refused;
        else EXPECT_NE(line.find(" 200"), std::string::npos) << line;
        viewers.push_back(fd);
    }
    EXPECT_EQ(refused, 6) << "64 live viewers at most";
    probes_answer(svc, 5, "64 live viewers");
    for (const int fd : fds) close(fd);
    for (const int fd : slow) close(fd);
    for (const int fd : viewers) close(fd);
}

TEST(http_limits, a_huge_body_is_refused_before_it_is_read_with_or_without_a_login) {
    setenv("DASH_PW", "s3cret", 1);
    for (const bool login : {false, true}) {
        SCOPED_TRACE(login ? "with a login" : "without a login");
        service svc(login ? std::vector<std::string>{"--http-user", "viewer", "--http-pw-env", "DASH_PW"}
                          : std::vector<std::string>{});
        const long before = svc.rss_kib();
        const int fd = connect_to(svc.http_port);
        send_text(fd, "POST /api/clients HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n");
        const std::string chunk(1 << 20, 'a');
        for (int i = 0; i < 64; ++i) {  // as much as the server takes; it stops reading
            pollfd p{fd, POLLOUT, 0};
            if (poll(&p, 1, 200) <= 0) break;
            if (send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT) <= 0) break;
        }
        const auto line = status_line(fd, 3s);
        EXPECT_NE(line.find(" 413"), std::string::npos) << line;
        close(fd);
        EXPECT_LT(svc.rss_kib() - before, 16 * 1024) << "KiB more after a 64 MiB body";
        probes_answer(svc, 1, "a huge body",
                      login ? httplib::Headers{{"Authorization", "Basic dmlld2VyOnMzY3JldA=="}} : httplib::Headers{});
    }
    service svc({"--http-user", "viewer", "--http-pw-env", "DASH_PW"});
    EXPECT_EQ(svc.get("/api/clients", {{"Authorization", "basic dmlld2VyOnMzY3JldA=="}}), 200)
        << "the scheme is case-insensitive";
    EXPECT_EQ(svc.get("/api/clients", {{"Authorization", "BASIC  dmlld2VyOnMzY3JldA== "}}), 200);
    EXPECT_EQ(svc.get("/api/clients", {{"Authorization", "Basic dmlld2VyOndyb25n"}}), 401);
    EXPECT_EQ(svc.get("/api/clients", {{"Authorization", "Bearer dmlld2VyOnMzY3JldA=="}}), 401);
    // A small body without a login: 401, and the connection is closed (the body is never taken for a request).
    const int fd = connect_to(svc.http_port);
    send_text(fd, "POST /api/clients HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    EXPECT_NE(status_line(fd, 2s).find(" 401"), std::string::npos);
    close(fd);
}

// Everything the server sends on `fd` until it closes the connection, read for at most `within`; `closed` says
// whether the close came.
std::string read_to_close(int fd, std::chrono::milliseconds within, bool& closed) {
    std::string got;
    closed = false;
    const auto until = steady::now() + within;
    while (steady::now() < until) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        char buf[4096];
        const auto n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            closed = true;
            break;
        }
        got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
}

TEST(http_limits, a_pipelined_request_is_never_left_waiting) {
    service svc;
    const int fd = connect_to(svc.http_port);
    send_text(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    bool closed = false;
    const auto got = read_to_close(fd, 3s, closed);
    close(fd);
    // One request per connection: the first answered with "Connection: close" and the connection closed at once,
    // so the client knows the second was not taken and sends it again (not a wait for a keep-alive timeout).
    EXPECT_NE(got.find("HTTP/1.1 200"), std::string::npos) << got;
    EXPECT_NE(got.find("Connection: close"), std::string::npos) << got;
    EXPECT_TRUE(closed) << "the connection stayed open after the first answer";
    EXPECT_EQ(svc.get("/metrics"), 200) << "the second request, sent again";
}

TEST(http_limits, a_request_line_without_end_is_cut_off_and_costs_little) {
    service svc;
    const long before = svc.rss_kib();
    const int fd = connect_to(svc.http_port);
    send_text(fd, "GET /");
    const std::string chunk(64 * 1024, 'a');
    std::size_t sent = 0;
    bool refused = false;
    const auto until = steady::now() + 8s;
    while (!refused && steady::now() < until) {  // as fast as the server takes it, until it closes
        pollfd p{fd, POLLOUT | POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[256];
            refused = recv(fd, buf, sizeof buf, MSG_DONTWAIT) <= 0;
        }
        if (!refused && (p.revents & POLLOUT)) {
            const auto n = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) sent += static_cast<std::size_t>(n);
            else if (errno != EAGAIN) refused = true;
        }
    }
    close(fd);
    const long grown = svc.rss_kib() - before;
    std::cout << "sent " << (sent >> 10) << " KiB before the close; RSS +" << grown << " KiB\n";
    EXPECT_TRUE(refused) << "the server kept reading an endless request line";
    // The guard closes a connection 64 KiB past its last rest, checked every 100 ms: what the kernel buffers and
    // one sweep's worth, never the whole stream (httplib alone buffers every byte for 5 s: 150 MiB and more).
    EXPECT_LT(sent, 48u << 20) << "bytes taken before the close";
    EXPECT_LT(grown, 48 * 1024) << "KiB more after an endless request line";
    probes_answer(svc, 1, "an endless request line");
}

TEST(http_limits, one_address_over_its_connection_cap_gets_503_and_the_probes_still_answer) {
    service svc({"--http-max-per-address", "8"});
    std::vector<int> viewers;
    for (int i = 0; i < 10; ++i) {  // live viewers hold their connections (never closed for being quiet)
        const int fd = connect_to(svc.http_port);
        send_text(fd, "GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n");
        viewers.push_back(fd);
    }
    // The guard counts connections every 100 ms: polled until it has seen them.
    const auto answer = [&svc](const std::string& path) {
        httplib::Client c("127.0.0.1", svc.http_port);
        c.set_read_timeout(1, 0);
        const auto res = c.Get(path.c_str());
        return res ? std::make_pair(res->status, res->body) : std::make_pair(0, std::string());
    };
    auto got = answer("/api/clients");
    for (const auto until = steady::now() + 3s; got.first != 503 && steady::now() < until;) {
        std::this_thread::sleep_for(50ms);  // the guard's next sweep
        got = answer("/api/clients");
    }
    EXPECT_EQ(got.first, 503) << got.second;
    EXPECT_NE(got.second.find("too many connections from 127.0.0.1"), std::string::npos) << got.second;
    probes_answer(svc, 2, "one address over its cap");
    for (const int fd : viewers) close(fd);
    for (const auto until = steady::now() + 3s; got.first != 200 && steady::now() < until;) {
        std::this_thread::sleep_for(50ms);  // the guard's next sweep
        got = answer("/api/clients");
    }
    EXPECT_EQ(got.first, 200) << "after the viewers left: " << got.second;
}

}  // namespace
