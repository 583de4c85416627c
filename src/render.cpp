#include <mqtt_presence/render.hpp>

#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "text_util.hpp"

namespace mqtt_presence {
namespace {

// Appends t as 2023-11-14T22:13:20.123Z. Days to a civil date (H. Hinnant's algorithm), by hand: a JSON snapshot
// of a million clients writes two million of these, and gmtime_r + strftime + snprintf cost several times more.
void append_iso8601(std::string& out, time_point t) {
    constexpr std::int64_t ms_per_day = 86'400'000;
    const std::int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    const std::int64_t day = ms / ms_per_day - (ms % ms_per_day < 0 ? 1 : 0);
    const std::int64_t in_day = ms - day * ms_per_day;
    const std::int64_t z = day + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
    const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
    if (y < 0 || y > 9999) {  // not from any payload (ts is capped at the year 2255); written all the same
        char wide[48];
        const int n = std::snprintf(wide, sizeof wide, "%lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03lldZ",
                                    static_cast<long long>(y), static_cast<long long>(m), static_cast<long long>(d),
                                    static_cast<long long>(in_day / 3'600'000),
                                    static_cast<long long>(in_day / 60'000 % 60),
                                    static_cast<long long>(in_day / 1000 % 60), static_cast<long long>(in_day % 1000));
        out.append(wide, static_cast<std::size_t>(n));
        return;
    }
    char buf[] = "YYYY-MM-DDTHH:MM:SS.mmmZ";
    const auto put = [&buf](std::size_t at, std::int64_t value, std::size_t digits) {
        for (std::size_t i = digits; i-- > 0; value /= 10) buf[at + i] = static_cast<char>('0' + value % 10);
    };
    put(0, y, 4);
    put(5, m, 2);
    put(8, d, 2);
    put(11, in_day / 3'600'000, 2);
    put(14, in_day / 60'000 % 60, 2);
    put(17, in_day / 1000 % 60, 2);
    put(20, in_day % 1000, 3);
    out.append(buf, sizeof buf - 1);
}

std::string detail_text(const client_status& c) {
    std::string d = c.detail;
    if (c.status == state::disconnected && !c.reason.empty() && d.find(c.reason) == std::string::npos)
        d = d.empty() ? c.reason : d + ", " + c.reason;
    if (!c.raw.empty()) d += (d.empty() ? "raw: " : "; raw: ") + c.raw;
    if (c.future_time) d += d.empty() ? "time ahead of this clock: ignored" : "; time ahead of this clock: ignored";
    const auto add = [&d](const std::string& text) { d += (d.empty() ? "" : "; ") + text; };
    if (c.awaiting_beat) add("heartbeat overdue by its own clock: waiting for a live one");
    if (c.unconfirmed) add("unconfirmed since the broker restarted: a will is lost if it died meanwhile");
    if (c.clock_skew && std::abs(c.clock_skew->count()) >= clock_skew_shown.count()) {
        char text[64];
        std::snprintf(text, sizeof text, "clock %.1f s %s", std::abs(static_cast<double>(c.clock_skew->count())) / 1000.0,
                      c.clock_skew->count() < 0 ? "behind" : "ahead");
        add(text);
    }
    return d;
}

std::string_view liveness(const client_status& c) { return c.will_only() ? "will-only" : "heartbeat"; }

// Appends `s` as a JSON string. Text from the network is valid UTF-8 by the time it is here (nlohmann checks JSON
// strings, the broker checks topics, unreadable payloads are made printable), but check anyway.
void append_string(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    // Nearly every string is printable ASCII without quotes or backslashes: copy it in one piece.
    const auto needs_care = [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c < 0x20 || c >= 0x80 || c == '"' || c == '\\';
    };
    if (std::none_of(s.begin(), s.end(), needs_care)) {
        out += '"';
        out.append(s);
        out += '"';
        return;
    }
    const std::string fixed = detail::is_valid_utf8(s) ? std::string() : detail::printable(s, s.size());
    if (!fixed.empty()) s = fixed;
    out += '"';
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 0xF];
        } else {
            out += ch;
        }
    }
    out += '"';
}

void append_time(std::string& out, const std::optional<time_point>& t) {
    if (!t) {
        out += "null";
        return;
    }
    out += '"';
    append_iso8601(out, *t);  // digits and punctuation: nothing to escape
    out += '"';
}

void append_text_or_null(std::string& out, const std::string& s) {
    if (s.empty()) out += "null";
    else append_string(out, s);
}

// Only for a client with an expectation: "expect_s" (null while "auto" is still learning), "expect" and "cadence_s".
void append_expectation(std::string& out, const client_status& c) {
    using namespace std::string_view_literals;
    const auto seconds = [&out](const std::optional<std::chrono::milliseconds>& d) {
        if (!d) {
            out += "null"sv;
            return;
        }
        char text[32];
        std::snprintf(text, sizeof text, "%.1f", static_cast<double>(d->count()) / 1000.0);
        out += text;
    };
    out += ",\"expect_s\":"sv;
    seconds(c.expected);
    out += c.expected_learned ? ",\"expect\":\"auto\""sv : ",\"expect\":\"fixed\""sv;
    if (c.expected_learned) {
        out += ",\"cadence_s\":"sv;
        seconds(c.cadence);
    }
}

// One client object, written directly (a snapshot of a million clients must not become a DOM first).
void append_client_json(std::string& out, const client_status& c, const std::string& topic) {
    using namespace std::string_view_literals;  // literals with their length known: no strlen per row
    out += '{';
    if (!c.broker.empty()) {
        out += "\"broker\":"sv;
        append_string(out, c.broker);
        out += ',';
    }
    out += "\"client\":"sv;
    append_string(out, c.client);
    out += ",\"state\":\""sv;
    out += to_string(c.status);
    out += "\",\"since\":"sv;
    append_time(out, c.since);
    out += ",\"last_seen\":"sv;
    append_time(out, c.last_seen);
    out += c.retained ? ",\"retained\":true"sv : ",\"retained\":false"sv;
    out += c.stale ? ",\"stale\":true"sv : ",\"stale\":false"sv;
    out += c.overdue ? ",\"overdue\":true"sv : ",\"overdue\":false"sv;
    if (c.expected || c.expected_learned) append_expectation(out, c);
    out += c.will_only() ? ",\"liveness\":\"will-only\""sv : ",\"liveness\":\"heartbeat\""sv;
    if (c.awaiting_beat) out += ",\"awaiting_beat\":true"sv;
    if (c.unconfirmed) out += ",\"unconfirmed\":true"sv;
    out += ",\"clock_skew_s\":"sv;
    if (c.clock_skew) {
        char skew[32];
        std::snprintf(skew, sizeof skew, "%.1f", static_cast<double>(c.clock_skew->count()) / 1000.0);
        out += skew;
    } else {
        out += "null"sv;
    }
    out += ",\"epoch\":"sv;
    if (c.epoch) out += std::to_string(*c.epoch);
    else out += "null"sv;
    out += ",\"ip\":"sv;
    append_text_or_null(out, c.ip);
    out += ",\"detail\":"sv;
    append_text_or_null(out, detail_text(c));
    out += ",\"topic\":"sv;
    append_string(out, topic);
    out += ",\"groups\":["sv;
    for (std::size_t i = 0; i < c.groups.size(); ++i) {
        if (i > 0) out += ',';
        append_string(out, c.groups[i]);
    }
    out += "],\"meta\":"sv;
    // meta is a compact JSON object text made by the codec; the host joins it.
    if (c.meta.empty() && c.host.empty()) {
        out += "null"sv;
    } else if (c.host.empty()) {
        out += c.meta;
    } else {
        if (c.meta.size() > 2) {
            out.append(c.meta, 0, c.meta.size() - 1);
            out += ',';
        } else {
            out += '{';
        }
        out += "\"host\":"sv;
        append_string(out, c.host);
        out += '}';
    }
    out += '}';
}

std::string age(const std::optional<time_point>& t, time_point now) {
    if (!t) return "?";
    const auto d = std::chrono::duration_cast<std::chrono::milliseconds>(now - *t);
    return d.count() < 0 ? "0s" : format_duration(d) + " ago";
}

// A table cell: the text made printable, cut or padded to `width` terminal cells, and a two-space gutter.
std::string pad(std::string_view s, std::size_t width) { return detail::fit_cells(detail::printable(s, 160), width) + "  "; }

std::string joined(const std::vector<std::string>& items, char separator) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) out += separator;
        out += item;
    }
    return out;
}

