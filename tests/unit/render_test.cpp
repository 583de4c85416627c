#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/status_codec.hpp>

#include <gtest/gtest.h>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <sstream>
#include <vector>
#include <nlohmann/json.hpp>

using namespace mqtt_presence;
using namespace std::chrono_literals;

namespace {

const time_point t0 = time_point(std::chrono::milliseconds(1'700'000'000'123));

scan_result result_of(const connection_table& t) {
    scan_result r;
    r.clients = t.snapshot();
    for (auto& c : r.clients) c.topic = "sensors/connected/" + c.client;
    r.counts = t.counts();
    r.stats = t.stats();
    return r;
}

scan_result sample() {
    connection_table t;
    t.apply("kitchen", decode(R"({"status":1,"epoch":7,"ts":1700000000123,"ip":"10.0.0.5","host":"h1","fw":"1.4"})"),
            true, t0);
    t.apply("garage", decode("0"), true, t0);
    t.apply("bad,\"name", decode("garbage\xff"), false, t0 + 1s);
    return result_of(t);
}

TEST(render, json_has_the_documented_shape) {
    const auto j = nlohmann::ordered_json::parse(render_json(sample()));  // keeps the members' order
    ASSERT_EQ(j["clients"].size(), 3u);
    const auto& k = j["clients"][2];
    EXPECT_EQ(k["client"], "kitchen");
    std::vector<std::string> keys;
    for (const auto& [key, v] : k.items()) keys.push_back(key);
    EXPECT_EQ(keys, (std::vector<std::string>{"client", "state", "since", "last_seen", "retained", "stale",
                                              "overdue", "liveness", "clock_skew_s", "epoch", "ip", "detail", "topic",
                                              "groups", "meta"}));
    EXPECT_EQ(k["liveness"], "will-only") << "no heartbeat promised";
    EXPECT_EQ(k["state"], "connected");
    EXPECT_EQ(k["since"], "2023-11-14T22:13:20.123Z");
    EXPECT_EQ(k["epoch"], 7);
    EXPECT_EQ(k["ip"], "10.0.0.5");
    EXPECT_EQ(k["meta"].dump(), R"({"fw":"1.4","host":"h1"})");
    const auto& g = j["clients"][1];
    EXPECT_TRUE(g["since"].is_null());
    EXPECT_TRUE(g["epoch"].is_null());
    EXPECT_TRUE(g["ip"].is_null());
    EXPECT_EQ(j["clients"][0]["state"], "unknown");
    EXPECT_EQ(j["counts"].dump(), R"({"connected":1,"disconnected":1,"unknown":1,"stale":0,"overdue":0,"up":1})");
    EXPECT_EQ(j["stats"].dump(), R"({"messages":3,"malformed":1,"stale_deaths_ignored":0,"stale_connects_ignored":0,"future_times":0,"unmatched":0,"activity":0,"activity_unknown":0,"excluded":0})");
}

TEST(render, ndjson_csv_prometheus_and_table) {
    const auto r = sample();
    const auto nd = render_ndjson(r);
    EXPECT_EQ(std::count(nd.begin(), nd.end(), '\n'), 3);
    const auto csv = render_csv(r);
    EXPECT_EQ(csv.substr(0, csv.find('\n')), "client,state,stale,since,last_seen,retained,epoch,ip,detail,topic,liveness,overdue,groups");
    EXPECT_NE(csv.find("\"bad,\"\"name\",unknown"), std::string::npos) << csv;
    const auto prom = render_prometheus(r);
    EXPECT_NE(prom.find("mqtt_presence_clients{state=\"connected\"} 1"), std::string::npos);
    EXPECT_NE(prom.find("mqtt_presence_up{client=\"bad,\\\"name\",topic=\"sensors/connected/bad,\\\"name\"} 0"),
              std::string::npos)
        << prom;
    EXPECT_EQ(prom.find(",state="), std::string::npos) << "no label of a client's series changes with its state";
    EXPECT_NE(prom.find("mqtt_presence_malformed_messages_total 1"), std::string::npos);
    const auto table = render_table(r, t0 + 65s, false);
    EXPECT_EQ(table.substr(0, 6), "CLIENT");
    EXPECT_NE(table.find("1m05s ago"), std::string::npos) << table;
    EXPECT_NE(table.find("1 connected, 1 disconnected, 1 unknown, 0 stale"), std::string::npos);
    EXPECT_NE(render_table(r, t0, true).find("\x1b[32m"), std::string::npos) << "colour when asked";
}

// A name under several topic schemes is several clients: in the terminal table each of those rows shows its topic
// (they would look identical); a name of its own shows none. The footer counts what --exclude left out.
TEST(render, rows_of_one_name_from_several_conventions_show_their_topic) {
    scan_result r;
    for (const auto& [name, topic] : std::vector<std::pair<std::string, std::string>>{
             {"hall", "sensors/connected/hall"}, {"kitchen", "sensors/connected/kitchen"},
             {"kitchen", "tele/kitchen/LWT"}, {"kitchen", "kitchen/status"}}) {
        client_status c;
        c.client = name;
        c.topic = topic;
        c.status = state::connected;
        r.clients.push_back(c);
    }
    r.counts.connected = 4;
    r.stats.excluded = 2;
    const auto table = render_table(r, t0, false);
    for (const char* shown : {"kitchen (sensors/connected/kitchen)", "kitchen (tele/kitchen/LWT)",
                              "kitchen (kitchen/status)", ", 2 excluded"})
        EXPECT_NE(table.find(shown), std::string::npos) << shown << " missing:\n" << table;
    EXPECT_EQ(table.find("hall ("), std::string::npos) << table;
    EXPECT_NE(render_prometheus(r).find("mqtt_presence_excluded_messages_total 2"), std::string::npos);

    // once's table, streamed from the table in two passes, is the same text.
    std::ostringstream streamed;
    table_writer writer(streamed, t0, false);
    for (const auto& c : r.clients) writer.measure(c);
    for (const auto& c : r.clients) writer.row(c);
    writer.finish(r.counts, r.stats);
    EXPECT_EQ(streamed.str(), table);
}

// A retained status whose name and ip carry terminal escapes (title, clipboard via OSC 52, clear screen, a forged
// row), C1 controls, bidi overrides and zero-width characters.
scan_result hostile() {
    connection_table t;
    const std::string esc_ip = R"({"status":1,"ip":"\u001b]0;PWNED\u0007\u001b]52;c;ZWNobyBwd25lZA==\u0007\u001b[2J"})";
    t.apply("evil\x1b[2J\nforged  online", decode(esc_ip), true, t0);
    t.apply("c1\xc2\x9b" "31mred", decode("1"), true, t0);
    t.apply("admin\xe2\x80\xae" "nimda", decode("1"), true, t0);      // U+202E right-to-left override
    t.apply("zero\xe2\x80\x8bwidth", decode("1"), true, t0);          // U+200B zero-width space
    t.apply("=HYPERLINK(\"x\")", decode("1"), true, t0);
    t.apply("\xe5\x8f\xb0\xe6\x89\x80", decode("1"), true, t0);     // two wide CJK characters
    return result_of(t);
}

