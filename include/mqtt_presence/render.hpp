#pragma once
// Renderers: snapshots and changes to text (table, JSON, NDJSON, CSV, Prometheus). Pure: no MQTT.
//
// JSON snapshot shape (stable):
// {"clients":[{"client","state","since","last_seen","retained","stale","liveness",["awaiting_beat",]"clock_skew_s",
//               "epoch","ip","detail","topic","meta"}...],
//  "counts":{"connected","disconnected","unknown","stale"},
//  "stats":{"messages","malformed","stale_deaths_ignored","stale_connects_ignored","future_times","unmatched",
//           "activity","activity_unknown"},
//  "scanner":{"connected","since","sync","broker_dropped","broker_clients","unmatched_examples"}}
//                                                               (scanner: only when a scanner fed the table)
// state is "connected" | "disconnected" | "unknown"; times are ISO 8601 UTC or null when unknown; epoch, ip and
// detail are null when absent; meta is the client's extra JSON members (an object) or null. clock_skew_s is the
// sender's clock minus the scanner's (seconds, from its last live "connected"), null until measured; awaiting_beat
// (only when true) marks a retained heartbeat overdue by the sender's clock, judged within 1.5 intervals.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <map>
#include <ostream>
#include <string>
#include <unordered_set>
#include <string_view>
#include <vector>

#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/scanner_status.hpp>