std::size_t cells(std::string_view s) { return detail::display_width(detail::printable(s, 160)); }

}  // namespace

std::string terminal_safe(std::string_view text, std::size_t limit) { return detail::printable(text, limit); }

// A label value per the text format (backslash, quote and newline escaped); control and hidden characters are
// escaped first, so that reading the metrics on a terminal is harmless too.
std::string prometheus_label(const std::string& raw) {
    std::string out;
    for (char c : detail::printable(raw, SIZE_MAX / 2)) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') { out += "\\n"; continue; }
        out += c;
    }
    return out;
}

// The STATE column: its longest text, "connected (overdue)".
constexpr std::size_t state_w = 19;

std::string fit_cell(std::string_view text, std::size_t cells) {
    return detail::fit_cells(detail::printable(text, 160), cells);
}

std::string fit_to_width(std::string_view frame, std::size_t columns) {
    std::string out;
    for (std::size_t at = 0; at < frame.size();) {
        const auto end = std::min(frame.find('\n', at), frame.size());
        out += detail::fit_line(frame.substr(at, end - at), columns);
        if (end < frame.size()) out += '\n';
        at = end + 1;
    }
    return out;
}

// A CSV cell that is harmless in a terminal and in a spreadsheet: control and hidden characters escaped, and a
// leading = + - @ (a formula to a spreadsheet) behind an apostrophe, as OWASP recommends.
std::string csv_field(const std::string& raw) {
    std::string s = detail::printable(raw, SIZE_MAX / 2);
    if (!s.empty() && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@')) s.insert(0, 1, '\'');
    if (s.find_first_of(",\"") == std::string::npos) return s;
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}


