#pragma once
// The connected-clients table: every policy about what a status message means for a client lives here.
// Pure and single-threaded: no I/O, no locks, no clock of its own (every call gets `now`). The scanner wraps it
// in a mutex; tests and benchmarks use it directly.
//
// Policies:
//  - epochs: a "disconnected" whose epoch is older than the current "connected" one is a late will of an earlier
//    connection; it is ignored and counted (stale_deaths_ignored). A "connected" older than the current one (Paho
//    resending an in-flight message after a broker restart) is ignored and counted too (stale_connects_ignored):
//    the table keeps the largest epoch of a live client.
//  - sessions: a "disconnected" with a session (Sparkplug's bdSeq) other than the live connection's is ignored and
//    counted as a late will too (stale_deaths_ignored).
//  - clock skew: epochs and time stamps are Unix times in ms, so one beyond now + max_clock_skew is forged or from
//    a broken clock. It is dropped from the message (it never outranks a real epoch, never becomes a `since`),
//    counted (future_times) and flagged on the row (future_time).
//  - an empty (cleared) payload removes the client.
//  - heartbeat: a connected client that promised a heartbeat is marked stale after three missed intervals
//    (expire(), and at apply() for a status that is already overdue when it arrives); a fresh message clears it.
//  - liveness: a client without a heartbeat relies on its will alone (will_only()): if it dies while the broker
//    is down, the will is lost and nothing will ever say so. A heartbeat makes it go stale instead.
//  - re-sync: begin_resync() at every (re)subscribe, finish_resync() once the retained burst is known complete;
//    rows the broker did not deliver again in between are removed (cleared while the scanner was cut off, or lost
//    in a broker restart) and reported as `removed`.
//  - since: the payload's ts for a "connected", the receive time of a live transition, a clean stop's ts, and
//    unknown (nullopt) for a retained state without a time.
//  - counts per state, per-client transition count, malformed payload count. A malformed payload is never dropped:
//    the client is shown with state unknown and the reason.
//  - expected intervals (expect()): a connected client unheard (no status, no activity) for longer than its
//    expectation is `overdue` (expire()); a live message or reading makes it `back`. A retained status read again
//    at a re-sync is not a sign of life. "auto" learns the client's cadence from its live messages (cadence).
//  - a client is its name within one topic scheme (`source`): "kitchen" under homie/+/$state and "kitchen" under
//    tele/+/LWT are two devices and two rows, never one row flipping between two states.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <mqtt_presence/expectation.hpp>
#include <mqtt_presence/status_record.hpp>

namespace mqtt_presence {

/// One client's row, as a snapshot or a change reports it.
struct client_status {
    std::string client;
    state status = state::unknown;
    bool stale = false;
    bool retained = false;   ///< learned from the retained store at subscribe time, not seen live
    std::optional<time_point> since;      ///< when the current state began; nullopt when unknowable
    std::optional<time_point> last_seen;  ///< last message from the client; nullopt for a retained one without ts
    std::optional<time_point> last_down;  ///< when its latest disconnection began, if that time is known
    std::optional<std::uint64_t> epoch;
    std::optional<std::chrono::seconds> heartbeat;
    std::uint32_t transitions = 0;  ///< state changes seen since the client entered the table
    std::uint16_t source = 0;       ///< which topic scheme the status came from (the scanner's index)
    std::string topic;  ///< the status topic; filled by the scanner as rows leave it (the table does not store it)
    /// The broker's name (scanner_options::broker_name), filled by the scanner as rows leave it; empty for a scanner
    /// whose broker has no name. With several brokers in one view, the same name on two brokers is two clients.
    std::string broker;
    /// The groups it is in (scanner_options::groups), filled by the scanner as rows leave it; empty without groups.
    std::vector<std::string> groups;
    /// The last payload's epoch or time stamp lay beyond now + max_clock_skew (forged or a broken clock); ignored.
    bool future_time = false;
    /// Restored from a history (connection_table::restore) and not confirmed by a message since.
    bool restored = false;
    /// A retained "connected" whose heartbeat is overdue by the sender's own time stamp: a dead client or a clock
    /// behind ours. Not stale yet: liveness is judged on the scanner's receive times, so it is stale if no live
    /// message comes within 1.5 heartbeat intervals, fresh when one does.
    bool awaiting_beat = false;
    /// Will-only and "connected", but its last word (a live message, or the time stamp of a retained one; the
    /// scanner's first sight of it when neither is known) predates the broker's last start: if it died while the
    /// broker was down, no will was ever sent. Confirmed by its next message (a live client re-announces when it
    /// reconnects). See connection_table::broker_started.
    bool unconfirmed = false;
    /// The sender's clock minus the scanner's, measured on its last live "connected" (stamped when sent); nullopt
    /// until one arrives. Reported, never a reason to call a client stale.
    std::optional<std::chrono::milliseconds> clock_skew;
    /// Connected, but unheard (no status, no activity) for longer than its expected interval.
    bool overdue = false;
    /// How long it may go unheard before it is overdue: the interval it is expected at, or the limit learned from
    /// its cadence; nullopt without an expectation (or before enough of its messages to learn one).
    std::optional<std::chrono::milliseconds> expected;
    bool expected_learned = false;  ///< its expectation is "auto": `expected` comes from its own cadence
    std::optional<std::chrono::milliseconds> cadence;  ///< "auto": the median gap between its messages, once known
    std::string detail;  ///< Homie/smarthome detail, or why the payload was unreadable
    std::string reason;  ///< "clean" / "lost" for a JSON "disconnected"
    std::string ip;
    std::string host;
    std::string meta;    ///< extra JSON members as a JSON object text, or empty
    std::string raw;     ///< printable start of an unreadable payload

