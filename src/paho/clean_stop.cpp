#include "clean_stop.hpp"

#include <algorithm>
#include <thread>

#include "disconnect_keeping_will.hpp"
#include "../uri.hpp"

namespace mqtt_presence::detail {

namespace {
std::chrono::milliseconds left_until(std::chrono::steady_clock::time_point deadline) {
    return std::max(std::chrono::milliseconds(0), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                      deadline - std::chrono::steady_clock::now()));
}
}  // namespace

bool end_keeping_will_311(mqtt::async_client& client, std::chrono::milliseconds wait) noexcept {
    try {
        // QoS 0: nothing for Paho to wait for or resend; the broker closes the connection on reading it.
        client.publish(mqtt::message::create(std::string(protocol_error_topic), std::string(), 0, false));
    } catch (...) {
        return !client.is_connected();
    }
    const auto until = std::chrono::steady_clock::now() + wait;
    while (client.is_connected() && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // Paho has no event for a connection it lost
    return !client.is_connected();
}

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
        } else if (!end_keeping_will_311(client, reserve)) {
            // Not closed yet (a slow network, or a broker that tolerates the error): a DISCONNECT after it, in order,
            // so that the client is gone either way. A broker that closes on the error never reads it.
            problem = "the clean \"disconnected\" was not acknowledged and the broker had not closed the connection " +
                      std::to_string(reserve.count()) + " ms after a protocol error meant to keep the will; a "
                      "broker that tolerates the error drops the will at the DISCONNECT that follows";
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