bool has_raw_control(const std::string& text, bool allow_newline) {
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '\n' && allow_newline) continue;
        if (c < 0x20 || c == 0x7f) return true;
        if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) <= 0x9f) return true;  // C1
        if (c == 0xe2 && i + 2 < text.size() && static_cast<unsigned char>(text[i + 1]) == 0x80) {
            const auto d = static_cast<unsigned char>(text[i + 2]);
            if ((d >= 0x8b && d <= 0x8f) || (d >= 0xa8 && d <= 0xae)) return true;  // zero-width, bidi
        }
    }
    return false;
}

TEST(render, text_from_the_network_is_harmless_in_every_human_output) {
    const auto r = hostile();
    const auto table = render_table(r, t0, false);
    EXPECT_FALSE(has_raw_control(table, true)) << table;
    EXPECT_NE(table.find("\\x1b]0;PWNED\\x07"), std::string::npos) << "escaped, still readable:\n" << table;
    EXPECT_NE(table.find("admin\\u{202e}nimda"), std::string::npos) << table;
    EXPECT_NE(table.find("zero\\u{200b}width"), std::string::npos) << table;
    EXPECT_NE(table.find("c1\\x9b31mred"), std::string::npos) << table;
    // One line per row: a newline in a name cannot forge a row.
    EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), static_cast<long>(r.clients.size()) + 2) << table;
    const auto colored = render_table(r, t0, true);
    std::string without_colors = colored;
    for (const char* code : {"\x1b[32m", "\x1b[0m"})
        for (auto at = without_colors.find(code); at != std::string::npos; at = without_colors.find(code))
            without_colors.erase(at, std::string(code).size());
    EXPECT_FALSE(has_raw_control(without_colors, true)) << "only our own colour codes";

    for (const auto& c : r.clients) {
        change ch{change_kind::added, std::nullopt, c};
        EXPECT_FALSE(has_raw_control(render_change_line(ch, t0), true)) << render_change_line(ch, t0);
    }
    const auto csv = render_csv(r);
    EXPECT_FALSE(has_raw_control(csv, true)) << csv;
    EXPECT_NE(csv.find("\"'=HYPERLINK(\"\"x\"\")\""), std::string::npos) << "a formula is not a formula:\n" << csv;
    const auto prom = render_prometheus(r);
    EXPECT_FALSE(has_raw_control(prom, true)) << prom;
    // JSON keeps the data exactly, escaped per JSON.
    const auto j = nlohmann::json::parse(render_json(r));
    bool found = false;
    for (const auto& c : j["clients"]) found |= c["ip"] == "\x1b]0;PWNED\x07\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J";
    EXPECT_TRUE(found);
}

