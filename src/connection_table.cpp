#include <mqtt_presence/connection_table.hpp>

#include <algorithm>

namespace mqtt_presence {

// Rarely used text fields live behind one pointer so that a plain "1"/"0" client costs only the entry.
struct connection_table::extras {
    std::string detail;
    std::string reason;
    std::string ip;
    std::string meta;
    std::string raw;
};

struct connection_table::entry {
    std::optional<time_point> since;
    std::optional<time_point> last_seen;
    std::optional<time_point> deadline;  // heartbeat: stale after this
    std::uint64_t epoch = 0;
    std::uint32_t transitions = 0;
    std::uint32_t heartbeat_s = 0;
    std::uint16_t source = 0;
    state status = state::unknown;
    bool has_epoch = false;
    bool retained = false;
    bool stale = false;
    std::unique_ptr<extras> more;
};

std::string_view to_string(change_kind k) noexcept {
    switch (k) {
        case change_kind::added: return "added";
        case change_kind::changed: return "changed";
        case change_kind::reconnected: return "reconnected";
        case change_kind::stale: return "stale";
        case change_kind::fresh: return "fresh";
        case change_kind::removed: break;
    }
    return "removed";
}

connection_table::connection_table() : entries_(std::make_unique<map>()) {}
connection_table::~connection_table() noexcept = default;
connection_table::connection_table(connection_table&&) noexcept = default;
connection_table& connection_table::operator=(connection_table&&) noexcept = default;

std::size_t connection_table::size() const noexcept { return entries_->size(); }
void connection_table::reserve(std::size_t clients) { entries_->reserve(clients); }

void connection_table::count(const entry& e, int delta) noexcept {
    auto bump = [delta](std::size_t& n) { n = delta > 0 ? n + 1 : n - 1; };
    switch (e.status) {
        case state::connected: bump(counts_.connected); break;
        case state::disconnected: bump(counts_.disconnected); break;
        case state::unknown: bump(counts_.unknown); break;
    }
    if (e.stale) bump(counts_.stale);
}

client_status connection_table::row(const std::string& name, const entry& e) {
    client_status r;
    r.client = name;
    r.status = e.status;
    r.stale = e.stale;
    r.retained = e.retained;
    r.since = e.since;
    r.last_seen = e.last_seen;
    if (e.has_epoch) r.epoch = e.epoch;
    if (e.heartbeat_s > 0) r.heartbeat = std::chrono::seconds(e.heartbeat_s);
    r.transitions = e.transitions;
    r.source = e.source;
    if (e.more) {
        r.detail = e.more->detail;
        r.reason = e.more->reason;
        r.ip = e.more->ip;
        r.meta = e.more->meta;
        r.raw = e.more->raw;
    }
    return r;
}

std::optional<change> connection_table::apply(std::string_view client, const status_record& record, bool retained,
                                              time_point now, std::uint16_t source) {
    ++stats_.messages;
    key_.assign(client.data(), client.size());

    if (record.cleared) {
        auto last = erase(key_);
        if (!last) return std::nullopt;
        return change{change_kind::removed, last->status, std::move(*last)};
    }
    if (record.malformed()) ++stats_.malformed;

    auto [it, inserted] = entries_->try_emplace(key_);
    entry& e = it->second;

    // A "disconnected" from an older connection than the current one is a late will: keep the live state.
    if (!inserted && record.status == state::disconnected && e.status == state::connected && e.has_epoch &&
        record.epoch && *record.epoch < e.epoch) {
        ++stats_.stale_deaths_ignored;
        return std::nullopt;
    }

    const std::optional<state> previous = inserted ? std::nullopt : std::optional<state>(e.status);
    const bool was_stale = e.stale;
    const bool new_connection = !inserted && record.status == state::connected && e.status == state::connected &&
                                record.epoch && (!e.has_epoch || *record.epoch > e.epoch);
    if (!inserted) count(e, -1);

    const bool state_changed = inserted || e.status != record.status;
    if (state_changed || new_connection) {
        if (!inserted && state_changed) ++e.transitions;
        if (record.status == state::connected && record.timestamp) e.since = record.timestamp;
        else if (!retained) e.since = now;
        else if (record.status == state::disconnected && record.reason == "clean" && record.timestamp)
            e.since = record.timestamp;  // a clean stop's payload is made at the moment of the stop
        else e.since = std::nullopt;
    } else if (!e.since && record.status == state::connected && record.timestamp) {
        e.since = record.timestamp;  // first time this connection's start is known
    }

    e.status = record.status;
    e.retained = retained;
    e.source = source;
    if (record.epoch) {
        e.epoch = *record.epoch;
        e.has_epoch = true;
    }
    e.last_seen = retained ? record.timestamp : std::optional<time_point>(now);
    e.heartbeat_s = record.heartbeat ? static_cast<std::uint32_t>(record.heartbeat->count()) : 0;
    e.stale = false;
    e.deadline.reset();
    if (e.heartbeat_s > 0 && e.status == state::connected) {
        const auto base = e.last_seen ? *e.last_seen : now;
        e.deadline = base + 3 * std::chrono::seconds(e.heartbeat_s);
        next_deadline_ = std::min(next_deadline_, *e.deadline);
    }

    const bool has_text = !record.detail.empty() || !record.reason.empty() || !record.ip.empty() ||
                          !record.meta.empty() || !record.raw.empty();
    if (has_text) {
        if (!e.more) e.more = std::make_unique<extras>();
        e.more->detail = record.detail;
        e.more->reason = record.reason;
        e.more->ip = record.ip;
        e.more->meta = record.meta;
        e.more->raw = record.raw;
    } else {
        e.more.reset();
    }
    count(e, +1);

    if (state_changed) return change{inserted ? change_kind::added : change_kind::changed, previous, row(it->first, e)};
    if (new_connection) return change{change_kind::reconnected, previous, row(it->first, e)};
    if (was_stale) return change{change_kind::fresh, previous, row(it->first, e)};
    return std::nullopt;
}

std::vector<change> connection_table::expire(time_point now) {
    std::vector<change> out;
    if (now < next_deadline_) return out;
    next_deadline_ = time_point::max();
    for (auto& [name, e] : *entries_) {
        if (!e.deadline || e.stale) continue;
        if (*e.deadline <= now) {
            count(e, -1);
            e.stale = true;
            count(e, +1);
            out.push_back(change{change_kind::stale, e.status, row(name, e)});
        } else {
            next_deadline_ = std::min(next_deadline_, *e.deadline);
        }
    }
    return out;
}

std::optional<client_status> connection_table::erase(std::string_view client) {
    if (key_.data() != client.data()) key_.assign(client.data(), client.size());
    auto it = entries_->find(key_);
    if (it == entries_->end()) return std::nullopt;
    auto last = row(it->first, it->second);
    count(it->second, -1);
    entries_->erase(it);
    return last;
}

std::optional<client_status> connection_table::find(std::string_view client) const {
    auto it = entries_->find(std::string(client));
    if (it == entries_->end()) return std::nullopt;
    return row(it->first, it->second);
}

std::vector<client_status> connection_table::snapshot() const {
    std::vector<client_status> rows;
    rows.reserve(entries_->size());
    for (const auto& [name, e] : *entries_) rows.push_back(row(name, e));
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.client < b.client; });
    return rows;
}

void connection_table::for_each(const std::function<void(const client_status&)>& visit) const {
    for (const auto& [name, e] : *entries_) visit(row(name, e));
}

}  // namespace mqtt_presence
