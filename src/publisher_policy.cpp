#include "publisher_policy.hpp"

#include <algorithm>

#include <mqtt_presence/connection_table.hpp>

namespace mqtt_presence::detail {

std::chrono::milliseconds reconnect_backoff::next(std::minstd_rand& rng) {
    std::uniform_int_distribution<long long> jitter(next_.count() / 2, next_.count());
    const auto wait = std::chrono::milliseconds(jitter(rng));
    next_ = std::min(max_, next_ * 2);
    return wait;
}

std::chrono::steady_clock::time_point next_beat(std::chrono::steady_clock::time_point now,
                                                std::chrono::seconds interval, double phase) {
    const auto period = std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval);
    auto grid_point = std::chrono::duration_cast<std::chrono::steady_clock::duration>(period * phase);
    if (grid_point > now.time_since_epoch()) grid_point -= period;  // one at or before now (an interval beyond uptime)
    const auto periods = (now.time_since_epoch() - grid_point) / period + 1;  // to the first grid point after now
    return std::chrono::steady_clock::time_point(grid_point + periods * period);
}

void own_status_watch::connected() noexcept {
    conflict_ = false;
    connected_sent_ = connected_heard_ = 0;
    plain_reported_ = false;
}

own_status_watch::verdict own_status_watch::heard(const status_record& record, bool retained, std::uint64_t mine,
                                                  time_point now) {
    // An epoch beyond our clock plus the skew the scanner allows is forged (or a broken clock): never a reason to
    // keep quiet. The table judges it by the same rule.
    const bool forged = record.epoch && connection_table::beyond_horizon(*record.epoch, now);
    if (record.status == state::connected && record.epoch && *record.epoch > mine && !forged) {
        if (conflict_) return verdict::nothing;  // said already; quiet while it lives
        conflict_ = true;
        return verdict::newer_publisher;
    }
    if (record.status != state::connected || record.cleared || forged || (record.epoch && *record.epoch < mine)) {
        // In a conflict, the other publisher's status went away: say "connected" again.
        conflict_ = false;
        return verdict::heal;
    }
    if (record.epoch || retained) return verdict::nothing;  // our own epoch, or the retained copy of our status
    ++connected_heard_;
    if (plain_reported_ || (!mqtt5_ && connected_heard_ <= connected_sent_)) return verdict::nothing;
    plain_reported_ = true;
    return verdict::plain_publisher;
}

bool takeover_watch::session_ended(std::chrono::steady_clock::duration lasted) noexcept {
    last_short_ = lasted < short_session;
    if (last_short_) {
        ++short_sessions_;
    } else {
        short_sessions_ = 0;
        had_long_session_ = true;
    }
    return last_short_;
}

bool takeover_watch::is_newcomer(const client_id_claim& mine, std::uint64_t now_ms, const std::string& claim_topic,
                                 std::string& why) const {
    // The incumbent's backoff grows, so the newcomer's sessions may last longer than 3 s: a fresh claim decides
    // whatever the length of the session that just ended.
    if (rival_ && is_fresh(*rival_, now_ms)) {
        if (!detail::is_newcomer(mine, *rival_)) return false;
        why = "that process started " +
              std::to_string(mine.started_ms - std::min(mine.started_ms, rival_->started_ms)) +
              " ms before this one, by its claim on " + claim_topic;
        return true;
    }
    if (!last_short_ || had_long_session_ || short_sessions_ < 4) return false;
    why = std::to_string(short_sessions_) + " sessions in a row ended within seconds of connecting, and no claim of "
          "the other process was read" + (claim_topic.empty() ? std::string() : " on " + claim_topic);
    return true;
}

bool takeover_watch::should_warn() noexcept {
    if (short_sessions_ < 3 || warned_) return false;
    warned_ = true;
    return true;
}

}  // namespace mqtt_presence::detail