std::string render_scanner_json(const scanner_status& s) {
    std::string out = "{\"connected\":";
    out += s.connected ? "true" : "false";
    out += ",\"since\":";
    append_time(out, s.since);
    out += ",\"last_heard\":";
    append_time(out, s.last_heard);
    out += ",\"sync\":\"" + std::string(to_string(s.sync)) + "\",\"broker_dropped\":" +
           std::to_string(s.broker_dropped) + ",\"broker_clients\":" +
           (s.broker_clients ? std::to_string(*s.broker_clients) : std::string("null")) +
           ",\"broker_clients_live\":" + (s.broker_clients_live ? "true" : "false") + ",\"unmatched_examples\":[";
    for (std::size_t i = 0; i < s.unmatched_examples.size(); ++i) {
        if (i > 0) out += ',';
        append_string(out, s.unmatched_examples[i]);
    }
    out += ']';
    if (s.sync_tail_refused) out += ",\"sync_tail_refused\":true";
    out += ",\"broker_started\":";
    append_time(out, s.broker_started);
    out += '}';
    return out;
}

std::string format_iso8601(time_point t) {
    std::string out;
    append_iso8601(out, t);
    return out;
}

std::string prometheus_up_sample(const client_status& c) {
    std::string out;
    append_prometheus_up_sample(out, c);
    return out;
}

void append_prometheus_label(std::string& out, std::string_view raw) {
    const bool plain = std::all_of(raw.begin(), raw.end(), [](char c) {
        return c >= 0x20 && c < 0x7F && c != '\\' && c != '"';
    });
    if (plain) out.append(raw);
    else out += prometheus_label(std::string(raw));
}

void append_prometheus_up_sample(std::string& out, const client_status& c) {
    out += "mqtt_presence_up{";
    if (!c.broker.empty()) {
        out += "broker=\"";
        append_prometheus_label(out, c.broker);
        out += "\",";
    }
    out += "client=\"";
    append_prometheus_label(out, c.client);
    out += "\",topic=\"";
    append_prometheus_label(out, c.topic);
    out += c.up() ? "\"} 1\n" : "\"} 0\n";
}

std::string prometheus_seconds(time_point t) {
    std::string out;
    append_prometheus_seconds(out, t);
    return out;
}

void append_prometheus_seconds(std::string& out, time_point t) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    const auto whole = ms / 1000;
    auto part = ms % 1000;
    char buf[32];
    char* at = buf;
    if (ms < 0 && part != 0) {  // before 1970: "-0.250", "-3.250" (the sign once, the fraction's digits positive)
        *at++ = '-';
        at = std::to_chars(at, buf + sizeof buf, -whole).ptr;
        part = -part;
    } else {
        at = std::to_chars(at, buf + sizeof buf, whole).ptr;
    }
    *at++ = '.';
    *at++ = static_cast<char>('0' + part / 100);
    *at++ = static_cast<char>('0' + part / 10 % 10);
    *at++ = static_cast<char>('0' + part % 10);
    out.append(buf, static_cast<std::size_t>(at - buf));
}

