#include "connect_failure.hpp"

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include <MQTTAsync.h>  // within its extern "C": MQTTReasonCode_toString
#include <mqtt/async_client.h>

#include <mqtt_presence/paho_client.hpp>

#include "uri.hpp"

namespace mqtt_presence::detail {

std::optional<std::string> refusal_reason(int rc) {
    switch (rc) {  // MQTT 3.1.1, table 3.1: Paho has no words for these
        case 1: return "Unacceptable protocol version";
        case 2: return "Client identifier rejected";
        case 3: return "Server unavailable";
        case 4: return "Bad user name or password";
        case 5: return "Not authorized";
        default: break;
    }
    if (rc >= 0x80 && rc <= 0xFF) {
        const char* name = MQTTReasonCode_toString(static_cast<MQTTReasonCodes>(rc));
        return name ? std::string(name) : "reason code " + std::to_string(rc);
    }
    return std::nullopt;
}

bool unanswered_mqtt5(const broker_options& broker, const connect_failure& failure) {
    return broker.mqtt_version == 5 && !refusal_reason(failure.rc);
}

bool speaks_mqtt311(broker_options broker, const std::string& probe_id) {
    broker.mqtt_version = 4;
    try {
        mqtt::async_client probe(parse_server_uri(broker.server_uri).for_paho(), probe_id);
        auto token = probe.connect(base_connect_options(broker));
        try {
            if (!token->wait_for(broker.connect_timeout + std::chrono::seconds(1))) return false;
        } catch (const mqtt::exception& e) {
            return refusal_reason(e.get_return_code()).has_value();  // refused, but in MQTT 3.1.1's words
        }
        probe.disconnect()->wait_for(std::chrono::seconds(2));
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

namespace {
struct probe_record {
    std::optional<bool> answer;
    bool running = false;
    std::chrono::steady_clock::time_point started{};
};

struct probe_records {
    std::mutex mutex;
    std::map<std::string, probe_record> by_broker;
};

probe_records& records() {
    static auto* all = new probe_records;  // never destroyed: a probe's thread may outlive main
    return *all;
}
}  // namespace

std::optional<bool> speaks_mqtt311_cached(const broker_options& broker, const std::string& probe_id) {
    auto& all = records();
    std::lock_guard<std::mutex> lock(all.mutex);
    auto& record = all.by_broker[broker.server_uri];
    const auto now = std::chrono::steady_clock::now();
    const bool due = !record.running && record.answer != true &&
                     (!record.answer || now - record.started >= std::chrono::minutes(1));
    if (!due) return record.answer;
    record.running = true;
    record.started = now;
    try {
        std::thread([broker, probe_id] {
            const bool yes = speaks_mqtt311(broker, probe_id);
            auto& mine = records();
            std::lock_guard<std::mutex> answered(mine.mutex);
            auto& found = mine.by_broker[broker.server_uri];
            found.answer = yes;
            found.running = false;
        }).detach();
    } catch (const std::exception&) {
        record.running = false;  // no thread for it now: the next failure asks again
    }
    return record.answer;
}

std::string connect_failure_text(const broker_options& broker, const connect_failure& failure,
                                 std::optional<bool> speaks_311, const std::string& generic, const std::string& hint) {
    static const std::string no_mqtt5 =
        ": it does not speak MQTT 5 (RabbitMQ before 3.13 and aedes 1.x do not); use MQTT 3.1.1 (-V 3)";
    const auto at = "the broker at " + broker.server_uri;
    if (const auto reason = refusal_reason(failure.rc)) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned>(failure.rc));
        const auto code = failure.rc < 0x80 ? "CONNACK return code " + std::to_string(failure.rc)
                                            : "CONNACK reason code " + std::string(hex);
        if (broker.mqtt_version == 5 && (failure.rc == 1 || failure.rc == MQTTREASONCODE_UNSUPPORTED_PROTOCOL_VERSION))
            return at + " refused MQTT 5 (" + code + ": " + *reason + ")" + no_mqtt5;
        const bool credentials = failure.rc == 4 || failure.rc == 5 ||
                                 failure.rc == MQTTREASONCODE_BAD_USER_NAME_OR_PASSWORD ||
                                 failure.rc == MQTTREASONCODE_NOT_AUTHORIZED ||
                                 failure.rc == MQTTREASONCODE_BAD_AUTHENTICATION_METHOD;
        return at + " refused the connection: " + *reason + " (" + code + ")" +
               (credentials ? "; check the user name and password" : "");
    }
    if (broker.mqtt_version == 5 && speaks_311 == true)
        return at + " refused MQTT 5 (it closed the connection: " + failure.what + ") but accepts MQTT 3.1.1" +
               no_mqtt5;
    return generic + ": " + failure.what + hint;
}

}  // namespace mqtt_presence::detail
