#include <mqtt_presence/status_codec.hpp>

#include <array>
#include <cstring>
#include <cmath>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include <mqtt_presence/error.hpp>

#include "codec_reference.hpp"
#include "text_util.hpp"

namespace mqtt_presence {
namespace {

using json = nlohmann::json;

// Largest "ts" accepted: system_clock counts nanoseconds in 64 bits, which ends in the year 2262.
constexpr std::uint64_t max_ts_ms = 9'000'000'000'000ULL;
constexpr std::uint64_t max_heartbeat_s = 7ULL * 24 * 3600;
constexpr int max_json_depth = 32;

struct token_meaning {
    std::string_view word;
    state status;
    std::string_view detail;
};

// Every word any convention uses for a state (see the header). Looked up case-insensitively.
constexpr std::array<token_meaning, 14> tokens{{
    {"1", state::connected, ""},
    {"2", state::connected, "device-ok"},  // mqtt-smarthome: connected to broker and hardware
    {"true", state::connected, ""},
    {"online", state::connected, ""},
    {"connected", state::connected, ""},
    {"ready", state::connected, ""},
    {"init", state::connected, "init"},      // Homie: connected, still configuring
    {"alert", state::connected, "alert"},    // Homie: connected, needs attention
    {"0", state::disconnected, ""},
    {"false", state::disconnected, ""},
    {"offline", state::disconnected, ""},
    {"disconnected", state::disconnected, ""},
    {"lost", state::disconnected, "lost"},   // Homie's will
    {"sleeping", state::disconnected, "sleeping"},  // Homie: announced before it sleeps and disconnects
}};

const token_meaning* find_token(std::string_view word) noexcept {
    if (word.size() > 12) return nullptr;
    for (const auto& t : tokens)
        if (detail::iequals(t.word, word)) return &t;
    return nullptr;
}

// Empties a record for reuse, keeping its strings' storage.
void reset(status_record& r) noexcept {
    r.status = state::unknown;
    r.cleared = false;
    r.epoch.reset();
    r.timestamp.reset();
    r.heartbeat.reset();
    for (auto* text : {&r.detail, &r.reason, &r.client, &r.ip, &r.host, &r.meta, &r.raw}) text->clear();
}

// Makes `r` say: state unknown, why, and a printable copy of the payload.
void mark_unreadable(status_record& r, std::string_view payload, std::string why) {
    reset(r);
    r.detail = std::move(why);
    r.raw = detail::printable(payload, max_raw_copy);
}

// The members of the contract (docs/conventions.md, "The contract: topics and payloads"); everything else is metadata.
enum class status_member : std::uint8_t {
    extra, status, online, state, client, epoch, ts, timestamp, ip, host, hb, reason, value, time
};
enum value_kind : std::uint8_t { kind_bool = 1, kind_number = 2, kind_string = 4 };
struct member_rule {
    std::string_view name;
    status_member id;
    std::uint8_t kinds;    // the value kinds it takes
    const char* expected;  // what the error says when the value is of another kind
    // A name common enough in metadata ("value", "time") that a value of another kind is metadata, not an error;
    // such a member is not reserved (is_status_member).
    bool metadata_otherwise = false;
};
// The one list of accepted members: a new convention's member is a line here and a case in status_sax::member().
constexpr member_rule rules[] = {
    {"status", status_member::status, kind_bool | kind_number | kind_string,
     "0, 1, 2, true, false or \"online\"/\"offline\""},
    {"online", status_member::online, kind_bool, "true or false"},
    {"state", status_member::state, kind_string, "\"online\" or \"offline\""},
    {"client", status_member::client, kind_string, "a string"},
    {"epoch", status_member::epoch, kind_number, "a whole number >= 0"},
    {"ts", status_member::ts, kind_number, "milliseconds since 1970 as a whole number"},
    {"timestamp", status_member::timestamp, kind_number, "milliseconds since 1970 as a whole number"},
    {"ip", status_member::ip, kind_string, "a string"},
    {"host", status_member::host, kind_string, "a string"},
    {"hb", status_member::hb, kind_number, "a whole number of seconds"},
    {"reason", status_member::reason, kind_string, "a string"},
    // zwave-js-ui's client status: {"value":true,"time":ms}.
    {"value", status_member::value, kind_bool, "true or false", true},
    {"time", status_member::time, kind_number, "milliseconds since 1970 as a whole number", true},
};

template <class T>
constexpr std::uint8_t kind_of() {
    return std::is_same_v<T, bool>                             ? kind_bool
           : std::is_same_v<T, json::number_unsigned_t>        ? kind_number
           : std::is_same_v<T, json::string_t>                 ? kind_string
                                                               : 0;
}

// The rules by name length (computed from the list): a key is compared with the one or few names of its length.
struct same_length {
    std::uint8_t count = 0;
    std::uint8_t rule[std::size(rules)] = {};
};
constexpr std::size_t longest_name = 9;
constexpr std::array<same_length, longest_name + 1> index_by_length() {
    std::array<same_length, longest_name + 1> index{};
    for (std::uint8_t i = 0; i < std::size(rules); ++i) {
        auto& bucket = index[rules[i].name.size()];
        bucket.rule[bucket.count++] = i;
    }
    return index;
}
constexpr auto rules_by_length = index_by_length();

// The rule named `k` among the names of length N: with N a constant, each comparison is a few inlined loads.
template <std::size_t N>
const member_rule* find_rule_of_length(const char* k) noexcept {
    constexpr const same_length& bucket = rules_by_length[N];
    for (std::uint8_t i = 0; i < bucket.count; ++i)
        if (std::memcmp(rules[bucket.rule[i]].name.data(), k, N) == 0) return &rules[bucket.rule[i]];
    return nullptr;
}

// Found once per key; nullptr: metadata.
const member_rule* find_rule(std::string_view k) noexcept {
    switch (k.size()) {
        case 1: return find_rule_of_length<1>(k.data());
        case 2: return find_rule_of_length<2>(k.data());
        case 3: return find_rule_of_length<3>(k.data());
        case 4: return find_rule_of_length<4>(k.data());
        case 5: return find_rule_of_length<5>(k.data());
        case 6: return find_rule_of_length<6>(k.data());
        case 7: return find_rule_of_length<7>(k.data());
        case 8: return find_rule_of_length<8>(k.data());
        case 9: return find_rule_of_length<9>(k.data());
        default: return nullptr;
    }
}
static_assert(longest_name == 9, "find_rule has a case for every length up to the longest name");

// Reads a JSON status object with nlohmann's SAX interface: the known members (the rules above) go straight into
// the record, other top-level members are collected into `meta`; an extra member's object or array is built by
// nlohmann's own DOM builder. No DOM is built for the common payload.
class status_sax {
public:
    using member_id = status_member;
    static member_id identify(std::string_view k) noexcept {
        const auto* r = find_rule(k);
        return r ? r->id : member_id::extra;
    }

