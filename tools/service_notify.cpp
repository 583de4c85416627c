#include "service_notify.hpp"

#include <systemd/sd-daemon.h>

#include <mqtt_presence/render.hpp>

using namespace mqtt_presence;

namespace service_cli {

service_notify::service_notify() {
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0) watchdog_ = std::chrono::microseconds(usec);
}

void service_notify::tick(presence_service& svc) {
    const auto st = svc.table().status();  // also a proof that the scanner's lock can be taken
    const auto h = svc.history_figures();
    const bool synced = st.connected && (st.sync == sync_state::complete || st.sync == sync_state::partial);
    if (synced && !ready_) {
        ready_ = true;
        sd_notify(0, "READY=1");
    }
    std::string status = synced ? "watching " + svc.options().scan.broker.server_uri
                                : std::string(st.connected ? "syncing with " : "waiting for the broker at ") +
                                      svc.options().scan.broker.server_uri;
    if (h.failing) status += "; history failing: " + h.last_error;
    if (!svc.leading()) status = "follower (another serve leads): " + status;
    if (status != status_) {
        status_ = status;
        sd_notify(0, ("STATUS=" + terminal_safe(status, 200)).c_str());
    }
    if (watchdog_.count() == 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_ping_) return;
    if (svc.notary()) (void)svc.notary()->stats();  // its lock can be taken
    if (svc.leading() && now - h.writer_alive > std::chrono::seconds(5)) return;  // the writer is stuck: no ping
    sd_notify(0, "WATCHDOG=1");
    next_ping_ = now + watchdog_ / 2;
}

void service_notify::stopping() { sd_notify(0, "STOPPING=1"); }

}  // namespace service_cli
