#include "sync_tracker.hpp"

#include <algorithm>
#include <charconv>

namespace mqtt_presence::detail {
namespace {

// "N" or "confirm-N": the number and whether it is a second (confirmation) marker; nullopt for anything else.
std::optional<std::pair<std::uint64_t, bool>> parse_marker(std::string_view payload) {
    constexpr std::string_view confirm = "confirm-";
    const bool second = payload.substr(0, confirm.size()) == confirm;
    if (second) payload.remove_prefix(confirm.size());
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(payload.data(), payload.data() + payload.size(), n);
    if (ec != std::errc() || end != payload.data() + payload.size()) return std::nullopt;  // not all digits, too big
    return std::make_pair(n, second);
}

}  // namespace

sync_tracker::sync_tracker(bool has_tail, std::chrono::milliseconds quiet_period)
    : has_tail_(has_tail), quiet_period_(quiet_period) {}

std::uint64_t sync_tracker::connected(steady::time_point now) {
    connected_ = true;
    state_ = sync_state::syncing;
    tail_seen_ = false;
    retained_in_burst_ = false;
    tail_refused_ = false;
    marker_back_at_.reset();
    dropped_at_sync_.reset();
    dropped_now_.reset();
    subscribed_at_ = now;
    last_status_message_ = now;
    return ++marker_;
}

void sync_tracker::lost() {
    connected_ = false;
    if (state_ == sync_state::syncing) state_ = sync_state::unverified;
}

std::uint64_t sync_tracker::broker_dropped() const noexcept {
    if (!dropped_at_sync_ || !dropped_now_ || *dropped_now_ <= *dropped_at_sync_) return 0;
    return *dropped_now_ - *dropped_at_sync_;
}

sync_tracker::burst_end sync_tracker::marker_back(std::string_view payload, steady::time_point now,
                                                  const exact_topics& topics) {
    const auto marker = parse_marker(payload);
    if (!marker || marker->first != marker_ || !syncing_now()) return {};
    const bool second = marker->second;
    if (second || tail_seen_ || !has_tail_) return end_burst(marker_, second, topics);
    marker_back_at_ = now;  // the burst ends with the tail, or (no tail) after a quiet period
    return {};
}

sync_tracker::burst_end sync_tracker::tail_back(bool retained, std::string_view payload, const exact_topics& topics) {
    if (!retained || tail_seen_ || payload != std::to_string(marker_)) return {};
    tail_seen_ = true;
    wildcard_retained_ = true;  // the tail came through a wildcard subscription
    if (marker_back_at_ && syncing_now()) return end_burst(marker_, false, topics);
    return {};
}

void sync_tracker::status_message(bool retained, steady::time_point now) {
    last_status_message_ = now;
    if (retained && state_ == sync_state::syncing) retained_in_burst_ = true;
}

void sync_tracker::dropped(std::uint64_t count) {
    if (!dropped_at_sync_) dropped_at_sync_ = count;
    dropped_now_ = count;
    if (drops() && state_ == sync_state::complete) state_ = sync_state::unverified;
}

sync_tracker::burst_end sync_tracker::tick(steady::time_point now, const exact_topics& topics) {
    // marker_back_at_ is reset at every connect and when a burst ends: set, it is this connection's marker.
    if (!marker_back_at_ || tail_seen_ || !syncing_now()) return {};
    if (now - std::max(*marker_back_at_, last_status_message_) < quiet_period_) return {};
    wildcard_retained_ = retained_in_burst_;
    tail_refused_ = retained_in_burst_;
    return end_burst(marker_, false, topics);
}

sync_tracker::quiet sync_tracker::wait_state(steady::time_point now) {
    if (marker_ == 0 || !connected_) return quiet::waiting;
    if (state_ != sync_state::syncing) return quiet::ended;
    // The marker does not come back (no permission to publish, a broker that reorders or dropped it): a quiet
    // period after the last status message ends the wait, unverified.
    if (now - last_status_message_ < quiet_period_ || now - subscribed_at_ < 2 * quiet_period_) return quiet::waiting;
    state_ = sync_state::unverified;
    return quiet::ended_unverified;
}

sync_tracker::burst_end sync_tracker::end_burst(std::uint64_t seq, bool second, const exact_topics& topics) {
    burst_end out;
    out.ended = true;
    out.seq = seq;
    marker_back_at_.reset();
    // Rows the wildcard burst did not confirm, and named clients: asked for by their exact topics, unless this
    // broker proved that it sends retained messages to a wildcard subscription (the tail came through one): then
    // the burst was the whole retained store, and a row it did not bring is gone (a broker that lost its store:
    // a million exact SUBSCRIBEs took minutes).
    if (!second && !drops() && wildcard_retained_ != true && topics) {
        out.confirm = topics();
        std::sort(out.confirm.begin(), out.confirm.end());
        out.confirm.erase(std::unique(out.confirm.begin(), out.confirm.end()), out.confirm.end());
    }
    if (!out.confirm.empty()) {
        confirming_ = out.confirm;
        return out;
    }
    state_ = drops() ? sync_state::unverified
                     : wildcard_retained_ == false ? sync_state::partial : sync_state::complete;
    // Only a burst known complete (or every row asked for by its topic) says which rows the broker no longer holds.
    out.remove_unconfirmed = !drops();
    out.state_changed = true;
    out.unsubscribe.swap(confirming_);
    return out;
}

}  // namespace mqtt_presence::detail