TEST(render, table_columns_are_measured_in_terminal_cells) {
    const auto r = hostile();
    const auto table = render_table(r, t0, false);
    // Every row's STATE column starts at the same cell, whatever the name's bytes.
    std::istringstream lines(table);
    std::string line;
    std::vector<std::size_t> columns;
    while (std::getline(lines, line)) {
        const auto at = line.find("connected");
        if (at == std::string::npos || line.find(" connected,") != std::string::npos) continue;
        std::size_t cells = 0;
        for (std::size_t i = 0; i < at; ++i) {
            const auto c = static_cast<unsigned char>(line[i]);
            if ((c & 0xC0) == 0x80) continue;
            cells += c >= 0xe3 && c <= 0xe9 ? 2 : 1;  // the CJK characters here are 3-byte, 2-cell
        }
        columns.push_back(cells);
    }
    ASSERT_EQ(columns.size(), r.clients.size()) << table;
    for (auto c : columns) EXPECT_EQ(c, columns.front()) << table;
}

TEST(render, a_table_cut_to_a_screenful_says_how_many_rows_are_below) {
    auto r = sample();
    EXPECT_EQ(render_table(r, t0, false).find("more below"), std::string::npos) << "every row is shown";
    r.clients.resize(1);
    const auto text = render_table(r, t0, false);
    EXPECT_NE(text.find("... 2 more below"), std::string::npos) << text;
    EXPECT_NE(text.find("1 connected, 1 disconnected, 1 unknown"), std::string::npos) << "counts cover all rows";
}

