#pragma once
// A private PostgreSQL cluster for the tests, like the broker fixtures: Debian's initdb and pg_ctl (as the
// postgres user when the tests run as root, PostgreSQL refuses root), a fresh directory, a free loopback port,
// trust authentication for local test connections; stopped and removed at the end. Not the code under test.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace test_support {

class postgres_cluster {
public:
    postgres_cluster() {
        char tmpl[] = "/tmp/mqtt-presence-pg-XXXXXX";
        if (!::mkdtemp(tmpl)) throw std::runtime_error("cannot make a directory for the PostgreSQL cluster");
        dir_ = tmpl;
        bin_ = output("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1");
        if (bin_.empty()) throw std::runtime_error("PostgreSQL is not installed (scripts/bootstrap installs it)");
        if (::geteuid() == 0) {
            as_ = "runuser -u postgres -- ";
            run("chown postgres: " + dir_);
        }
        port_ = free_port();
        run(as_ + bin_ + "/initdb -D " + dir_ + "/data -A trust -U postgres -E UTF8 --locale=C --no-sync > " + dir_ +
            "/initdb.log 2>&1");
        start();
    }
    ~postgres_cluster() {
        std::system((as_ + bin_ + "/pg_ctl -D " + dir_ + "/data -m immediate -w stop > /dev/null 2>&1").c_str());
        std::system(("rm -rf " + dir_).c_str());
    }
    postgres_cluster(const postgres_cluster&) = delete;
    postgres_cluster& operator=(const postgres_cluster&) = delete;

    /// Starts the server (again) on the same port and data; waits until it takes connections.
    void start() {
        run(as_ + bin_ + "/pg_ctl -D " + dir_ + "/data -w -t 60 -l " + dir_ + "/server.log -o \"-h 127.0.0.1 -p " +
            std::to_string(port_) + " -k " + dir_ + " -c fsync=off\" start > /dev/null");  // synchronous_commit
        // stays on: a server stopped with -m immediate then keeps every commit it acknowledged, as on real disks
    }
    /// Stops the server at once (its clients see their connections cut).
    void stop() { run(as_ + bin_ + "/pg_ctl -D " + dir_ + "/data -m immediate -w stop > /dev/null"); }

    /// Every process of the server stopped with SIGSTOP, as on a hung host: connections stay up, nothing answers.
    void freeze() { signal_all("STOP"); }
    /// And going on again.
    void thaw() { signal_all("CONT"); }

    /// A new, empty database; returns its URI.
    std::string create_database(const std::string& name) {
        psql("postgres", "CREATE DATABASE \"" + name + "\"");
        return uri(name);
    }
    /// Runs SQL in a database with psql; returns what it printed (unaligned, tuples only).
    std::string psql(const std::string& database, const std::string& sql) {
        const std::string file = dir_ + "/query.sql";
        std::ofstream(file) << sql << ";\n";
        return output(bin_ + "/psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p " + std::to_string(port_) +
                      " -U postgres -d " + database + " -f " + file + " 2>&1");
    }
    [[nodiscard]] std::string uri(const std::string& database) const {
        return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + database;
    }
    [[nodiscard]] int port() const { return port_; }

private:
    // The postmaster (postmaster.pid's first line) and its children.
    void signal_all(const std::string& sig) const {
        std::string pid;
        std::ifstream(dir_ + "/data/postmaster.pid") >> pid;
        if (pid.empty()) throw std::runtime_error("the PostgreSQL server is not running");
        run("kill -" + sig + " " + pid + " && (pkill -" + sig + " -P " + pid + " || true)");
    }
    void run(const std::string& command) const {
        if (std::system(command.c_str()) != 0)
            throw std::runtime_error("failed: " + command + "\n" + output("tail -n 20 " + dir_ + "/*.log"));
    }
    static std::string output(const std::string& command) {
        std::string text;
        if (FILE* p = ::popen(command.c_str(), "r")) {
            char buf[4096];
            std::size_t n;
            while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
            ::pclose(p);
        }
        while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
        return text;
    }
    static int free_port() {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
        ::close(fd);
        if (!ok) throw std::runtime_error("no free loopback port");
        return ntohs(addr.sin_port);
    }

    std::string dir_, bin_, as_;
    int port_ = 0;
};

}  // namespace test_support
