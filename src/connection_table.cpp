#include <mqtt_presence/connection_table.hpp>

#include <climits>

#include <algorithm>
#include <array>
#include <cstring>

namespace mqtt_presence {
namespace {

constexpr time_point unknown_time = time_point::min();

std::optional<time_point> known(time_point t) {
    return t == unknown_time ? std::nullopt : std::optional<time_point>(t);
}

// A client is its name within one topic scheme (source): the same name under two schemes is two clients.
std::uint64_t hash_of(std::string_view name, std::uint16_t source) noexcept {
    return std::hash<std::string_view>{}(name) ^ (source * 0x9e3779b97f4a7c15ULL);
}

// The rarely present text fields (detail, reason, ip, host, meta, raw) in one allocation, or none when all are empty:
// a plain "1"/"0" client pays 8 bytes for them.
class packed_text {
public:
    static constexpr std::size_t fields = 6;

    void assign(const std::array<std::string_view, fields>& values) {
        std::size_t total = 0;
        for (auto v : values) total += v.size();
        if (total == 0) {
            data_.reset();
            return;
        }
        data_ = std::make_unique<char[]>(sizeof(std::uint32_t) * fields + total);
        char* out = data_.get() + sizeof(std::uint32_t) * fields;
        for (std::size_t i = 0; i < fields; ++i) {
            const auto len = static_cast<std::uint32_t>(values[i].size());
            std::memcpy(data_.get() + i * sizeof(std::uint32_t), &len, sizeof len);
            std::memcpy(out, values[i].data(), len);
            out += len;
        }
    }

    /// Copies every field into `out` (one pass over the lengths; empty strings when there is no text).
    void read(const std::array<std::string*, fields>& out) const {
        if (!data_) {
            for (auto* s : out) s->clear();
            return;
        }
        const char* text = data_.get() + sizeof(std::uint32_t) * fields;
        for (std::size_t i = 0; i < fields; ++i) {
            std::uint32_t len = 0;
            std::memcpy(&len, data_.get() + i * sizeof(std::uint32_t), sizeof len);
            out[i]->assign(text, len);
            text += len;
        }
    }

private:
    std::unique_ptr<char[]> data_;
};

}  // namespace

// A row's expectation: when it is overdue, and (for "auto") its cadence. Allocated only for a row that has one.
struct expectation_state {
    time_point deadline = time_point::min();  // overdue after this; min (unknown) when not judged
    cadence learned;                          // "auto" only
};

struct connection_table::entry {
    // The name and the scheme first: a lookup compares them, and they share the entry's first cache line.
    std::string name;
    std::uint16_t source = 0;
    state status = state::unknown;
    bool has_epoch = false;
    bool retained = false;
    bool stale = false;
    bool future_time = false;
    bool epoch_future = false;  // the epoch lay beyond the horizon when it came: compared only with such epochs
    bool restored = false;
    bool awaiting_beat = false;  // retained and overdue by the sender's clock: judged by ours, within 1.5 intervals
    bool has_skew = false;
    std::int32_t skew_ms = 0;    // the sender's clock minus ours, from its last live "connected"
    std::uint32_t transitions = 0;
    std::uint32_t generation = 0;  // the re-sync that last confirmed this row
    std::uint32_t heartbeat_s = 0;
    time_point since = unknown_time;
    time_point last_seen = unknown_time;
    time_point deadline = unknown_time;  // heartbeat: stale after this; unknown_time when none
    time_point last_down = unknown_time;
    time_point first_seen = unknown_time;  // when the table first held the row (the scanner's clock)
    std::uint64_t epoch = 0;
    std::uint64_t session = 0;
    bool has_session = false;
    bool overdue = false;        // in has_session's padding, as expect_s is: a row without an expectation pays
    std::uint32_t expect_s = 0;  // the expected interval; 0: none; learned_expectation: its cadence's
    std::unique_ptr<expectation_state> expecting;  // set exactly when expect_s is not 0: 8 bytes a row without one
    packed_text text;
};

std::string_view to_string(change_kind k) noexcept {
    switch (k) {
        case change_kind::added: return "added";
        case change_kind::changed: return "changed";
        case change_kind::reconnected: return "reconnected";
        case change_kind::stale: return "stale";
        case change_kind::fresh: return "fresh";
        case change_kind::overdue: return "overdue";
        case change_kind::back: return "back";
        case change_kind::removed: break;
    }
    return "removed";
}

connection_table::connection_table(std::chrono::milliseconds max_clock_skew)
    : slots_(16, 0), max_clock_skew_(max_clock_skew) {}

bool connection_table::beyond_horizon(std::uint64_t unix_ms, time_point now,
                                      std::chrono::milliseconds max_clock_skew) noexcept {
    const auto horizon = std::chrono::duration_cast<std::chrono::milliseconds>(
                             (now + max_clock_skew).time_since_epoch())
                             .count();
    return unix_ms > static_cast<std::uint64_t>(std::max<std::int64_t>(horizon, 0));
}
connection_table::~connection_table() noexcept = default;
connection_table::connection_table(connection_table&&) noexcept = default;
connection_table& connection_table::operator=(connection_table&&) noexcept = default;

std::size_t connection_table::size() const noexcept { return rows_.size(); }

void connection_table::reserve(std::size_t clients) {
    // Geometric: a caller that reserves a chunk more at a time (restoring a history) must not copy every row per chunk.
    if (clients > rows_.capacity()) rows_.reserve(std::max(clients, rows_.capacity() * 2));
    while (slots_.size() < clients * 2) grow();
}

// --- the index -------------------------------------------------------------------------------------------------

std::size_t connection_table::slot_of(std::string_view client, std::uint16_t source, std::uint64_t hash) const noexcept {
    const std::size_t mask = slots_.size() - 1;
    const std::uint64_t tag = hash >> 32;
    for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
        const std::uint64_t s = slots_[i];
        if (s == 0) return i;
        if ((s >> 32) == tag) {
            const entry& e = rows_[(s & 0xFFFFFFFFu) - 1];
            if (e.name == client && e.source == source) return i;
        }
    }
}