    using number_integer_t = json::number_integer_t;
    using number_unsigned_t = json::number_unsigned_t;
    using number_float_t = json::number_float_t;
    using string_t = json::string_t;
    using binary_t = json::binary_t;

    explicit status_sax(status_record& out) : record(out) {}

    status_record& record;  // filled in place: the caller's return value, never copied
    std::string error;
    bool has_status = false;

    // Inside an extra member's object or array, every event goes to nlohmann's own DOM builder.
    bool null() { return nested_ ? nested_->null() : scalar(nullptr, "null"); }
    bool boolean(bool v) { return nested_ ? nested_->boolean(v) : scalar(v, v ? "true" : "false"); }
    bool number_integer(number_integer_t v) {
        return nested_ ? nested_->number_integer(v) : scalar(v, "a negative number");
    }
    bool number_unsigned(number_unsigned_t v) { return nested_ ? nested_->number_unsigned(v) : scalar(v, "a number"); }
    bool number_float(number_float_t v, const string_t& text) {
        return nested_ ? nested_->number_float(v, text) : scalar(v, "a fractional number");
    }
    bool string(string_t& v) { return nested_ ? nested_->string(v) : scalar(std::move(v), "a string"); }
    bool binary(binary_t&) { return fail("binary values are not JSON"); }

