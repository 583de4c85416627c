#pragma once
// What `mqtt-presence-scanner history NAME --format json` says about a history another process writes, polled
// until it shows what a test waits for (bounded, with the last answer in the failure).

#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <thread>

namespace harness {

inline nlohmann::json history_until(const std::string& db, const std::string& name,
                                    const std::function<bool(const nlohmann::json&)>& done, const std::string& what,
                                    std::chrono::milliseconds timeout = 15s) {
    nlohmann::json last;
    for (const auto until = steady::now() + timeout; steady::now() < until;) {
        child h({SCANNER_BIN, "history", name, "--db", db, "--format", "json"});
        if (h.wait_exit(10s) == 0) {
            last = nlohmann::json::parse(h.stdout_text(), nullptr, false);
            if (!last.is_discarded() && done(last)) return last;
        }
        std::this_thread::sleep_for(50ms);  // polling what another process writes: no event to wait on
    }
    ADD_FAILURE() << "the history never showed " << what << "; last answer: " << last.dump();
    return last;
}

}  // namespace harness