TEST(render, snapshot_writer_streams_many_rows_in_chunks) {
    connection_table t;
    for (int i = 0; i < 3000; ++i)
        t.apply("sensor-" + std::to_string(i),
                decode(R"({"status":1,"epoch":7,"ts":1700000000123,"ip":"10.0.0.5","host":"h1","fw":"1.4"})"), true, t0);
    std::ostringstream json, ndjson;
    snapshot_writer jw(json, snapshot_format::json), nw(ndjson, snapshot_format::ndjson);
    t.for_each_sorted([&](const client_status& row) {
        auto c = row;
        c.topic = "s/" + c.client;
        jw.row(c);
        nw.row(c);
    });
    jw.finish(t.counts(), t.stats());
    nw.finish(t.counts(), t.stats());
    ASSERT_GT(json.str().size(), 3u * 64 * 1024) << "more than a few buffers' worth";
    const auto j = nlohmann::json::parse(json.str());
    ASSERT_EQ(j["clients"].size(), 3000u);
    EXPECT_EQ(j["clients"][0]["client"], "sensor-0");
    EXPECT_EQ(j["clients"][2999]["client"], "sensor-999") << "sorted by name";
    EXPECT_EQ(j["counts"]["connected"], 3000);
    scan_result r;
    r.clients = t.snapshot();
    for (auto& c : r.clients) c.topic = "s/" + c.client;
    r.counts = t.counts();
    r.stats = t.stats();
    EXPECT_EQ(json.str(), render_json(r)) << "streamed and whole snapshots are the same text";
    EXPECT_EQ(ndjson.str(), render_ndjson(r));
}

TEST(render, change_lines) {
    connection_table t;
    t.apply("s1", decode("1"), false, t0);
    auto c = t.apply("s1", decode(R"({"status":0,"reason":"lost"})"), false, t0 + 5s);
    ASSERT_TRUE(c);
    c->current.topic = "sensors/connected/s1";
    EXPECT_EQ(render_change_line(*c, t0 + 5s), "2023-11-14T22:13:25.123Z s1 connected -> disconnected [lost]\n");
    const auto j = nlohmann::json::parse(render_change_json(*c));
    EXPECT_EQ(j["event"], "changed");
    EXPECT_EQ(j["previous"], "connected");
    EXPECT_EQ(j["client"]["topic"], "sensors/connected/s1");
}

TEST(render, iso8601_matches_gmtime_across_eras_and_leap_days) {
    // Leap days, century rules, before 1970, the largest ts a payload may carry, and a spread in between.
    std::vector<std::int64_t> ms{0, -1, 951782400000, 951868799999, 4107542400000, -2208988800001, 1700000000123,
                                 8999999999999};
    for (std::int64_t v = -3'000'000'000'000; v < 9'000'000'000'000; v += 7'777'777'777) ms.push_back(v);
    for (const auto v : ms) {
        const std::time_t secs = static_cast<std::time_t>(v / 1000 - (v % 1000 < 0 ? 1 : 0));
        std::tm tm{};
        gmtime_r(&secs, &tm);
        char expected[64];
        const auto n = std::strftime(expected, sizeof expected, "%Y-%m-%dT%H:%M:%S", &tm);
        std::snprintf(expected + n, sizeof expected - n, ".%03dZ", static_cast<int>(((v % 1000) + 1000) % 1000));
        EXPECT_EQ(format_iso8601(time_point(std::chrono::milliseconds(v))), expected) << v << " ms";
    }
}

TEST(duration, parse_and_format) {
    EXPECT_EQ(parse_duration("500ms"), 500ms);
    EXPECT_EQ(parse_duration("5s"), 5s);
    EXPECT_EQ(parse_duration("5"), 5s);
    EXPECT_EQ(parse_duration("10m"), 10min);
    EXPECT_EQ(parse_duration("2h"), 2h);
    EXPECT_EQ(parse_duration("7d"), 168h);
    for (const char* bad : {"", "s", "5x", "-5s", "5 s", "99999999999s"}) {
        try {
            (void)parse_duration(bad);
            ADD_FAILURE() << "accepted " << bad;
        } catch (const error& e) {
            EXPECT_NE(std::string(e.what()).find("write e.g. 500ms"), std::string::npos) << e.what();
        }
    }
    EXPECT_EQ(format_duration(850ms), "850ms");
    EXPECT_EQ(format_duration(42s), "42s");
    EXPECT_EQ(format_duration(312s), "5m12s");
    EXPECT_EQ(format_duration(3h + 4min), "3h04m");
    EXPECT_EQ(format_duration(53h), "2d05h");
}

}  // namespace

