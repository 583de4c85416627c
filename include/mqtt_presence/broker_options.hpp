#pragma once
// broker_options: how to reach and log in to the broker, the same for presence_client and scanner.

#include <chrono>
#include <string>
#include <vector>

namespace mqtt_presence {

struct broker_options {
    std::string server_uri = "tcp://localhost:1883";  ///< tcp://, ssl://, ws://, wss:// (mqtt://, mqtts://)
    /// Further nodes of the same broker cluster, tried in order after server_uri at every connect and reconnect
    /// (Paho's server list): a client whose node dies connects to the next one that answers. Empty: one broker.
    std::vector<std::string> failover;
    std::string client_id;  ///< empty: chosen by the user of these options (presence_client: the status name)
    int mqtt_version = 4;   ///< 4 (MQTT 3.1.1) or 5
    std::chrono::seconds keepalive{30};  ///< a dead connection is noticed after about 1.5 x this
    std::chrono::seconds connect_timeout{10};
    std::string username;
    std::string password;
    // TLS (for ssl://, mqtts://, wss:// only: with a clear-text URI they are refused, never ignored).
    std::string cafile;
    std::string certfile;
    std::string keyfile;
    bool insecure = false;  ///< do not verify the server's certificate

    /// Throws mqtt_presence::error naming the bad field and value (and a TLS file that cannot be read).
    void validate() const;
};

}  // namespace mqtt_presence