namespace mqtt_presence {

/// A sender's clock skew at least this large is said in a row's detail (the table, the JSON's detail).
constexpr std::chrono::milliseconds clock_skew_shown{2000};

/// What a renderer shows: the rows (each with its topic) and the table's counters.
struct scan_result {
    std::vector<client_status> clients;
    table_counts counts;
    table_stats stats;
    std::optional<scanner_status> scanner;  ///< the scanner's own state; absent for a table not fed by a scanner
};

[[nodiscard]] std::string format_iso8601(time_point t);
/// Text from the network made harmless on a terminal: control, C1, bidi and zero-width characters and invalid
/// UTF-8 shown escaped, cut at about `limit` bytes. Every human output uses it.
[[nodiscard]] std::string terminal_safe(std::string_view text, std::size_t limit = 160);

/// terminal_safe() text cut or padded to exactly `cells` terminal cells ("~" marks a cut): a table column.
[[nodiscard]] std::string fit_cell(std::string_view text, std::size_t cells);
/// Each line of a frame of terminal_safe() text (colour sequences allowed) cut to `columns` terminal cells, "…" where
/// one was cut: a frame takes as many lines as it has, and a person sees that a line goes on.
[[nodiscard]] std::string fit_to_width(std::string_view frame, std::size_t columns);
/// A CSV field that is harmless in a terminal and a spreadsheet: escaped as terminal_safe() does, a leading
/// = + - @ behind an apostrophe (a formula otherwise), quoted when it holds a comma or a quote.
[[nodiscard]] std::string csv_field(const std::string& raw);

/// A Prometheus label value: escaped as terminal_safe() does, then backslash, quote and newline per the text format.
[[nodiscard]] std::string prometheus_label(const std::string& raw);

/// One client's `mqtt_presence_up{client="…",topic="…"} 1|0` line (connected and not stale: 1).
[[nodiscard]] std::string prometheus_up_sample(const client_status& c);
/// A time as Prometheus seconds since the epoch, to the millisecond ("1796582805.177").
[[nodiscard]] std::string prometheus_seconds(time_point t);
/// The three above, appended to `out`: a plain name (printable ASCII, nothing to escape) costs no allocation, which
/// counts at 100,000 clients a scrape.
void append_prometheus_label(std::string& out, std::string_view raw);
void append_prometheus_up_sample(std::string& out, const client_status& c);
void append_prometheus_seconds(std::string& out, time_point t);
/// The families after the per-client ones, the same in `once --format prometheus` and the service's /metrics:
/// clients by state, stale clients, the message counters, and (given a scanner) its connection, sync and the
/// broker's client count.
[[nodiscard]] std::string render_prometheus_summary(const table_counts& counts, const table_stats& stats,
                                                    const scanner_status* scanner);

/// The machine formats of a snapshot.
enum class snapshot_format : std::uint8_t { json, ndjson, csv, prometheus };

/// Writes a snapshot row by row to a stream, buffering 64 KiB at a time: the same text as render_json,
/// render_ndjson, render_csv and render_prometheus, without holding every row and the whole text in memory (rows
/// can come straight from the table: scanner::for_each_sorted). Prometheus output lists the rows first and the
/// totals after them.
/// How a group's clients are: up (connected, neither stale nor overdue), down (disconnected, stale or overdue), or
/// unknown. Kept per group by snapshot_writer; the service's /metrics keeps them the same way.
struct group_health {
    std::size_t up = 0, down = 0, unknown = 0;
    void tally(const client_status& c) noexcept;
};
/// `mqtt_presence_group_clients{group,health}` for each group (none: an empty text).
[[nodiscard]] std::string render_prometheus_groups(const std::map<std::string, group_health>& groups);

class snapshot_writer {
public:
    /// `brokers`: the rows come from several named brokers (client_status::broker): CSV gains a first column
    /// "broker". JSON, NDJSON and Prometheus carry a row's broker whenever it has one.
    snapshot_writer(std::ostream& out, snapshot_format format, bool brokers = false);
    void row(const client_status& c);
    /// Off: no per-group totals (JSON "groups", Prometheus mqtt_presence_group_clients). They are the totals of the
    /// rows written, so a page of a larger list leaves them out. On by default.
    void group_totals(bool on) noexcept { group_totals_ = on; }
    /// Writes the counters and the scanner's own state if given (JSON, Prometheus) and flushes. Call once, after
    /// the last row. JSON: `extra_members` (",\"total\":3" ...) joins the top-level object.
    void finish(const table_counts& counts, const table_stats& stats, const scanner_status* scanner = nullptr,
                std::string_view extra_members = {});

private:
    static constexpr std::size_t flush_at = 64 * 1024;
    std::ostream& out_;
    snapshot_format format_;
    std::string buffer_;
    std::size_t rows_ = 0;
    std::map<std::string, group_health> groups_;  // JSON's "groups" and Prometheus's group families
    bool group_totals_ = true;
    bool brokers_ = false;
};

/// The scanner's own state as the JSON snapshot's "scanner" member: {"connected","since","sync","broker_dropped"}.
[[nodiscard]] std::string render_scanner_json(const scanner_status& s);

/// A whole snapshot in a machine format (snapshot_writer into a string).
[[nodiscard]] std::string render_snapshot(const scan_result& r, snapshot_format format);
[[nodiscard]] std::string render_json(const scan_result& r);
/// One JSON client object per line (the objects of render_json).
[[nodiscard]] std::string render_ndjson(const scan_result& r);
[[nodiscard]] std::string render_csv(const scan_result& r);
[[nodiscard]] std::string render_prometheus(const scan_result& r);
/// The human table: CLIENT STATE SINCE LAST-SEEN IP DETAIL (BROKER first when rows name theirs), then a counts
/// line. Ages are relative to `now`. Rows come in the table's order: by name, then scheme (or row_order::state); a
/// name under several schemes is several clients, and each of its rows shows its topic.
[[nodiscard]] std::string render_table(const scan_result& r, time_point now, bool color);

/// The human table written a row at a time, 64 KiB of text at a time: a million rows need no copy of the table and
/// no text of it whole (scanner::for_each_sorted twice). measure() every row, then row() each of them in the same
/// order, then finish(). The columns are as wide as the measured rows need; a row that grew since is cut to them.
class table_writer {
public:
    table_writer(std::ostream& out, time_point now, bool color);
    /// A TOPIC column (before DETAIL): for a window wide enough to hold it. Off by default. Call before measure().
    void show_topics(bool on) noexcept { topics_ = on; }
    void measure(const client_status& c);
    void row(const client_status& c);
    /// The counts line and the broker's count, then a flush. `cut`: the rows were a screenful of the table (the
    /// live table), and a line says how many more there are.
    void finish(const table_counts& counts, const table_stats& stats, const scanner_status* scanner = nullptr,
                bool cut = false);

private:
    static constexpr std::size_t flush_at = 64 * 1024;
    void header();
    [[nodiscard]] std::string shown_name(const client_status& c) const;
    std::ostream& out_;
    time_point now_;
    bool color_;
    std::size_t name_w_ = 6, ip_w_ = 2, groups_w_ = 0;  // groups_w_ 0: no row is in a group, no column
    std::size_t broker_w_ = 0;                           // 0: no row names its broker, no column
    std::size_t topic_w_ = 5;
    bool topics_ = false;
    std::string previous_name_, previous_topic_, previous_broker_;  // measure(): the row before, for repeats
    std::unordered_set<std::string> shared_;  // "broker\nname" of names under several schemes of one broker
    std::string buffer_;
    bool header_written_ = false;
    std::size_t rows_ = 0;
};

/// A change as one JSON line: {"event":"added|changed|...","previous":..,"client":{...}}.
[[nodiscard]] std::string render_change_json(const change& c);
/// A change as one human line: "2026-11-25T06:20:01Z s1 connected -> disconnected (lost)".
[[nodiscard]] std::string render_change_line(const change& c, time_point now);

}  // namespace mqtt_presence