    bool start_object(std::size_t n) { return open(json::value_t::object, n); }
    bool start_array(std::size_t n) { return open(json::value_t::array, n); }
    bool end_object() { return close(true); }
    bool end_array() { return close(false); }

    bool key(string_t& k) {
        if (nested_) return nested_->key(k);
        key_ = std::move(k);
        rule_ = find_rule(key_);
        member_ = rule_ ? rule_->id : member_id::extra;
        return true;
    }

    bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) {
        if (error.empty()) error = "invalid JSON at byte " + std::to_string(position);
        return false;
    }

    [[nodiscard]] std::string meta_text() const { return meta_.is_null() ? std::string() : meta_.dump(); }

    // What the members imply once all are read: zwave-js-ui's "time" is the time stamp when no "ts"/"timestamp"
    // gave one; a Sparkplug STATE's "timestamp" is its session's epoch, so that an offline older than the current
    // online is ignored (Sparkplug 3.0, host application STATE).
    void finish() {
        if (!record.timestamp && time_) record.timestamp = time_;
        if (online_seen_ && !record.epoch && record.timestamp)
            record.epoch = static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::milliseconds>(record.timestamp->time_since_epoch()).count());
    }

private:
    bool fail(std::string why) {
        if (error.empty()) error = std::move(why);
        return false;
    }

    // A container begins: the top-level object, or (in nlohmann's DOM builder) an extra member's value.
    bool open(json::value_t kind, std::size_t n) {
        if (++depth_ > max_json_depth) return fail("JSON nested deeper than " + std::to_string(max_json_depth));
        if (depth_ == 1) {  // the payload itself: nothing to build
            if (kind != json::value_t::object) return fail("the JSON payload is not an object");
            return true;
        }
        if (depth_ == 2) {
            if (member_ != member_id::extra && !rule_->metadata_otherwise)
                return fail("member \"" + key_ + "\" is an object or array");
            nested_value_ = json();
            nested_.emplace(nested_value_);
        }
        return kind == json::value_t::object ? nested_->start_object(n) : nested_->start_array(n);
    }

    bool close(bool object) {
        if (depth_-- == 1) return true;
        const bool ok = object ? nested_->end_object() : nested_->end_array();
        if (depth_ == 1) {  // the extra member's value is complete
            nested_.reset();
            meta_object()[key_] = std::move(nested_value_);
        }
        return ok;
    }

    json& meta_object() {
        if (meta_.is_null()) meta_ = json::object();
        return meta_;
    }

    template <class V>
    bool scalar(V&& v, std::string_view type_name) {
        if (depth_ == 0) return fail("the JSON payload is not an object");
        // A top-level extra member with a plain value, or a lenient member's value of another kind: metadata.
        if (member_ == member_id::extra ||
            (rule_->metadata_otherwise && (rule_->kinds & kind_of<std::decay_t<V>>()) == 0)) {
            meta_object()[key_] = json(std::forward<V>(v));
            return true;
        }
        return member(std::forward<V>(v), type_name);
    }

    bool set_state(state s, std::string_view detail_text) {
        if (has_status && record.status != s)
            return fail("members \"status\", \"online\" and \"state\" disagree");
        has_status = true;
        record.status = s;
        if (!detail_text.empty()) record.detail = std::string(detail_text);
        return true;
    }

    bool wrong_type(std::string_view type_name, std::string_view expected) {
        return fail("member \"" + key_ + "\" is " + std::string(type_name) + ", expected " + std::string(expected));
    }

