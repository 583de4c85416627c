#include "clean_stop.hpp"

#include <algorithm>

#include "paho_sockets.hpp"
#include "paho_util.hpp"
#include "uri.hpp"

namespace mqtt_presence::detail {

namespace {
std::chrono::milliseconds left_until(std::chrono::steady_clock::time_point deadline) {
    return std::max(std::chrono::milliseconds(0), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                      deadline - std::chrono::steady_clock::now()));
}
}  // namespace

bool begin_end_of_connection(mqtt::async_client& client, const mqtt::delivery_token_ptr& clean_status, bool mqtt5,
                             std::chrono::steady_clock::time_point deadline, std::string& problem,
                             mqtt::token_ptr& ending) noexcept {
    using std::chrono::milliseconds;
    // The end of the connection needs a moment of the budget too: Paho must send the DISCONNECT (MQTT 5: reason
    // 0x04) before the client is destroyed, or its destructor sends a plain one that drops the will.
    const auto reserve = std::clamp(left_until(deadline) / 4, milliseconds(0), milliseconds(500));
    bool delivered = false;
    try {
        if (clean_status) delivered = clean_status->wait_for(std::max(milliseconds(0), left_until(deadline) - reserve));
    } catch (const std::exception& e) {
        problem = std::string("the clean \"disconnected\" was refused: ") + e.what();
    }
    try {
        if (!client.is_connected()) return delivered;
        if (delivered) {
            ending = client.disconnect(0);
        } else if (mqtt5) {
            ending = client.disconnect(disconnect_keeping_will());  // the broker publishes the will
        } else if (!drop_connection(client.get_client_id(), parse_server_uri(client.get_server_uri()).port)) {
            // 3.1.1 has no "disconnect with will": only a connection that ends without DISCONNECT keeps it.
            problem = "the clean \"disconnected\" was not acknowledged and the connection could not be ended "
                      "without DISCONNECT; the broker drops the will";
            ending = client.disconnect(0);
        }
    } catch (...) {
        // not connected (any more): nothing to disconnect
    }
    return delivered;
}

void wait_end_of_connection(const mqtt::token_ptr& ending, std::chrono::steady_clock::time_point deadline) noexcept {
    try {
        if (ending) ending->wait_for(left_until(deadline));
    } catch (...) {
        // the connection ended anyway
    }
}

bool finish_clean_stop(mqtt::async_client& client, const mqtt::delivery_token_ptr& clean_status, bool mqtt5,
                       std::chrono::steady_clock::time_point deadline, std::string& problem) noexcept {
    mqtt::token_ptr ending;
    const bool delivered = begin_end_of_connection(client, clean_status, mqtt5, deadline, problem, ending);
    wait_end_of_connection(ending, deadline);
    return delivered;
}

}  // namespace mqtt_presence::detail