    /// Connected without a heartbeat: only the will can say it died, and a will is lost if the client dies while
    /// the broker is down. Such a row is "connected" on the client's word alone.
    [[nodiscard]] bool will_only() const noexcept { return !heartbeat.has_value(); }
    /// Connected by its word, but not heard as it should be: its heartbeats stopped (stale) or it is overdue.
    [[nodiscard]] bool unheard() const noexcept { return status == state::connected && (stale || overdue); }
    /// Up: connected and heard as it should be. What mqtt_presence_up, Home Assistant's ON and the alerts' "back"
    /// all mean.
    [[nodiscard]] bool up() const noexcept { return status == state::connected && !stale && !overdue; }
};

struct table_counts {
    std::size_t connected = 0;
    std::size_t disconnected = 0;
    std::size_t unknown = 0;
    std::size_t stale = 0;  ///< connected clients whose heartbeat is overdue (also counted as connected)
    std::size_t awaiting = 0;  ///< connected clients with client_status::awaiting_beat (also counted as connected)
    std::size_t overdue = 0;   ///< connected clients unheard for longer than expected (also counted as connected)
    std::size_t up = 0;  ///< connected clients neither stale nor overdue: the healthy ones (client_status::up())
    [[nodiscard]] std::size_t total() const noexcept { return connected + disconnected + unknown; }
    /// A row of this state counted in (delta 1) or out (delta -1).
    void tally(state status, bool is_stale, bool awaiting_beat, bool is_overdue, int delta = 1) noexcept;
    void tally(const client_status& row, int delta = 1) noexcept {
        tally(row.status, row.stale, row.awaiting_beat, row.overdue, delta);
    }
    /// Adds another table's counts (a view of several brokers).
    table_counts& operator+=(const table_counts& o) noexcept {
        connected += o.connected;
        disconnected += o.disconnected;
        unknown += o.unknown;
        stale += o.stale;
        awaiting += o.awaiting;
        overdue += o.overdue;
        up += o.up;
        return *this;
    }
};

struct table_stats {
    std::uint64_t messages = 0;              ///< every apply()
    std::uint64_t malformed = 0;             ///< payloads decoded as state unknown
    std::uint64_t stale_deaths_ignored = 0;  ///< "disconnected" with an epoch older than the current connection
    std::uint64_t stale_connects_ignored = 0;  ///< "connected" with an epoch older than the current connection
    std::uint64_t future_times = 0;  ///< messages whose epoch or ts lay beyond now + max_clock_skew
    /// Messages under a status filter whose topic fits no template (a deeper topic, an empty level): counted by the
    /// scanner, never by the table.
    std::uint64_t unmatched = 0;
    /// Live messages on activity topics (readings, telemetry) of a client in the table: counted by the scanner.
    std::uint64_t activity = 0;
    /// Live messages on activity topics of a name the table has no row for (no status read yet, or not a client:
    /// "zigbee2mqtt/bridge/state" under "zigbee2mqtt/{client+}"): counted by the scanner.
    std::uint64_t activity_unknown = 0;
    /// Statuses and readings left out by scanner_options::exclude: counted by the scanner.
    std::uint64_t excluded = 0;
    /// Adds another table's figures (a view of several brokers).
    table_stats& operator+=(const table_stats& o) noexcept {
        messages += o.messages;
        malformed += o.malformed;
        stale_deaths_ignored += o.stale_deaths_ignored;
        stale_connects_ignored += o.stale_connects_ignored;
        future_times += o.future_times;
        unmatched += o.unmatched;
        activity += o.activity;
        activity_unknown += o.activity_unknown;
        excluded += o.excluded;
        return *this;
    }
};

/// The order of a snapshot's rows.
enum class row_order : std::uint8_t {
    name,   ///< by client name, then scheme (every machine format, and the default)
    state,  ///< problems first: disconnected, overdue, stale, unknown, then connected; by name within each
    since,  ///< the latest change first (an unknown since last); by name among equals
};

/// Whether row `a` comes before row `b` in `order`: the order snapshot() gives within one table, for a view that
/// merges the rows of several (one table per broker). Rows equal by it are the same client of different tables.
[[nodiscard]] bool row_before(const client_status& a, const client_status& b, row_order order) noexcept;

/// A row as a view of several brokers shows it while its broker cannot be heard (scanner_status::blind): its state
/// unknown since the scanner last heard from the broker (nullopt: never), neither alive nor dead; `why` and what it
/// was then lead its detail. Stale, overdue and the other judgements of the old state are cleared.
[[nodiscard]] client_status unknown_since(client_status row, std::optional<time_point> since, std::string_view why);

/// What seen() made of a sign of life.
enum class sighting : std::uint8_t {
    unknown,    ///< no row of that name in that scheme
    seen,       ///< its last_seen moved (or stood: an older time)
    freshened,  ///< and a stale or overdue row is fresh again: a change
};

enum class change_kind : std::uint8_t {
    added,        ///< first status of a client
    changed,      ///< its state changed
    reconnected,  ///< still connected, but a new connection (newer epoch)
    stale,        ///< heartbeat overdue (from expire())
    fresh,        ///< a stale client was heard from again
    removed,      ///< cleared (empty payload), erased, or not re-delivered at a re-sync
    overdue,      ///< unheard for longer than its expected interval (from expire())
    back,         ///< an overdue client was heard from again
};
[[nodiscard]] std::string_view to_string(change_kind k) noexcept;

struct change {
    change_kind kind = change_kind::added;
    std::optional<state> previous;  ///< state before the change; nullopt for `added`
    client_status current;          ///< the row after the change (for `removed`: the last row)
    /// Seen as it happened. False when learned after the fact: a retained status read at (re)subscribe that differs
    /// from the row (the change happened while nobody watched), or a row the re-sync removed.
    bool live = true;
    time_point at{};  ///< when the table made the change: its message's receive time, or when it was judged
};

class connection_table {
public:
    /// Publishers' clocks may run this far ahead of ours before their epochs and time stamps are disbelieved.
    static constexpr std::chrono::milliseconds default_max_clock_skew = std::chrono::minutes(10);