    // A known member's value: its kind is checked against the rule, then it sets its part of the record.
    template <class V>
    bool member(V&& v, std::string_view type_name) {
        using T = std::decay_t<V>;
        if ((rule_->kinds & kind_of<T>()) == 0) return wrong_type(type_name, rule_->expected);
        if constexpr (std::is_same_v<T, bool>) {  // status, online, value
            if (member_ == member_id::online) online_seen_ = true;
            return set_state(v ? state::connected : state::disconnected, "");
        } else if constexpr (std::is_same_v<T, number_unsigned_t>) {
            switch (member_) {
                case member_id::status:
                    if (v == 0) return set_state(state::disconnected, "");
                    if (v == 1) return set_state(state::connected, "");
                    if (v == 2) return set_state(state::connected, "device-ok");
                    return fail("member \"status\" is " + std::to_string(v) + ", expected 0, 1 or 2");
                case member_id::epoch: record.epoch = v; return true;
                case member_id::time:  // zwave-js-ui's; a number out of range stays metadata
                    if (v > max_ts_ms) meta_object()[key_] = json(v);
                    else time_ = time_point(std::chrono::milliseconds(static_cast<std::int64_t>(v)));
                    return true;
                case member_id::ts:
                case member_id::timestamp:
                    if (v > max_ts_ms) return fail("member \"" + key_ + "\" is out of range (milliseconds since 1970)");
                    if (member_ == member_id::ts || !record.timestamp)  // "ts" wins over "timestamp"
                        record.timestamp = time_point(std::chrono::milliseconds(static_cast<std::int64_t>(v)));
                    return true;
                default:  // hb
                    if (v > max_heartbeat_s) return fail("member \"hb\" is out of range (seconds, at most a week)");
                    if (v > 0) record.heartbeat = std::chrono::seconds(static_cast<std::int64_t>(v));
                    return true;
            }
        } else if constexpr (std::is_same_v<T, string_t>) {
            switch (member_) {
                case member_id::status: return word_state(v, "status");
                case member_id::state: return word_state(v, "state");
                case member_id::client: record.client = std::move(v); return true;
                case member_id::ip: record.ip = std::move(v); return true;
                case member_id::host: record.host = std::move(v); return true;
                default: record.reason = std::move(v); return true;  // reason
            }
        } else {
            return false;  // not reached: no rule takes another kind
        }
    }

    bool word_state(const std::string& word, std::string_view member_name) {
        const auto* t = find_token(word);
        if (t == nullptr || (t->word[0] >= '0' && t->word[0] <= '9')) {
            std::string why = "member \"" + std::string(member_name) + "\" is the string \"" +
                              detail::printable(word, 40) + "\"";
            if (t != nullptr) why += "; write the number " + std::string(t->word) + " without quotes";
            else why += ", expected \"online\" or \"offline\"";
            return fail(std::move(why));
        }
        return set_state(t->status, t->detail);
    }

    int depth_ = 0;
    bool online_seen_ = false;         // the Sparkplug STATE form, {"online":..,"timestamp":..}
    std::optional<time_point> time_;   // zwave-js-ui's "time"
    std::string key_;         // the current top-level member
    member_id member_ = member_id::extra;
    const member_rule* rule_ = nullptr;  // the current top-level member's rule; nullptr for metadata
    json meta_;               // extra top-level members; null until one is seen
    json nested_value_;  // an extra member's object or array, built by nlohmann's DOM builder
    std::optional<nlohmann::detail::json_sax_dom_parser<json>> nested_;
};

// Most status payloads are flat objects of whole numbers, plain ASCII strings and literals (this project's own,
// Sparkplug's STATE, Zigbee2MQTT's bridge state). read_flat_object() reads exactly that subset of JSON and feeds
// the handler the same events nlohmann's parser would; at anything outside the subset (nesting, escapes,
// non-ASCII text, fractions, negative numbers, leading zeros, more than 19 digits, syntax errors) it gives up,
// and nlohmann's parser reads the payload from the start with a fresh handler. So nlohmann decides every case
// but the common one, and the common one skips its lexer's character-by-character token buffer.
enum class flat_result { done, handler_stopped, outside_subset };