std::string render_prometheus_summary(const table_counts& counts, const table_stats& stats,
                                      const scanner_status* scanner) {
    std::string out;
    const auto family = [&out](const char* name, const char* type, const char* help, const std::string& samples) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + samples;
    };
    const auto one = [&family](const char* name, const char* type, const char* help, const std::string& value) {
        family(name, type, help, std::string(name) + " " + value + "\n");
    };
    const auto n = [](auto v) { return std::to_string(v); };
    // The states partition the clients (a sum is the total); stale is a count of its own, among the connected.
    family("mqtt_presence_clients", "gauge", "Clients by connection state.",
           "mqtt_presence_clients{state=\"connected\"} " + n(counts.connected) +
               "\nmqtt_presence_clients{state=\"disconnected\"} " + n(counts.disconnected) +
               "\nmqtt_presence_clients{state=\"unknown\"} " + n(counts.unknown) + "\n");
    one("mqtt_presence_stale_clients", "gauge", "Connected clients whose heartbeat is overdue.", n(counts.stale));
    one("mqtt_presence_overdue_clients", "gauge", "Connected clients unheard for longer than expected (--expect).",
        n(counts.overdue));
    one("mqtt_presence_messages_total", "counter", "Status messages read.", n(stats.messages));
    one("mqtt_presence_malformed_messages_total", "counter", "Status payloads that could not be read.",
        n(stats.malformed));
    one("mqtt_presence_late_wills_ignored_total", "counter", "Wills of an earlier connection, ignored.",
        n(stats.stale_deaths_ignored));
    one("mqtt_presence_late_connects_ignored_total", "counter", "\"Connected\" statuses of an earlier connection, "
        "ignored.", n(stats.stale_connects_ignored));
    one("mqtt_presence_future_times_total", "counter", "Statuses whose epoch or ts lay beyond the clock skew.",
        n(stats.future_times));
    one("mqtt_presence_unmatched_messages_total", "counter", "Messages under a status filter that fit no template.",
        n(stats.unmatched));
    family("mqtt_presence_activity_messages_total", "counter", "Live messages on activity topics (--activity), by "
           "whether a client of that name is in the table.",
           "mqtt_presence_activity_messages_total{client=\"known\"} " + n(stats.activity) +
               "\nmqtt_presence_activity_messages_total{client=\"unknown\"} " + n(stats.activity_unknown) + "\n");
    one("mqtt_presence_excluded_messages_total", "counter", "Statuses and readings left out by --exclude.",
        n(stats.excluded));
    if (scanner == nullptr) return out;
    one("mqtt_presence_scanner_connected", "gauge", "1 while the scanner is connected to the broker; 0: the values "
        "above are as of mqtt_presence_scanner_connection_change_timestamp_seconds.", scanner->connected ? "1" : "0");
    if (scanner->since)
        one("mqtt_presence_scanner_connection_change_timestamp_seconds", "gauge", "When the scanner last connected "
            "or lost its connection.", prometheus_seconds(*scanner->since));
    one("mqtt_presence_scanner_synced", "gauge", "1 once the sync of the current connection is known complete.",
        scanner->sync == sync_state::complete ? "1" : "0");
    if (scanner->broker_clients)
        one("mqtt_presence_broker_clients", "gauge", "Clients connected to the broker by its own count ($SYS), the "
            "scanner included.", n(*scanner->broker_clients));
    return out;
}

snapshot_writer::snapshot_writer(std::ostream& out, snapshot_format format, bool brokers)
    : out_(out), format_(format), brokers_(brokers) {
    buffer_.reserve(flush_at + 4096);
    switch (format_) {
        case snapshot_format::json: buffer_ += "{\"clients\":["; break;
        case snapshot_format::csv: buffer_ += brokers_ ? "broker," : ""; buffer_ += "client,state,stale,since,last_seen,retained,epoch,ip,detail,topic,liveness,overdue,groups\n"; break;
        case snapshot_format::prometheus:
            buffer_ += "# HELP mqtt_presence_up 1 if the client is connected and neither stale nor overdue, else 0.\n"
                       "# TYPE mqtt_presence_up gauge\n";
            break;
        case snapshot_format::ndjson: break;
    }
}

