#include "client_id_claim.hpp"

#include <nlohmann/json.hpp>

namespace mqtt_presence::detail {

std::string claim_topic(const std::string& client_id) {
    if (client_id.empty() || client_id.find_first_of("+#") != std::string::npos) return {};
    return claim_topic_prefix + client_id;
}

std::string encode_claim(const client_id_claim& claim) {
    // The token as text: JSON readers that hold numbers in doubles would round a 64-bit one.
    return nlohmann::json{{"started", claim.started_ms}, {"token", std::to_string(claim.token)}, {"at", claim.at_ms}}
        .dump();
}

std::optional<client_id_claim> decode_claim(const std::string& payload) {
    const auto json = nlohmann::json::parse(payload, nullptr, false);
    if (!json.is_object()) return std::nullopt;
    const auto started = json.find("started");
    const auto token = json.find("token");
    const auto at = json.find("at");
    if (started == json.end() || token == json.end() || at == json.end() || !started->is_number_unsigned() ||
        !token->is_string() || !at->is_number_unsigned())
        return std::nullopt;
    client_id_claim claim{started->get<std::uint64_t>(), 0, at->get<std::uint64_t>()};
    try {
        std::size_t used = 0;
        const auto& text = token->get_ref<const std::string&>();
        claim.token = std::stoull(text, &used);
        if (used != text.size()) return std::nullopt;
    } catch (const std::exception&) {
        return std::nullopt;
    }
    return claim;
}

bool is_fresh(const client_id_claim& rival, std::uint64_t now_ms) {
    const auto window = static_cast<std::uint64_t>(std::chrono::milliseconds(claim_freshness).count());
    return rival.at_ms <= now_ms ? now_ms - rival.at_ms <= window : rival.at_ms - now_ms <= window;
}

bool is_newcomer(const client_id_claim& mine, const client_id_claim& rival) {
    if (mine.started_ms != rival.started_ms) return mine.started_ms > rival.started_ms;
    return mine.token > rival.token;
}

}  // namespace mqtt_presence::detail
