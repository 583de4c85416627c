#include "clean_stop.hpp"

#include <algorithm>

#include "paho_sockets.hpp"
#include "paho_util.hpp"
#include "uri.hpp"

namespace mqtt_presence::detail {

bool finish_clean_stop(mqtt::async_client& client, const mqtt::delivery_token_ptr& clean_status, bool mqtt5,
                       std::chrono::steady_clock::time_point deadline, std::string& problem) noexcept {
    using std::chrono::milliseconds;
    const auto left = [&] {
        return std::max(milliseconds(0),
                        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now()));
    };
    // The end of the connection needs a moment of the budget too: Paho must send the DISCONNECT (MQTT 5: reason
    // 0x04) before the client is destroyed, or its destructor sends a plain one that drops the will.
    const auto reserve = std::clamp(left() / 4, milliseconds(0), milliseconds(500));
    bool delivered = false;
    try {
        if (clean_status) delivered = clean_status->wait_for(std::max(milliseconds(0), left() - reserve));
    } catch (const std::exception& e) {
        problem = std::string("the clean \"disconnected\" was refused: ") + e.what();
    }
    try {
        if (!client.is_connected()) return delivered;
        if (delivered) {
            client.disconnect(0)->wait_for(left());
        } else if (mqtt5) {
            client.disconnect(disconnect_keeping_will())->wait_for(left());  // the broker publishes the will
        } else if (!drop_connection(client.get_client_id(), parse_server_uri(client.get_server_uri()).port)) {
            // 3.1.1 has no "disconnect with will": only a connection that ends without DISCONNECT keeps it.
            problem = "the clean \"disconnected\" was not acknowledged and the connection could not be ended "
                      "without DISCONNECT; the broker drops the will";
            client.disconnect(0)->wait_for(left());
        }
    } catch (...) {
        // not connected (any more): nothing to disconnect
    }
    return delivered;
}

}  // namespace mqtt_presence::detail