template <class Handler>
flat_result read_flat_object(std::string_view text, Handler& handler) {
    const std::size_t n = text.size();
    std::size_t i = 0;
    const auto skip_space = [&] {
        while (i < n && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) ++i;
    };
    const auto at = [&](char c) { return i < n && text[i] == c; };
    const auto literal = [&](std::string_view word) {
        if (text.substr(i, word.size()) != word) return false;
        i += word.size();
        return true;
    };
    std::string token;
    const auto read_string = [&]() -> bool {  // at the opening quote
        const std::size_t start = ++i;
        for (; i < n; ++i) {
            const auto c = static_cast<unsigned char>(text[i]);
            if (c == '"') {
                token.assign(text.data() + start, i - start);
                ++i;
                return true;
            }
            if (c == '\\' || c < 0x20 || c >= 0x80) return false;
        }
        return false;
    };

    using r = flat_result;
    skip_space();
    if (!at('{')) return r::outside_subset;
    ++i;
    if (!handler.start_object(static_cast<std::size_t>(-1))) return r::handler_stopped;
    skip_space();
    if (at('}')) {
        ++i;
    } else {
        for (;;) {
            skip_space();
            if (!at('"') || !read_string()) return r::outside_subset;
            if (!handler.key(token)) return r::handler_stopped;
            skip_space();
            if (!at(':')) return r::outside_subset;
            ++i;
            skip_space();
            bool accepted = true;
            if (at('"')) {
                if (!read_string()) return r::outside_subset;
                accepted = handler.string(token);
            } else if (i < n && text[i] >= '0' && text[i] <= '9') {
                const std::size_t start = i;
                std::uint64_t value = 0;
                for (; i < n && text[i] >= '0' && text[i] <= '9'; ++i)
                    value = value * 10 + static_cast<std::uint64_t>(text[i] - '0');
                const std::size_t digits = i - start;
                if ((digits > 1 && text[start] == '0') || digits > 19 || at('.') || at('e') || at('E'))
                    return r::outside_subset;
                accepted = handler.number_unsigned(value);
            } else if (literal("true")) {
                accepted = handler.boolean(true);
            } else if (literal("false")) {
                accepted = handler.boolean(false);
            } else if (literal("null")) {
                accepted = handler.null();
            } else {
                return r::outside_subset;
            }
            if (!accepted) return r::handler_stopped;
            skip_space();
            if (at(',')) {
                ++i;
                continue;
            }
            if (!at('}')) return r::outside_subset;
            ++i;
            break;
        }
    }
    if (!handler.end_object()) return r::handler_stopped;
    skip_space();
    return i == n ? r::done : r::outside_subset;
}

// `fast`: try the flat-object reader first (false: nlohmann's parser alone, the reference the fuzzer compares with).
void decode_json(std::string_view payload, status_record& out, bool fast) {
    std::optional<status_sax> sax(std::in_place, out);
    bool ok = false;
    switch (fast ? read_flat_object(payload, *sax) : flat_result::outside_subset) {
        case flat_result::done: ok = true; break;
        case flat_result::handler_stopped: break;
        case flat_result::outside_subset:
            reset(out);
            sax.emplace(out);
            try {
                ok = json::sax_parse(payload.data(), payload.data() + payload.size(), &*sax);
            } catch (const std::exception& e) {
                if (sax->error.empty()) sax->error = std::string("invalid JSON: ") + e.what();
            }
            break;
    }
    if (!ok || !sax->error.empty())
        return mark_unreadable(out, payload, sax->error.empty() ? "invalid JSON" : sax->error);
    if (!sax->has_status)
        return mark_unreadable(out, payload,
                               "JSON without a status (expected member \"status\", \"online\" or \"state\")");
    sax->finish();
    out.meta = sax->meta_text();
}