    explicit connection_table(std::chrono::milliseconds max_clock_skew = default_max_clock_skew);
    /// An epoch or time stamp (Unix ms) beyond `now` plus the skew is forged, from a broken clock, or ours is behind:
    /// the rule the table and the publisher's self-heal share.
    [[nodiscard]] static bool beyond_horizon(std::uint64_t unix_ms, time_point now,
                                             std::chrono::milliseconds max_clock_skew = default_max_clock_skew) noexcept;
    ~connection_table() noexcept;
    connection_table(connection_table&&) noexcept;
    connection_table& operator=(connection_table&&) noexcept;

    /// Applies one status message of `client` from topic scheme `source`. `retained`: the broker delivered it from
    /// its retained store. Returns what changed in the table, if anything worth reporting (a heartbeat refresh is
    /// not).
    std::optional<change> apply(std::string_view client, const status_record& record, bool retained,
                                time_point now, std::uint16_t source = 0);
    /// The same, returning whether something changed and writing the change into `*out` unless `out` is null
    /// (nobody listens). Reusing one `out` for many messages reuses its strings' storage: the scanner's
    /// per-message path. `*out` is unspecified after false.
    bool apply(std::string_view client, const status_record& record, bool retained, time_point now,
               std::uint16_t source, change* out);

    /// A live message on one of the client's activity topics (its readings, its telemetry) at `now`: it is seen.
    /// Its last_seen moves, a heartbeat's deadline starts again, and a stale row is fresh (the change into `*out`,
    /// unless null). Only the time is kept, never the payload. A name with no row in scheme `source` is not added:
    /// a reading says nothing about the client's connection.
    sighting seen(std::string_view client, std::uint16_t source, time_point now, change* out);