std::size_t connection_table::insert_slot(std::uint64_t hash, std::size_t row_index) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = hash & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = ((hash >> 32) << 32) | (row_index + 1);
    return i;
}

void connection_table::grow() {
    std::vector<std::uint64_t> old(slots_.size() * 2, 0);
    old.swap(slots_);
    for (std::size_t r = 0; r < rows_.size(); ++r) insert_slot(hash_of(rows_[r].name, rows_[r].source), r);
}

// Frees a slot (backward-shift deletion keeps probe chains intact without tombstones) and its row (the last row
// moves into the hole), taking the row out of the counts; `last_row` (if given) receives the row, `taken` the entry.
void connection_table::remove_row(std::size_t slot, client_status* last_row, entry* taken) {
    const std::size_t mask = slots_.size() - 1;
    const std::size_t hole_row = (slots_[slot] & 0xFFFFFFFFu) - 1;
    if (last_row) fill_row(rows_[hole_row], *last_row);
    count(rows_[hole_row], -1);
    if (taken) *taken = std::move(rows_[hole_row]);  // the slots below hash other rows' names, never this one's
    std::size_t hole = slot;
    for (std::size_t i = (hole + 1) & mask; slots_[i] != 0; i = (i + 1) & mask) {
        const entry& e = rows_[(slots_[i] & 0xFFFFFFFFu) - 1];
        const std::size_t home = hash_of(e.name, e.source) & mask;
        // Move slot i into the hole if its home is not in (hole, i] cyclically.
        const bool stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
        if (!stays) {
            slots_[hole] = slots_[i];
            hole = i;
        }
    }
    slots_[hole] = 0;

    const std::size_t last = rows_.size() - 1;
    if (hole_row != last) {
        // Repoint the last row's slot (found by its row index, as its name is about to move) to the hole.
        std::size_t moved = hash_of(rows_[last].name, rows_[last].source) & mask;
        while ((slots_[moved] & 0xFFFFFFFFu) != last + 1) moved = (moved + 1) & mask;
        slots_[moved] = (slots_[moved] & ~std::uint64_t{0xFFFFFFFFu}) | (hole_row + 1);
        rows_[hole_row] = std::move(rows_[last]);
    }
    rows_.pop_back();
}

// --- policy ----------------------------------------------------------------------------------------------------

void table_counts::tally(state status, bool is_stale, bool awaiting_beat, bool is_overdue, int delta) noexcept {
    auto bump = [delta](std::size_t& n) { n = delta > 0 ? n + 1 : n - 1; };
    switch (status) {
        case state::connected: bump(connected); break;
        case state::disconnected: bump(disconnected); break;
        case state::unknown: bump(unknown); break;
    }
    if (is_stale) bump(stale);
    if (awaiting_beat) bump(awaiting);
    if (is_overdue) bump(overdue);
    if (status == state::connected && !is_stale && !is_overdue) bump(up);
}

// How long a row may go unheard: its fixed interval, or its learned cadence's limit (none until learned).
std::optional<std::chrono::milliseconds> connection_table::limit_of(const entry& e) noexcept {
    if (e.expect_s == 0) return std::nullopt;
    if (e.expect_s != learned_expectation) return std::chrono::seconds(e.expect_s);
    const auto limit = e.expecting->learned.limit_ms();
    return limit > 0 ? std::optional<std::chrono::milliseconds>(limit) : std::nullopt;
}

