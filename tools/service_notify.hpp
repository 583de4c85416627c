#pragma once
// service_notify: serve's word to systemd (Type=notify, WatchdogSec=) through libsystemd's sd_notify; nothing at all
// when the service was not started by systemd (no $NOTIFY_SOCKET).
//   READY=1      once the first sync is complete (or partial): the table is the broker's, not only the history's
//   STATUS=...   the service's own state, as /healthz says it (one line), whenever it changes
//   WATCHDOG=1   every half watchdog interval, only while the threads that must move are moving (the history's
//                writer has gone round its loop within 5 s; the scanner's and the notary's locks can be taken):
//                a stuck service stops pinging and systemd restarts it
//   STOPPING=1   when a stop begins

#include <chrono>
#include <cstdint>
#include <string>

#include <mqtt_presence/service/presence_service.hpp>

namespace service_cli {

class service_notify {
public:
    service_notify();
    /// Called often (the main loop's tick): says what changed and pings the watchdog when due.
    void tick(mqtt_presence::presence_service& svc);
    void stopping();

private:
    bool ready_ = false;
    std::string status_;
    std::chrono::microseconds watchdog_{0};  // 0: no watchdog asked for
    std::chrono::steady_clock::time_point next_ping_{};
};

}  // namespace service_cli