void group_health::tally(const client_status& c) noexcept {
    if (c.up()) ++up;
    else if (c.status != state::unknown) ++down;
    else ++unknown;
}

std::string render_prometheus_groups(const std::map<std::string, group_health>& groups) {
    if (groups.empty()) return {};
    std::string out = "# HELP mqtt_presence_group_clients Clients of a group (--group) by health: up (connected, "
                      "neither stale nor overdue), down, unknown.\n# TYPE mqtt_presence_group_clients gauge\n";
    for (const auto& [name, h] : groups) {
        const auto label = prometheus_label(name);
        for (const auto& [health, n] : {std::pair<const char*, std::size_t>{"up", h.up}, {"down", h.down},
                                        {"unknown", h.unknown}})
            out += "mqtt_presence_group_clients{group=\"" + label + "\",health=\"" + health + "\"} " +
                   std::to_string(n) + "\n";
    }
    return out;
}

void snapshot_writer::row(const client_status& c) {
    const std::string& topic = c.topic;
    if (group_totals_)
        for (const auto& g : c.groups) groups_[g].tally(c);
    switch (format_) {
        case snapshot_format::json:
            if (rows_ > 0) buffer_ += ',';
            append_client_json(buffer_, c, topic);
            break;
        case snapshot_format::ndjson:
            append_client_json(buffer_, c, topic);
            buffer_ += '\n';
            break;
        case snapshot_format::csv:
            if (brokers_) buffer_ += csv_field(c.broker) + ",";
            buffer_ += csv_field(c.client) + "," + std::string(to_string(c.status)) + "," +
                       (c.stale ? "true" : "false") + "," + (c.since ? format_iso8601(*c.since) : "") + "," +
                       (c.last_seen ? format_iso8601(*c.last_seen) : "") + "," + (c.retained ? "true" : "false") +
                       "," + (c.epoch ? std::to_string(*c.epoch) : "") + "," + csv_field(c.ip) + "," +
                       csv_field(detail_text(c)) + "," + csv_field(topic) + "," + std::string(liveness(c)) + "," +
                       (c.overdue ? "true" : "false") + "," + csv_field(joined(c.groups, ';')) + "\n";
            break;
        case snapshot_format::prometheus:
            // The topic label keeps one name under two topic schemes two series; no label changes with the state.
            append_prometheus_up_sample(buffer_, c);
            break;
    }
    ++rows_;
    if (buffer_.size() >= flush_at) {
        out_.write(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
        buffer_.clear();
    }
}

void snapshot_writer::finish(const table_counts& counts, const table_stats& stats, const scanner_status* scanner,
                             std::string_view extra_members) {
    const auto n = [](auto v) { return std::to_string(v); };
    if (format_ == snapshot_format::json) {
        buffer_ += "],\"counts\":{\"connected\":" + n(counts.connected) + ",\"disconnected\":" +
                   n(counts.disconnected) + ",\"unknown\":" + n(counts.unknown) + ",\"stale\":" + n(counts.stale) +
                   ",\"overdue\":" + n(counts.overdue) + ",\"up\":" + n(counts.up) + "},\"stats\":{\"messages\":" + n(stats.messages) + ",\"malformed\":" + n(stats.malformed) +
                   ",\"stale_deaths_ignored\":" + n(stats.stale_deaths_ignored) + ",\"stale_connects_ignored\":" +
                   n(stats.stale_connects_ignored) + ",\"future_times\":" + n(stats.future_times) +
                   ",\"unmatched\":" + n(stats.unmatched) + ",\"activity\":" + n(stats.activity) +
                   ",\"activity_unknown\":" + n(stats.activity_unknown) + ",\"excluded\":" + n(stats.excluded) + "}";
        if (scanner) buffer_ += ",\"scanner\":" + render_scanner_json(*scanner);
        if (!groups_.empty()) {
            buffer_ += ",\"groups\":{";
            bool first = true;
            for (const auto& [name, h] : groups_) {
                if (!first) buffer_ += ',';
                first = false;
                append_string(buffer_, name);
                buffer_ += ":{\"up\":" + n(h.up) + ",\"down\":" + n(h.down) + ",\"unknown\":" + n(h.unknown) + "}";
            }
            buffer_ += '}';
        }
        buffer_ += extra_members;
        buffer_ += "}\n";
    } else if (format_ == snapshot_format::prometheus) {
        buffer_ += render_prometheus_summary(counts, stats, scanner);
        buffer_ += render_prometheus_groups(groups_);
    }
    out_.write(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
    buffer_.clear();
    out_.flush();
}

std::string render_snapshot(const scan_result& r, snapshot_format format) {
    std::ostringstream out;
    snapshot_writer writer(out, format);
    for (const auto& c : r.clients) writer.row(c);
    writer.finish(r.counts, r.stats, r.scanner ? &*r.scanner : nullptr);
    return out.str();
}

std::string render_json(const scan_result& r) { return render_snapshot(r, snapshot_format::json); }
std::string render_ndjson(const scan_result& r) { return render_snapshot(r, snapshot_format::ndjson); }
std::string render_csv(const scan_result& r) { return render_snapshot(r, snapshot_format::csv); }
std::string render_prometheus(const scan_result& r) { return render_snapshot(r, snapshot_format::prometheus); }

table_writer::table_writer(std::ostream& out, time_point now, bool color) : out_(out), now_(now), color_(color) {}

// Every text here came from the network: each cell is made printable and measured in terminal cells.
void table_writer::measure(const client_status& c) {
    const auto shared_width = [](const std::string& name, const std::string& topic) {
        return std::min<std::size_t>(cells(name + " (" + topic + ")"), 40);
    };
    // A name under several schemes of one broker (the same name on two brokers is told apart by BROKER).
    if (!previous_name_.empty() && c.client == previous_name_ && c.broker == previous_broker_) {
        shared_.insert(c.broker + '\n' + c.client);
        name_w_ = std::max({name_w_, shared_width(previous_name_, previous_topic_), shared_width(c.client, c.topic)});
    } else {
        name_w_ = std::max(name_w_, std::min<std::size_t>(cells(c.client), 40));
    }
    ip_w_ = std::max(ip_w_, std::min<std::size_t>(cells(c.ip), 39));
    if (!c.broker.empty()) broker_w_ = std::max({broker_w_, std::size_t{6}, cells(c.broker)});
    if (!c.groups.empty()) groups_w_ = std::max({groups_w_, std::size_t{6}, std::min<std::size_t>(cells(joined(c.groups, ',')), 30)});
    if (topics_) topic_w_ = std::max(topic_w_, std::min<std::size_t>(cells(c.topic), 50));
    previous_name_ = c.client;
    previous_topic_ = c.topic;
    previous_broker_ = c.broker;
}

std::string table_writer::shown_name(const client_status& c) const {
    return shared_.count(c.broker + '\n' + c.client) > 0 ? c.client + " (" + c.topic + ")" : c.client;
}

void table_writer::header() {
    if (header_written_) return;
    header_written_ = true;
    if (broker_w_ > 0) buffer_ += pad("BROKER", broker_w_);
    buffer_ += pad("CLIENT", name_w_) + pad("STATE", state_w) + pad("SINCE", 14) + pad("LAST-SEEN", 14) + pad("LIVENESS", 9) +
               pad("IP", ip_w_) + (groups_w_ > 0 ? pad("GROUPS", groups_w_) : std::string()) +
               (topics_ ? pad("TOPIC", topic_w_) : std::string()) + "DETAIL\n";
}

void table_writer::row(const client_status& c) {
    header();
    std::string st = std::string(to_string(c.status)) + (c.overdue ? " (overdue)" : c.stale ? " (stale)" : "");
    std::string cell = pad(st, state_w);
    if (color_) {
        const char* code = c.stale || c.overdue ? "\x1b[35m" : c.status == state::connected ? "\x1b[32m"
                                                : c.status == state::disconnected ? "\x1b[31m" : "\x1b[33m";
        cell = code + st + "\x1b[0m" + std::string(state_w - std::min(st.size(), state_w) + 2, ' ');
    }
    const std::string_view live = c.status != state::connected ? "-" : liveness(c);
    if (broker_w_ > 0) buffer_ += pad(c.broker, broker_w_);
    buffer_ += pad(shown_name(c), name_w_) + cell + pad(age(c.since, now_), 14) + pad(age(c.last_seen, now_), 14) +
               pad(live, 9) + pad(c.ip.empty() ? "-" : c.ip, ip_w_) +
               (groups_w_ > 0 ? pad(c.groups.empty() ? "-" : joined(c.groups, ','), groups_w_) : std::string()) +
               (topics_ ? pad(c.topic, topic_w_) : std::string()) +
               detail::printable(detail_text(c), 60) + "\n";
    ++rows_;
    if (buffer_.size() >= flush_at) {
        out_ << buffer_;
        buffer_.clear();
    }
}

void table_writer::finish(const table_counts& counts, const table_stats& stats, const scanner_status* scanner,
                          bool cut) {
    header();
    if (cut && rows_ < counts.total())
        buffer_ += "... " + std::to_string(counts.total() - rows_) + " more below; --once or --format json " +
                   "prints them all\n";
    buffer_ += std::to_string(counts.connected) + " connected, " + std::to_string(counts.disconnected) +
               " disconnected, " + std::to_string(counts.unknown) + " unknown, " + std::to_string(counts.stale) +
               " stale" + (counts.overdue > 0 ? ", " + std::to_string(counts.overdue) + " overdue" : std::string()) +
               "; " + std::to_string(stats.messages) + " messages, " + std::to_string(stats.malformed) +
               " malformed, " + std::to_string(stats.stale_deaths_ignored) + " late wills ignored";
    if (stats.excluded > 0) buffer_ += ", " + std::to_string(stats.excluded) + " excluded";
    if (stats.unmatched > 0) {
        buffer_ += ", " + std::to_string(stats.unmatched) + " unmatched topics";
        if (scanner && !scanner->unmatched_examples.empty())
            buffer_ += " (e.g. " + terminal_safe(scanner->unmatched_examples.front(), 80) + ")";
    }
    buffer_ += "\n";
    if (scanner && scanner->broker_clients) {
        const auto n = std::to_string(*scanner->broker_clients);
        // A retained sample was taken before this scanner connected: it neither includes it nor is it current.
        buffer_ += scanner->broker_clients_live
                       ? "the broker counts " + n + " clients ($SYS, sampled " + age(scanner->broker_clients_at, now_) +
                             "; this scanner included); "
                       : "the broker counted " + n + " clients before this scanner connected ($SYS's last sample; "
                         "a new one comes every sys_interval); ";
        buffer_ += std::to_string(counts.connected) + " announce a status\n";
    }
    out_ << buffer_;
    buffer_.clear();
    out_.flush();
}

std::string render_table(const scan_result& r, time_point now, bool color) {
    std::ostringstream out;
    table_writer writer(out, now, color);
    for (const auto& c : r.clients) writer.measure(c);
    for (const auto& c : r.clients) writer.row(c);
    writer.finish(r.counts, r.stats, r.scanner ? &*r.scanner : nullptr, true);
    return out.str();
}

std::string render_change_json(const change& c) {
    std::string out = "{\"event\":\"";
    out += to_string(c.kind);
    out += "\",\"previous\":";
    if (c.previous) {
        out += '"';
        out += to_string(*c.previous);
        out += '"';
    } else {
        out += "null";
    }
    out += ",\"client\":";
    append_client_json(out, c.current, c.current.topic);
    return out + "}\n";
}

std::string render_change_line(const change& c, time_point now) {
    std::string line = format_iso8601(now) + " " +
                       (c.current.broker.empty() ? std::string() : detail::printable(c.current.broker, 40) + ": ") +
                       detail::printable(c.current.client, 160) + " ";
    const std::string st = std::string(to_string(c.current.status));
    switch (c.kind) {
        case change_kind::added: line += st + (c.current.retained ? " (retained)" : ""); break;
        case change_kind::changed: line += std::string(to_string(*c.previous)) + " -> " + st; break;
        case change_kind::reconnected: line += "reconnected (epoch " + std::to_string(c.current.epoch.value_or(0)) + ")"; break;
        case change_kind::stale: line += "stale (heartbeat overdue)"; break;
        case change_kind::fresh: line += "fresh again"; break;
        case change_kind::overdue:
            line += "overdue (unheard for " +
                    (c.current.expected ? format_duration(*c.current.expected) : std::string("its interval")) + ")";
            break;
        case change_kind::back: line += "back (heard again)"; break;
        case change_kind::removed: line += "removed (status cleared)"; break;
    }
    const auto d = detail_text(c.current);
    if (!d.empty() && c.kind != change_kind::removed) line += " [" + detail::printable(d, 80) + "]";
    return line + "\n";
}

}  // namespace mqtt_presence