void connection_table::expect(expectation_lookup lookup) { expectation_of_ = std::move(lookup); }

// The row's overdue deadline from `now`: only a connected row with an interval (known) is judged.
void connection_table::start_expectation(entry& e, time_point now) {
    if (!e.expecting) return;  // no expectation (expect_s 0)
    e.expecting->deadline = unknown_time;
    if (e.status != state::connected) return;
    const auto limit = limit_of(e);
    if (!limit) return;
    e.expecting->deadline = now + *limit;
    next_deadline_ = std::min(next_deadline_, e.expecting->deadline);
}

// A live message or reading: a gap of its cadence, no longer overdue, and the wait begins again.
void connection_table::heard(entry& e, time_point now) {
    if (e.expect_s == learned_expectation)
        e.expecting->learned.sighted(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
    e.overdue = false;
    start_expectation(e, now);
}

// A new row's expectation, asked of the lookup once.
void connection_table::set_expectation(entry& e) {
    if (!expectation_of_) return;
    e.expect_s = expectation_of_(e.name, e.source);
    if (e.expect_s != 0) e.expecting = std::make_unique<expectation_state>();
}

void connection_table::count(const entry& e, int delta) noexcept {
    counts_.tally(e.status, e.stale, e.awaiting_beat, e.overdue, delta);
}

void connection_table::broker_started(time_point at, bool exact) noexcept {
    // An estimate is early by up to a sys_interval: an exact start within that of it is the same start.
    const bool refines = exact && !broker_started_exact_ && broker_started_ &&
                         at > *broker_started_ - std::chrono::seconds(1);
    if (!broker_started_ || at > *broker_started_ || refines) {
        broker_started_ = at;
        broker_started_exact_ = exact;
    }
}

void connection_table::fill_row(const entry& e, client_status& r) const {
    r.client = e.name;
    r.status = e.status;
    r.stale = e.stale;
    r.retained = e.retained;
    r.since = known(e.since);
    r.last_seen = known(e.last_seen);
    r.last_down = known(e.last_down);
    r.restored = e.restored;
    r.epoch = e.has_epoch ? std::optional<std::uint64_t>(e.epoch) : std::nullopt;
    r.heartbeat = e.heartbeat_s > 0 ? std::optional<std::chrono::seconds>(e.heartbeat_s) : std::nullopt;
    r.transitions = e.transitions;
    r.source = e.source;
    r.future_time = e.future_time;
    r.awaiting_beat = e.awaiting_beat;
    const auto last_word = e.last_seen != unknown_time ? e.last_seen : e.first_seen;
    r.unconfirmed = broker_started_ && e.status == state::connected && e.heartbeat_s == 0 &&
                    last_word != unknown_time && last_word < *broker_started_;
    r.clock_skew = e.has_skew ? std::optional<std::chrono::milliseconds>(e.skew_ms) : std::nullopt;
    r.overdue = e.overdue;
    r.expected = limit_of(e);
    r.expected_learned = e.expect_s == learned_expectation;
    r.cadence = std::nullopt;
    if (e.expect_s == learned_expectation && e.expecting->learned.median_ms() > 0)
        r.cadence = std::chrono::milliseconds(e.expecting->learned.median_ms());
    e.text.read({&r.detail, &r.reason, &r.ip, &r.host, &r.meta, &r.raw});
}

client_status connection_table::row(const entry& e) const {
    client_status r;
    fill_row(e, r);
    return r;
}

std::optional<change> connection_table::apply(std::string_view client, const status_record& record, bool retained,
                                              time_point now, std::uint16_t source) {
    change c;
    if (!apply(client, record, retained, now, source, &c)) return std::nullopt;
    return c;
}

// One message judged against the scanner's clock and against the row it updates. apply()'s parts are inline: the
// hottest path of the intake stays one function after inlining.
struct connection_table::message {
    bool future_epoch = false;
    bool future_stamp = false;
    bool has_epoch = false;
    bool has_stamp = false;
    std::uint64_t epoch = 0;
    time_point stamp = unknown_time;
    bool inserted = false;        // the row is new
    bool state_changed = false;   // a new row, or another state
    bool new_connection = false;  // "connected" again with a newer epoch
    bool ended_unseen = false;    // "disconnected" again with a newer epoch: a connection began and ended unseen
    [[nodiscard]] bool future() const noexcept { return future_epoch || future_stamp; }
    [[nodiscard]] bool moved() const noexcept { return state_changed || new_connection || ended_unseen; }
};

inline bool connection_table::apply_clear(std::string_view client, bool retained, time_point now, std::uint16_t source,
                                   change* out) {
    const std::size_t slot = slot_of(client, source, hash_of(client, source));
    if (slots_[slot] == 0) return false;
    if (out) {
        out->kind = change_kind::removed;
        out->live = !retained;
        out->at = now;
        out->previous = rows_[(slots_[slot] & 0xFFFFFFFFu) - 1].status;
    }
    remove_row(slot, out ? &out->current : nullptr);
    return true;
}

inline connection_table::entry& connection_table::row_for(std::string_view client, std::uint16_t source, time_point now,
                                                   bool& inserted) {
    const auto hash = hash_of(client, source);
    std::size_t slot = slot_of(client, source, hash);
    inserted = slots_[slot] == 0;
    if (inserted) {
        if ((rows_.size() + 1) * 2 > slots_.size()) {
            grow();
            slot = slot_of(client, source, hash);
        }
        rows_.emplace_back();
        rows_.back().name.assign(client.data(), client.size());
        rows_.back().first_seen = now;
        rows_.back().source = source;
        set_expectation(rows_.back());
        slots_[slot] = ((hash >> 32) << 32) | rows_.size();
    }
    return rows_[(slots_[slot] & 0xFFFFFFFFu) - 1];
}

// A message from an older connection than the live one (a late will, or a "connected" resent after a broker
// restart), or a death of another session than the live one (Sparkplug: an NDEATH whose bdSeq is not the last
// NBIRTH's): counted and ignored. The live state and its (largest) epoch stay.
inline bool connection_table::is_from_an_older_session(const entry& e, const status_record& record, const message& m) {
    if (e.status != state::connected) return false;
    if (e.has_epoch && m.has_epoch && m.epoch < e.epoch && e.epoch_future == m.future_epoch) {
        if (record.status == state::disconnected) {
            ++stats_.stale_deaths_ignored;
            return true;
        }
        if (record.status == state::connected) {
            ++stats_.stale_connects_ignored;
            return true;
        }
    }
    if (e.has_session && record.status == state::disconnected && record.session && *record.session != e.session) {
        ++stats_.stale_deaths_ignored;
        return true;
    }
    return false;
}

// Since when the row is in its state: the sender's stamp of a "connected" (or of a clean stop), our receive time
// of a live message, else unknown.
inline void connection_table::update_since(entry& e, const status_record& record, bool retained, time_point now,
                                    const message& m) {
    if (m.moved()) {
        if (!m.inserted && m.state_changed) ++e.transitions;
        if (record.status == state::connected && m.has_stamp) e.since = m.stamp;
        else if (!retained) e.since = now;
        else if (record.status == state::disconnected && record.reason == "clean" && m.has_stamp)
            e.since = m.stamp;  // a clean stop's payload is made at the moment of the stop
        else e.since = unknown_time;
        if (record.status == state::disconnected && (m.state_changed || m.ended_unseen)) e.last_down = e.since;
    } else if (e.since == unknown_time && record.status == state::connected && m.has_stamp) {
        e.since = m.stamp;  // first time this connection's start is known
    }
}

// The state, its session and its epoch.
inline void connection_table::update_state(entry& e, const status_record& record, bool retained, const message& m) {
    e.status = record.status;
    e.retained = retained;
    e.restored = false;
    e.future_time = m.future();
    if (record.session) {
        e.session = *record.session;
        e.has_session = true;
    } else if (m.state_changed) {
        e.has_session = false;
    }
    // A future epoch never replaces a believed one of the same state (the forged "connected" above).
    const bool keeps_believed = e.has_epoch && !e.epoch_future && m.future_epoch && !m.state_changed;
    // Nor does an older one of the same state (a late will on a disconnected row): the newest connection's stays.
    const bool keeps_newer = !m.state_changed && e.has_epoch && e.epoch_future == m.future_epoch && m.epoch < e.epoch;
    if (m.has_epoch && !keeps_believed && !keeps_newer) {
        e.epoch = m.epoch;
        e.has_epoch = true;
        e.epoch_future = m.future_epoch;
    } else if (m.state_changed && !m.has_epoch) {
        e.has_epoch = false;  // an epoch of an earlier state must not judge the next messages
    }
}

// When the row was last heard, the sender's clock skew, and its heartbeat deadline.
inline void connection_table::update_liveness(entry& e, const status_record& record, bool retained, time_point now,
                                       const message& m) {
    // A retained status is as old as its stamp: it never moves last_seen back (a restored row may know better).
    if (!retained) e.last_seen = now;
    else if (m.has_stamp && (e.last_seen == unknown_time || m.stamp > e.last_seen)) e.last_seen = m.stamp;
    else if (m.moved()) e.last_seen = m.has_stamp ? m.stamp : unknown_time;
    e.heartbeat_s = record.heartbeat ? static_cast<std::uint32_t>(record.heartbeat->count()) : 0;
    if (!retained && record.timestamp && record.status == state::connected) {
        // A live "connected" is stamped when sent: its stamp against our receive time is the sender's clock skew
        // (measured also beyond the horizon: a scanner whose clock is behind shows every sender ahead).
        const auto skew = std::chrono::duration_cast<std::chrono::milliseconds>(*record.timestamp - now).count();
        e.skew_ms = static_cast<std::int32_t>(std::clamp<std::int64_t>(skew, INT32_MIN, INT32_MAX));
        e.has_skew = true;
    }
    e.stale = false;
    e.awaiting_beat = false;
    e.deadline = unknown_time;
    if (e.heartbeat_s > 0 && e.status == state::connected) {
        const auto interval = std::chrono::seconds(e.heartbeat_s);
        const auto base = e.last_seen != unknown_time ? e.last_seen : now;
        e.deadline = base + 3 * interval;
        if (retained && e.deadline <= now) {
            // Overdue by the sender's clock alone (its time stamp): a dead client, or a clock behind ours. Liveness
            // is judged on our receive times: a live one beats within an interval; stale if none comes in 1.5.
            e.awaiting_beat = true;
            e.deadline = now + interval * 3 / 2;
        }
        next_deadline_ = std::min(next_deadline_, e.deadline);
    }
}

bool connection_table::apply(std::string_view client, const status_record& record, bool retained, time_point now,
                             std::uint16_t source, change* out) {
    ++stats_.messages;
    if (record.cleared) return apply_clear(client, retained, now, source, out);
    if (record.malformed()) ++stats_.malformed;

    // Epochs and time stamps are Unix ms: one beyond our clock plus the skew is forged, broken, or our own clock
    // is behind. A future time stamp is ignored; a future epoch still orders the messages of its side of the
    // horizon (a scanner whose clock is behind sees every epoch there), but never outranks an epoch within it: a
    // forged epoch cannot silence the real client's statuses.
    message m;
    m.future_epoch = record.epoch && beyond_horizon(*record.epoch, now, max_clock_skew_);
    m.future_stamp = record.timestamp && *record.timestamp > now + max_clock_skew_;
    m.has_epoch = record.epoch.has_value();
    m.epoch = record.epoch.value_or(0);
    m.has_stamp = record.timestamp && !m.future_stamp;
    m.stamp = record.timestamp.value_or(unknown_time);
    if (m.future()) ++stats_.future_times;

    entry& e = row_for(client, source, now, m.inserted);
    e.generation = generation_;  // the broker still holds a status for this row
    if (!m.inserted && is_from_an_older_session(e, record, m)) return false;

    const std::optional<state> previous = m.inserted ? std::nullopt : std::optional<state>(e.status);
    const bool was_stale = e.stale;
    const bool was_overdue = e.overdue;
    // A newer epoch in the same state: a new connection ("connected" again), or, "disconnected" again, a whole
    // connection that began and ended unseen (while the scanner reconnected): both are reported, never dropped.
    const bool newer_epoch = !m.inserted && record.status == e.status && m.has_epoch && e.has_epoch &&
                             (e.epoch_future == m.future_epoch ? m.epoch > e.epoch : e.epoch_future);
    m.new_connection = !m.inserted && record.status == state::connected && e.status == state::connected &&
                       m.has_epoch && (!e.has_epoch || newer_epoch);
    m.ended_unseen = newer_epoch && record.status == state::disconnected;
    m.state_changed = m.inserted || e.status != record.status;
    if (!m.inserted) count(e, -1);
    update_since(e, record, retained, now, m);
    update_state(e, record, retained, m);
    update_liveness(e, record, retained, now, m);
    // A retained status read again at a re-sync is the broker's memory, not a sign of life: only a new state
    // starts the expected interval over.
    if (!retained) {
        heard(e, now);
    } else if (m.state_changed) {
        e.overdue = false;
        start_expectation(e, now);
    }
    e.text.assign({record.detail, record.reason, record.ip, record.host, record.meta, record.raw});
    count(e, +1);

    if (!m.moved() && was_stale == e.stale && was_overdue == e.overdue) return false;  // a refresh
    if (out) {
        out->kind = m.state_changed || m.ended_unseen ? (m.inserted ? change_kind::added : change_kind::changed)
                    : m.new_connection              ? change_kind::reconnected
                    : was_stale != e.stale          ? (e.stale ? change_kind::stale : change_kind::fresh)
                                                    : change_kind::back;
        out->previous = previous;
        out->live = !retained;
        out->at = now;
        fill_row(e, out->current);
    }
    return true;
}

void connection_table::restore(const client_status& r, std::optional<time_point> now) {
    const auto hash = hash_of(r.client, r.source);
    if (const auto old = slot_of(r.client, r.source, hash); slots_[old] != 0) remove_row(old, nullptr);
    if ((rows_.size() + 1) * 2 > slots_.size()) grow();
    rows_.emplace_back();
    entry& e = rows_.back();
    e.name = r.client;
    e.source = r.source;
    e.status = r.status;
    e.has_epoch = r.epoch.has_value();
    e.epoch = r.epoch.value_or(0);
    e.retained = r.retained;
    e.restored = true;
    e.future_time = r.future_time;
    e.transitions = r.transitions;
    e.generation = generation_;  // unconfirmed once the next re-sync begins
    e.since = r.since.value_or(unknown_time);
    // A history records changes, not every heartbeat: a connected client's remembered last_seen may be long past
    // its latest message, so it is unknown until a message says. A dead client's last message is final: kept.
    e.last_seen = r.status == state::connected ? unknown_time : r.last_seen.value_or(unknown_time);
    e.last_down = r.last_down.value_or(unknown_time);
    e.heartbeat_s = r.heartbeat ? static_cast<std::uint32_t>(r.heartbeat->count()) : 0;
    e.stale = r.stale;  // no heartbeat deadline: a connected row's last_seen is unknown until its next message
    set_expectation(e);
    // Overdue stays overdue until heard; else the wait for the first sign of life starts now.
    e.overdue = r.overdue && e.expect_s != 0 && e.status == state::connected;
    if (!e.overdue && now) start_expectation(e, *now);
    e.text.assign({r.detail, r.reason, r.ip, r.host, r.meta, r.raw});
    insert_slot(hash, rows_.size() - 1);
    count(e, +1);
}

std::vector<learned_cadence> connection_table::cadences(std::int64_t since_unix_ms) const {
    std::vector<learned_cadence> out;
    for (const auto& e : rows_) {
        if (e.expect_s != learned_expectation) continue;
        const auto& learned = e.expecting->learned;
        if (learned.count == 0 || learned.last_ms < since_unix_ms) continue;
        out.push_back(learned_cadence{{}, e.name, e.source, learned});
    }
    return out;
}

bool connection_table::resume_cadence(std::string_view client, std::uint16_t source, const cadence& learned,
                                      time_point now) {
    const std::size_t slot = slot_of(client, source, hash_of(client, source));
    if (slots_[slot] == 0) return false;
    entry& e = rows_[(slots_[slot] & 0xFFFFFFFFu) - 1];
    if (e.expect_s != learned_expectation || e.expecting->learned.count > 0) return false;
    const auto last_ms = e.expecting->learned.last_ms;  // a message heard in this run stays the start of a gap
    e.expecting->learned = learned;
    e.expecting->learned.last_ms = last_ms;
    if (!e.overdue && e.expecting->deadline == unknown_time) start_expectation(e, now);
    return true;
}

sighting connection_table::seen(std::string_view client, std::uint16_t source, time_point now, change* out) {
    const std::size_t slot = slot_of(client, source, hash_of(client, source));
    if (slots_[slot] == 0) return sighting::unknown;
    entry& e = rows_[(slots_[slot] & 0xFFFFFFFFu) - 1];
    if (e.last_seen == unknown_time || now > e.last_seen) e.last_seen = now;
    if (e.expect_s == 0 && (e.heartbeat_s == 0 || e.status != state::connected)) return sighting::seen;
    const bool was_stale = e.stale;
    const bool was_overdue = e.overdue;
    count(e, -1);
    if (e.heartbeat_s != 0 && e.status == state::connected) {
        e.stale = false;
        e.awaiting_beat = false;
        e.deadline = e.last_seen + 3 * std::chrono::seconds(e.heartbeat_s);
        next_deadline_ = std::min(next_deadline_, e.deadline);
    }
    heard(e, now);
    count(e, +1);
    if (!was_stale && !was_overdue) return sighting::seen;
    if (out) {
        out->kind = was_stale ? change_kind::fresh : change_kind::back;
        out->previous = e.status;
        out->live = true;
        out->at = now;
        fill_row(e, out->current);
    }
    return sighting::freshened;
}

std::vector<change> connection_table::expire(time_point now) {
    std::vector<change> out;
    if (now < next_deadline_) return out;
    next_deadline_ = time_point::max();
    const auto judge = [&](entry& e, time_point deadline, bool entry::*flag, change_kind kind) {
        if (deadline == unknown_time || e.*flag) return;
        if (deadline > now) {
            next_deadline_ = std::min(next_deadline_, deadline);
            return;
        }
        count(e, -1);
        e.*flag = true;
        if (kind == change_kind::stale) e.awaiting_beat = false;
        count(e, +1);
        out.push_back(change{kind, e.status, row(e), true, now});
    };
    for (auto& e : rows_) {
        judge(e, e.deadline, &entry::stale, change_kind::stale);
        if (e.expecting) judge(e, e.expecting->deadline, &entry::overdue, change_kind::overdue);
    }
    return out;
}

void connection_table::begin_resync() noexcept {
    ++generation_;
    resyncing_ = true;
}

std::vector<change> connection_table::finish_resync(time_point now) {
    std::vector<change> out;
    if (end_resync(now) > 0) take_removed(removed_pending(), out);
    return out;
}

std::size_t connection_table::end_resync(time_point now) {
    if (!resyncing_) return 0;
    resyncing_ = false;
    std::size_t leaving = 0;
    for (const auto& e : rows_) leaving += e.generation != generation_;
    if (leaving == 0) return 0;
    if (removed_.empty() && leaving * 2 >= rows_.size()) {
        keep_confirmed_rows(leaving);
    } else {
        remove_unconfirmed_rows(leaving);
    }
    removed_ends_.emplace_back(removed_.size(), now);
    return leaving;
}

// Most rows leave (a broker that lost its retained store): the table's own storage becomes the removed rows', and
// only the rows that stay are copied out, so the memory never holds both in full.
void connection_table::keep_confirmed_rows(std::size_t leaving) {
    std::vector<entry> staying;
    staying.reserve(rows_.size() - leaving);
    std::size_t w = 0;
    for (auto& e : rows_) {
        if (e.generation == generation_) {
            staying.push_back(std::move(e));
            continue;
        }
        count(e, -1);
        if (&rows_[w] != &e) rows_[w] = std::move(e);
        ++w;
    }
    rows_.resize(w);
    removed_ = std::move(rows_);
    rows_ = std::move(staying);
    std::fill(slots_.begin(), slots_.end(), 0);
    for (std::size_t r = 0; r < rows_.size(); ++r) insert_slot(hash_of(rows_[r].name, rows_[r].source), r);
}

void connection_table::remove_unconfirmed_rows(std::size_t leaving) {
    removed_.reserve(removed_.size() + leaving);  // one allocation: a million rows must not be copied as it grows
    // Removing a row moves the last one into its place: walk backwards so every row is looked at once.
    for (std::size_t r = rows_.size(); r-- > 0;) {
        if (rows_[r].generation == generation_) continue;
        const entry& e = rows_[r];
        const std::size_t slot = slot_of(e.name, e.source, hash_of(e.name, e.source));
        remove_row(slot, nullptr, &removed_.emplace_back());
    }
}

std::size_t connection_table::take_removed(std::size_t max, std::vector<change>& out) {
    std::size_t taken = 0;
    for (; taken < max && removed_taken_ < removed_.size(); ++taken, ++removed_taken_) {
        while (removed_ends_.front().first <= removed_taken_) removed_ends_.erase(removed_ends_.begin());
        const entry& e = removed_[removed_taken_];
        change& c = out.emplace_back(change{change_kind::removed, e.status, {}, false, removed_ends_.front().second});
        fill_row(e, c.current);
    }
    if (removed_taken_ == removed_.size()) drop_removed();
    return taken;
}

std::size_t connection_table::removed_pending() const noexcept { return removed_.size() - removed_taken_; }

void connection_table::drop_removed() noexcept {
    std::vector<entry>().swap(removed_);  // the memory goes back now, not at the next removal
    removed_taken_ = 0;
    removed_ends_.clear();
}

std::vector<std::pair<std::string, std::uint16_t>> connection_table::unconfirmed() const {
    std::vector<std::pair<std::string, std::uint16_t>> out;
    if (!resyncing_) return out;
    for (const auto& e : rows_)
        if (e.generation != generation_) out.emplace_back(e.name, e.source);
    return out;
}

std::optional<client_status> connection_table::erase(std::string_view client, std::uint16_t source) {
    const std::size_t slot = slot_of(client, source, hash_of(client, source));
    if (slots_[slot] == 0) return std::nullopt;
    client_status last;
    remove_row(slot, &last);
    return last;
}

std::optional<client_status> connection_table::find(std::string_view client, std::uint16_t source) const {
    const std::size_t slot = slot_of(client, source, hash_of(client, source));
    if (slots_[slot] == 0) return std::nullopt;
    return row(rows_[(slots_[slot] & 0xFFFFFFFFu) - 1]);
}

bool connection_table::find(std::string_view client, std::uint16_t source, client_status& out) const {
    const std::size_t slot = slot_of(client, source, hash_of(client, source));
    if (slots_[slot] == 0) return false;
    fill_row(rows_[(slots_[slot] & 0xFFFFFFFFu) - 1], out);
    return true;
}

std::vector<std::pair<std::string, std::uint16_t>> connection_table::sorted_keys() const {
    std::vector<std::pair<std::string, std::uint16_t>> keys;
    const auto order = sorted_rows(SIZE_MAX);
    keys.reserve(order.size());
    for (const auto r : order) keys.emplace_back(rows_[r].name, rows_[r].source);
    return keys;
}

namespace {
// row_order::state's rank of a row: the problems first.
std::uint8_t problem_rank(state status, bool stale, bool overdue) noexcept {
    if (status == state::disconnected) return 0;
    if (overdue) return 1;
    if (stale) return 2;
    return status == state::unknown ? 3 : 4;
}
}  // namespace

bool row_before(const client_status& a, const client_status& b, row_order order) noexcept {
    if (order == row_order::state) {
        const auto ra = problem_rank(a.status, a.stale, a.overdue);
        const auto rb = problem_rank(b.status, b.stale, b.overdue);
        if (ra != rb) return ra < rb;
    } else if (order == row_order::since && a.since != b.since) {
        if (!a.since || !b.since) return a.since.has_value();  // an unknown time last
        return *a.since > *b.since;                           // the latest change first
    }
    return a.client != b.client ? a.client < b.client : a.source < b.source;
}

client_status unknown_since(client_status row, std::optional<time_point> since, std::string_view why) {
    std::string was = std::string(why) + "; last known " + std::string(to_string(row.status)) +
                      (row.overdue ? " (overdue)" : row.stale ? " (stale)" : "");
    row.detail = row.detail.empty() ? std::move(was) : std::move(was) + "; " + row.detail;
    row.status = state::unknown;
    row.since = since;
    row.stale = row.overdue = row.awaiting_beat = row.unconfirmed = false;
    row.reason.clear();
    return row;
}

std::vector<std::uint32_t> connection_table::sorted_rows(std::size_t limit, row_order by) const {
    // Sort (key, row) pairs, not rows. The key is the 8 bytes of the name that follow the prefix every name shares
    // (fleets are named like sensor-000123), big-endian, so that most comparisons are one integer compare that
    // never touches the rows; equal keys fall back to comparing the whole names.
    const std::string empty;
    const std::string& first = rows_.empty() ? empty : rows_.front().name;
    std::size_t common = first.size();
    for (const auto& e : rows_) {
        const std::size_t shorter = std::min(common, e.name.size());
        std::size_t i = 0;
        while (i < shorter && e.name[i] == first[i]) ++i;
        common = i;
    }
    // row_order::state puts a rank before the name's key; row_order::since has the change's time (newest first) as
    // its key instead, and names only among equal times.
    struct sort_key {
        std::uint8_t rank;
        std::uint64_t key;
        std::uint32_t row;
    };
    std::vector<sort_key> order(rows_.size());
    for (std::uint32_t r = 0; r < order.size(); ++r) {
        const auto& e = rows_[r];
        std::uint64_t key = 0;
        if (by == row_order::since) {
            const auto ms = e.since == unknown_time ? 0 : e.since.time_since_epoch().count();
            key = ~static_cast<std::uint64_t>(std::max<std::int64_t>(0, ms));
        } else {
            for (std::size_t i = 0; i < 8; ++i) {
                const std::size_t at = common + i;
                key = key << 8 | (at < e.name.size() ? static_cast<unsigned char>(e.name[at]) : 0U);
            }
        }
        order[r] = {by == row_order::state ? problem_rank(e.status, e.stale, e.overdue) : std::uint8_t{0}, key, r};
    }
    const auto before = [this](const sort_key& a, const sort_key& b) {
        if (a.rank != b.rank) return a.rank < b.rank;
        if (a.key != b.key) return a.key < b.key;
        const entry& x = rows_[a.row];
        const entry& y = rows_[b.row];
        return x.name != y.name ? x.name < y.name : x.source < y.source;
    };
    if (limit < order.size()) {
        std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(limit), order.end(), before);
        order.resize(limit);
    } else {
        std::sort(order.begin(), order.end(), before);
    }
    std::vector<std::uint32_t> rows(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) rows[i] = order[i].row;
    return rows;
}

std::vector<client_status> connection_table::snapshot(std::size_t limit, row_order by) const {
    const auto order = sorted_rows(limit, by);
    std::vector<client_status> rows(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) fill_row(rows_[order[i]], rows[i]);
    return rows;
}

void connection_table::for_each_sorted(const std::function<void(const client_status&)>& visit) const {
    client_status row;  // one row, refilled: its strings' storage is reused
    for (const auto r : sorted_rows(SIZE_MAX)) {
        fill_row(rows_[r], row);
        visit(row);
    }
}

void connection_table::for_each(const std::function<void(const client_status&)>& visit) const {
    client_status row;  // one row, refilled, as in for_each_sorted
    for (const auto& e : rows_) {
        fill_row(e, row);
        visit(row);
    }
}

}  // namespace mqtt_presence
