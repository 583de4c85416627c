#pragma once
// Sparkplug B edge node births and deaths (NBIRTH / NDEATH payloads, protobuf), read with nanopb: only what the
// connected-clients table needs, the payload's timestamp and the bdSeq metric that ties a death to its birth.
//
//   mqtt_presence::scanner_options opts;
//   opts.topics = {std::string(mqtt_presence::topic_scheme::sparkplug_nodes_template)};
//   opts.sparkplug_reader = mqtt_presence::sparkplug::read_node_payload;
//
// Its own library (mqtt_presence_sparkplug), built when Debian's nanopb is found: an app that only wants the
// one-line helper links no protobuf code.

#include <string_view>

#include <mqtt_presence/status_record.hpp>

namespace mqtt_presence::sparkplug {

/// Reads an NBIRTH or NDEATH payload into `out`: session (bdSeq), timestamp (the payload's, ms) and detail
/// ("bdSeq N"). False, with state unknown and the reason in detail, for a payload that is not Sparkplug B protobuf
/// or carries no bdSeq metric. Leaves `out.status` to the caller (the topic says birth or death). Never throws.
bool read_node_payload(std::string_view payload, status_record& out) noexcept;

}  // namespace mqtt_presence::sparkplug