    /// What a client's expected interval is, asked once per row as it enters the table (a status or restore()):
    /// seconds, 0 for none, or `learned_expectation` for "auto". Set before the first row; none by default.
    using expectation_lookup = std::function<std::uint32_t(std::string_view client, std::uint16_t source)>;
    static constexpr std::uint32_t learned_expectation = UINT32_MAX;
    void expect(expectation_lookup lookup);

    /// Marks connected clients whose heartbeat is more than three intervals overdue as stale, and those unheard for
    /// longer than their expected interval as overdue.
    /// Cheap when nothing is due (remembers the next deadline).
    std::vector<change> expire(time_point now);

    /// Starts a re-sync (the status filters were just subscribed again): rows are marked unconfirmed until a
    /// message about them arrives.
    void begin_resync() noexcept;
    /// When the broker last started (from its uptime): will-only "connected" rows whose last word predates it are
    /// client_status::unconfirmed. Only a later start moves it, or an exact one an estimate. `exact`: said to the
    /// second (a live uptime), else an early estimate (a retained one).
    void broker_started(time_point at, bool exact = true) noexcept;
    [[nodiscard]] std::optional<time_point> broker_started() const noexcept { return broker_started_; }
    [[nodiscard]] bool broker_started_exact() const noexcept { return broker_started_exact_; }
    /// Ends the re-sync begun last (call once the retained burst is known complete): removes the rows no message
    /// confirmed since begin_resync() and returns them as `removed` changes (at `now`). Nothing without a
    /// begin_resync().
    std::vector<change> finish_resync(time_point now);
    /// finish_resync() that keeps the removals in the table as rows (compact) until take_removed() hands them out:
    /// a million removed rows after a broker lost its retained store are never a million changes held at once.
    /// The rows leave the table (its lookups, counts and snapshots) now. Returns how many.
    std::size_t end_resync(time_point now);
    /// Up to `max` of the oldest removals end_resync() kept, appended to `out` as `removed` changes (not live, at
    /// their re-sync's end). Returns how many.
    std::size_t take_removed(std::size_t max, std::vector<change>& out);
    /// Removals end_resync() kept that take_removed() has not handed out.
    [[nodiscard]] std::size_t removed_pending() const noexcept;
    /// Forgets the removals kept (nobody listens for changes).
    void drop_removed() noexcept;

    /// Puts back a row remembered from an earlier run (a history store), before the first sync: its state, since,
    /// last_down, epoch and transitions stand until a message about the client confirms or changes them; last_seen
    /// only for a client that is not connected (a history keeps changes, not every heartbeat).
    /// A retained status that agrees with the row keeps its `since`; one that disagrees is a change with live=false;
    /// a row the next re-sync does not confirm is removed. Replaces a row of the same (client, source).
    /// An overdue row stays overdue until heard; for others with an expected interval the wait for a first sign of
    /// life begins at `now` (nullopt: not until their first message).
    void restore(const client_status& row, std::optional<time_point> now = std::nullopt);

    /// The cadences of the "auto" rows that learned at least one gap and heard a live message at or after
    /// `since_unix_ms` (0: all of them): what a history keeps. Names and schemes filled, topics left empty.
    [[nodiscard]] std::vector<learned_cadence> cadences(std::int64_t since_unix_ms = 0) const;
    /// Puts back a cadence learned in an earlier run into the row of (client, source) if that row is "auto" and has
    /// learned no gap of its own yet; a connected row's wait begins at `now` by it. False if not taken.
    bool resume_cadence(std::string_view client, std::uint16_t source, const cadence& learned, time_point now);

