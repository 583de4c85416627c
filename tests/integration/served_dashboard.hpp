#pragma once
// A `serve` process with its dashboard on a free loopback port: the port read from its "dashboard: URL" line, GET as
// JSON, and a bounded poll of its API until it shows what a test waits for.

#include "harness.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace harness {

// serve with its dashboard on a free port.
struct served_dashboard {
    served_dashboard(int port, const std::string& templ, const std::string& db, std::vector<std::string> extra = {})
        : proc(serve_args(port, templ, db, extra)) {
        const auto line = proc.wait_stderr(contains("dashboard: "), 20s);
        if (!line) throw std::runtime_error("serve printed no dashboard URL:\n" + proc.stderr_text());
        std::smatch m;
        if (!std::regex_search(*line, m, std::regex(R"(://([^:/]+):(\d+)/)")))
            throw std::runtime_error("serve's dashboard line has no URL: " + *line);
        http_port = std::stoi(m[2]);
    }
    void expect_synced() {
        ASSERT_TRUE(proc.wait_stderr(contains("synced"), 15s)) << "serve did not sync:\n" << proc.stderr_text();
    }
    // GET `path`: its status and JSON body (status 0: no answer).
    std::pair<int, nlohmann::json> get(const std::string& path) const {
        httplib::Client c("127.0.0.1", http_port);
        c.set_connection_timeout(2, 0);
        c.set_read_timeout(5, 0);
        auto res = c.Get(path.c_str());
        if (!res) return {0, nlohmann::json()};
        return {res->status, nlohmann::json::parse(res->body, nullptr, false)};
    }
    // Waits (bounded) until GET `path` answers JSON that satisfies `done`.
    nlohmann::json until(const std::string& path, const std::function<bool(const nlohmann::json&)>& done,
                         const std::string& what) {
        nlohmann::json last;
        for (const auto end = steady::now() + 15s; steady::now() < end;) {
            last = get(path).second;
            if (!last.is_discarded() && !last.is_null() && done(last)) return last;
            std::this_thread::sleep_for(50ms);  // polling an HTTP API: no event to wait on
        }
        ADD_FAILURE() << "GET " << path << " never showed " << what << "; last: " << last.dump();
        return last;
    }
    std::string pid_text() const { return "pid " + std::to_string(proc.pid()); }
    // Whether it said `text` on stderr so far.
    bool said(const std::string& text) { return proc.stderr_text().find(text) != std::string::npos; }
    child proc;
    int http_port = 0;
};

}  // namespace harness