// Fills `r` (an empty record) from the payload.
void read_payload(std::string_view payload, status_record& r, bool fast) {
    if (payload.empty()) {
        r.cleared = true;
        return;
    }
    if (payload.size() > max_status_payload)
        return mark_unreadable(r, payload, "payload of " + std::to_string(payload.size()) + " bytes is too large");
    const auto text = detail::trim(payload);
    if (const auto* t = find_token(text)) {  // no word has a NUL byte
        r.status = t->status;
        r.detail = t->detail;
        return;
    }
    // nlohmann's lexer reads NUL as the end of input, so it would accept "{...}\0junk": reject it first.
    if (payload.find('\0') != std::string_view::npos) return mark_unreadable(r, payload, "payload contains a NUL byte");
    if (text.empty()) return mark_unreadable(r, payload, "payload is only whitespace");
    if (text.front() == '{') return decode_json(text, r, fast);
    mark_unreadable(r, payload, "not a status word (expected e.g. 1/0, online/offline, or JSON)");
}

// Fills `r` (an empty record); never throws.
void decode_into(std::string_view payload, status_record& r, bool fast = true) noexcept {
    try {
        read_payload(payload, r, fast);
    } catch (...) {
        // Only allocation can fail here; report it as unreadable rather than crash a callback.
        reset(r);
        r.detail = "out of memory";  // short enough to need no allocation
    }
}

}  // namespace

std::string_view to_string(state s) noexcept {
    switch (s) {
        case state::connected: return "connected";
        case state::disconnected: return "disconnected";
        case state::unknown: break;
    }
    return "unknown";
}

std::string_view to_string(payload_format f) noexcept {
    switch (f) {
        case payload_format::json: return "json";
        case payload_format::text: return "text";
        case payload_format::plain: break;
    }
    return "plain";
}

std::optional<state> parse_state(std::string_view text) noexcept {
    for (auto s : {state::connected, state::disconnected, state::unknown})
        if (detail::iequals(text, to_string(s))) return s;
    return std::nullopt;
}

payload_format parse_payload_format(std::string_view text) {
    for (auto f : {payload_format::plain, payload_format::json, payload_format::text})
        if (detail::iequals(text, to_string(f))) return f;
    throw error("unknown payload format \"" + detail::printable(text) + "\"; use plain, json or text");
}


status_record decode(std::string_view payload) noexcept {
    status_record r;  // the one return value (no copy, no move)
    decode_into(payload, r);
    return r;
}

void decode(std::string_view payload, status_record& out) noexcept {
    reset(out);
    decode_into(payload, out);
}

void detail::decode_without_fast_path(std::string_view payload, status_record& out) noexcept {
    reset(out);
    decode_into(payload, out, false);
}

std::string encode(const status_record& record, payload_format format) {
    if (record.status == state::unknown)
        throw error("cannot encode state unknown: a publisher says connected or disconnected");
    const bool up = record.status == state::connected;
    switch (format) {
        case payload_format::plain: return up ? "1" : "0";
        case payload_format::text: return up ? "online" : "offline";
        case payload_format::json: break;
    }
    nlohmann::ordered_json j;
    j["status"] = up ? 1 : 0;
    if (!record.client.empty()) j["client"] = record.client;
    if (record.epoch) j["epoch"] = *record.epoch;
    if (record.timestamp)
        j["ts"] = std::chrono::duration_cast<std::chrono::milliseconds>(record.timestamp->time_since_epoch()).count();
    if (!record.ip.empty()) j["ip"] = record.ip;
    if (!record.host.empty()) j["host"] = record.host;
    if (record.heartbeat) j["hb"] = record.heartbeat->count();
    if (!record.reason.empty()) j["reason"] = record.reason;
    if (!record.meta.empty()) {
        auto meta = nlohmann::ordered_json::parse(record.meta, nullptr, false);
        if (!meta.is_object())
            throw error("metadata must be a JSON object text such as {\"fw\":\"1.2\"}, got: " +
                        detail::printable(record.meta));
        for (auto& [k, v] : meta.items()) {
            if (j.contains(k)) throw error("metadata member \"" + k + "\" clashes with a status member");
            j[k] = v;
        }
    }
    return j.dump();
}

bool is_status_member(std::string_view name) noexcept {
    const auto* rule = find_rule(name);
    return rule != nullptr && !rule->metadata_otherwise;
}

}  // namespace mqtt_presence