    /// During a re-sync, the (name, scheme) of the rows no message has confirmed yet.
    [[nodiscard]] std::vector<std::pair<std::string, std::uint16_t>> unconfirmed() const;

    /// Removes a client (its name within scheme `source`); returns its last row, if it was there.
    std::optional<client_status> erase(std::string_view client, std::uint16_t source = 0);

    [[nodiscard]] std::optional<client_status> find(std::string_view client, std::uint16_t source = 0) const;
    /// find() into a reused row (its strings keep their storage); false if the client is not in the table.
    bool find(std::string_view client, std::uint16_t source, client_status& out) const;
    /// The (name, scheme) of every row in snapshot order: the keys to read a large table a chunk at a time.
    [[nodiscard]] std::vector<std::pair<std::string, std::uint16_t>> sorted_keys() const;
    /// All rows, sorted by client name (then scheme) or in `order`; or only the first `limit` of them (a screenful of
    /// a large table).
    [[nodiscard]] std::vector<client_status> snapshot(std::size_t limit = SIZE_MAX,
                                                      row_order order = row_order::name) const;
    /// Visits every row without copying them all first (unordered).
    void for_each(const std::function<void(const client_status&)>& visit) const;
    /// Visits every row in snapshot order without copying them all first.
    void for_each_sorted(const std::function<void(const client_status&)>& visit) const;

    [[nodiscard]] table_counts counts() const noexcept { return counts_; }
    [[nodiscard]] table_stats stats() const noexcept { return stats_; }
    [[nodiscard]] std::size_t size() const noexcept;
    void reserve(std::size_t clients);

private:
    struct entry;  // one client: its name and compact state, stored densely in rows_
    struct message;  // one message judged against the clock and the row (connection_table.cpp)

    bool apply_clear(std::string_view client, bool retained, time_point now, std::uint16_t source, change* out);
    entry& row_for(std::string_view client, std::uint16_t source, time_point now, bool& inserted);
    bool is_from_an_older_session(const entry& e, const status_record& record, const message& m);
    static void update_since(entry& e, const status_record& record, bool retained, time_point now, const message& m);
    static void update_state(entry& e, const status_record& record, bool retained, const message& m);
    void update_liveness(entry& e, const status_record& record, bool retained, time_point now, const message& m);
    [[nodiscard]] static std::optional<std::chrono::milliseconds> limit_of(const entry& e) noexcept;
    void set_expectation(entry& e);
    void start_expectation(entry& e, time_point now);
    void heard(entry& e, time_point now);

    [[nodiscard]] std::size_t slot_of(std::string_view client, std::uint16_t source, std::uint64_t hash) const noexcept;
    std::size_t insert_slot(std::uint64_t hash, std::size_t row);
    void grow();
    void remove_row(std::size_t slot, client_status* last_row, entry* taken = nullptr);
    void keep_confirmed_rows(std::size_t leaving);      // end_resync(), when most rows leave
    void remove_unconfirmed_rows(std::size_t leaving);  // end_resync(), when few do
    void count(const entry& e, int delta) noexcept;
    [[nodiscard]] std::vector<std::uint32_t> sorted_rows(std::size_t limit,
                                                         row_order order = row_order::name) const;  // row indices
    [[nodiscard]] client_status row(const entry& e) const;
    void fill_row(const entry& e, client_status& out) const;

    // An open-addressing index (linear probing, load <= 1/2) over a dense vector of entries: two cache misses a
    // lookup at a million clients, where std::unordered_map's node chain costs three.
    std::vector<entry> rows_;
    std::vector<std::uint64_t> slots_;  // 0: empty; else hash's high 32 bits << 32 | (row index + 1)
    table_counts counts_;
    table_stats stats_;
    time_point next_deadline_ = time_point::max();
    std::chrono::milliseconds max_clock_skew_;
    std::optional<time_point> broker_started_;
    bool broker_started_exact_ = false;
    std::uint32_t generation_ = 0;  // begin_resync() count: a row's generation says which sync confirmed it
    bool resyncing_ = false;
    // Rows end_resync() removed, oldest first, until take_removed() hands them out; each re-sync's end time by the
    // index its rows end at.
    std::vector<entry> removed_;
    std::size_t removed_taken_ = 0;
    std::vector<std::pair<std::size_t, time_point>> removed_ends_;
    expectation_lookup expectation_of_;
};

}  // namespace mqtt_presence
