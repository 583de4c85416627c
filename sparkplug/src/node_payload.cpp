#include <mqtt_presence/sparkplug/node_payload.hpp>

#include <pb_decode.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "sparkplug_b.pb.h"

namespace mqtt_presence::sparkplug {
namespace {

using payload_t = org_eclipse_tahu_protobuf_Payload;
using metric_t = org_eclipse_tahu_protobuf_Payload_Metric;
constexpr std::string_view bd_seq_name = "bdSeq";

// Largest timestamp believed: system_clock counts nanoseconds in 64 bits, which ends in the year 2262.
constexpr auto max_timestamp_ms = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max() / 1'000'000);

// A metric's name, compared with "bdSeq" as it streams by (names can be long; nothing is stored).
bool read_name(pb_istream_t* stream, const pb_field_t*, void** arg) {
    auto* is_bd_seq = static_cast<bool*>(*arg);
    const auto length = stream->bytes_left;
    *is_bd_seq = length == bd_seq_name.size();
    char buf[bd_seq_name.size()];
    if (!*is_bd_seq) return pb_read(stream, nullptr, length);
    if (!pb_read(stream, reinterpret_cast<pb_byte_t*>(buf), length)) return false;
    *is_bd_seq = std::string_view(buf, length) == bd_seq_name;
    return true;
}

// One metric: when it is bdSeq with an integer value, that value is the session.
bool read_metric(pb_istream_t* stream, const pb_field_t*, void** arg) {
    auto* session = static_cast<std::optional<std::uint64_t>*>(*arg);
    bool is_bd_seq = false;
    metric_t metric = org_eclipse_tahu_protobuf_Payload_Metric_init_zero;
    metric.name.funcs.decode = read_name;
    metric.name.arg = &is_bd_seq;
    if (!pb_decode(stream, org_eclipse_tahu_protobuf_Payload_Metric_fields, &metric)) return false;
    if (!is_bd_seq) return true;
    if (metric.which_value == org_eclipse_tahu_protobuf_Payload_Metric_long_value_tag)
        *session = metric.value.long_value;
    else if (metric.which_value == org_eclipse_tahu_protobuf_Payload_Metric_int_value_tag)
        *session = metric.value.int_value;
    return true;
}

bool unreadable(status_record& out, std::string why, std::string_view payload) {
    out.status = state::unknown;
    out.detail = std::move(why);
    static constexpr char hex[] = "0123456789abcdef";
    out.raw.clear();
    for (std::size_t i = 0; i < std::min<std::size_t>(payload.size(), 32); ++i) {
        const auto c = static_cast<unsigned char>(payload[i]);
        out.raw += hex[c >> 4];
        out.raw += hex[c & 15];
    }
    return false;
}

}  // namespace

bool read_node_payload(std::string_view payload, status_record& out) noexcept {
    try {
        std::optional<std::uint64_t> session;
        payload_t message = org_eclipse_tahu_protobuf_Payload_init_zero;
        message.metrics.funcs.decode = read_metric;
        message.metrics.arg = &session;
        auto stream = pb_istream_from_buffer(reinterpret_cast<const pb_byte_t*>(payload.data()), payload.size());
        if (!pb_decode(&stream, org_eclipse_tahu_protobuf_Payload_fields, &message))
            return unreadable(out, std::string("not a Sparkplug B payload: ") + PB_GET_ERROR(&stream), payload);
        if (!session) return unreadable(out, "Sparkplug B payload without a bdSeq metric", payload);
        out.session = *session;
        if (message.has_timestamp && message.timestamp <= max_timestamp_ms)
            out.timestamp = time_point(std::chrono::milliseconds(static_cast<std::int64_t>(message.timestamp)));
        out.detail = "bdSeq " + std::to_string(*session);
        return true;
    } catch (...) {  // out of memory for a string
        out.status = state::unknown;
        return false;
    }
}

}  // namespace mqtt_presence::sparkplug
