#pragma once
// client_id_claim: which of two processes that share a client id started first.
//
// Two live connections with one client id make the broker drop each in turn, so the two processes are never
// connected at the same time and cannot talk directly. Once a client's session ended within seconds (a takeover is
// suspected), it publishes a retained claim on mqtt-presence/claim/<client id> at each connect, after subscribing
// to that topic: the retained message it gets is the other process's claim. The process that started later is the
// newcomer and stops. A claim that was published long ago is a dead process's leftover, not a rival.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace mqtt_presence::detail {

struct client_id_claim {
    std::uint64_t started_ms = 0;  ///< when the claiming client was created (Unix ms)
    std::uint64_t token = 0;       ///< random: tells our own echo from a rival, and breaks ties of started_ms
    std::uint64_t at_ms = 0;       ///< when the claim was published (Unix ms)
};

/// The topic prefix of claims, reserved for this (like mqtt-presence/paho-wake).
inline constexpr const char* claim_topic_prefix = "mqtt-presence/claim/";
/// A claim older or newer than this (by the receiver's clock) is not a live rival's.
inline constexpr std::chrono::seconds claim_freshness{60};

/// The claim topic of a client id; empty when the id cannot be a topic level (empty, or a wildcard in it).
[[nodiscard]] std::string claim_topic(const std::string& client_id);
[[nodiscard]] std::string encode_claim(const client_id_claim& claim);
/// nullopt for an empty (cleared) or unreadable payload.
[[nodiscard]] std::optional<client_id_claim> decode_claim(const std::string& payload);
/// The rival's claim was published within claim_freshness of `now_ms`, either way (clocks differ a little).
[[nodiscard]] bool is_fresh(const client_id_claim& rival, std::uint64_t now_ms);
/// `mine` started after `rival` (equal start times: the larger token is the newcomer).
[[nodiscard]] bool is_newcomer(const client_id_claim& mine, const client_id_claim& rival);

}  // namespace mqtt_presence::detail