namespace {

// The broker's own count of its clients, with its age: a retained sample predates the scanner's connection.
TEST(render, the_brokers_client_count_says_how_old_it_is) {
    auto r = sample();
    scanner_status st;
    st.connected = true;
    st.sync = sync_state::complete;
    st.broker_clients = 7;
    st.broker_clients_at = t0;
    r.scanner = st;
    const auto before = render_table(r, t0 + 4s, false);
    EXPECT_NE(before.find("the broker counted 7 clients before this scanner connected"), std::string::npos) << before;
    r.scanner->broker_clients_live = true;
    const auto live = render_table(r, t0 + 4s, false);
    EXPECT_NE(live.find("the broker counts 7 clients ($SYS, sampled 4s ago; this scanner included)"),
              std::string::npos)
        << live;
}

}  // namespace

namespace {

// A frame's lines cut to the window: colour sequences take no cell and still end, wide characters take two, padding
// is no content, "…" marks a cut.
TEST(render, fit_to_width_cuts_lines_by_cells_and_keeps_colours_closed) {
    using mqtt_presence::fit_to_width;
    EXPECT_EQ(fit_to_width("short   \nlonger line here", 8), "short\nlonger \u2026");
    EXPECT_EQ(fit_to_width("\x1b[31mred\x1b[0m text", 6), "\x1b[31mred\x1b[0m t\u2026\x1b[0m");
    EXPECT_EQ(fit_to_width("\u6771\u4eac\u6771\u4eac", 5), "\u6771\u4eac\u2026") << "two cells each";
    EXPECT_EQ(fit_to_width("exactly8", 8), "exactly8");
}

}  // namespace

namespace {

// Rows of several brokers carry their broker in every format: JSON's first member, CSV's first column (when the
// writer is told), a Prometheus label, the table's first column, a change line's prefix; a name to the terminal and
// to Prometheus is made harmless as any other.
TEST(render, rows_of_several_brokers_carry_their_broker_everywhere) {
    auto r = sample();
    for (auto& c : r.clients) c.broker = c.client == "garage" ? "site-b" : "site-a";
    const auto j = nlohmann::ordered_json::parse(render_json(r));
    EXPECT_EQ(j["clients"][0].begin().key(), "broker");
    EXPECT_EQ(j["clients"][0]["broker"], "site-a");
    std::ostringstream csv;
    {
        snapshot_writer w(csv, snapshot_format::csv, true);
        for (const auto& c : r.clients) w.row(c);
        w.finish(r.counts, r.stats);
    }
    EXPECT_EQ(csv.str().rfind("broker,client,state,", 0), 0u) << csv.str();
    EXPECT_NE(csv.str().find("\nsite-b,garage,disconnected,"), std::string::npos) << csv.str();
    EXPECT_EQ(render_csv(r).rfind("client,state,", 0), 0u) << "one broker: the columns as always";
    EXPECT_NE(render_prometheus(r).find("mqtt_presence_up{broker=\"site-b\",client=\"garage\""), std::string::npos);
    const auto table = render_table(r, t0 + 2s, false);
    EXPECT_EQ(table.rfind("BROKER  CLIENT", 0), 0u) << table;
    EXPECT_NE(table.find("\nsite-b  garage"), std::string::npos) << table;
    EXPECT_EQ(render_table(sample(), t0, false).find("BROKER"), std::string::npos) << "no names, no column";
    auto twice = r;  // the same name on two brokers: two rows told apart by BROKER, not by their topics
    twice.clients = {r.clients[2], r.clients[2]};
    twice.clients[1].broker = "site-b";
    const auto two = render_table(twice, t0 + 2s, false);
    EXPECT_NE(two.find("\nsite-a  kitchen  "), std::string::npos) << two;
    EXPECT_NE(two.find("\nsite-b  kitchen  "), std::string::npos) << two;
    change c;
    c.kind = change_kind::added;
    c.current = r.clients[0];
    EXPECT_NE(render_change_line(c, t0).find(" site-a: "), std::string::npos) << render_change_line(c, t0);
}

}  // namespace
