#include <mqtt_presence/service/service_client.hpp>

#include <httplib.h>

#include <mqtt_presence/error.hpp>

namespace mqtt_presence {

service_reply call_service(const service_endpoint& to, const std::string& method, const std::string& path,
                           const std::string& json_body) {
    if (to.url.rfind("http://", 0) != 0 && to.url.rfind("https://", 0) != 0)
        throw error("--server " + to.url + " is not an http:// or https:// URL (e.g. http://127.0.0.1:8080)");
    httplib::Client client(to.url);
    if (!client.is_valid()) throw error("--server " + to.url + " is not a URL this client can use");
    client.set_connection_timeout(5, 0);
    client.set_read_timeout(10, 0);
    client.set_write_timeout(10, 0);
    if (!to.user.empty()) client.set_basic_auth(to.user, to.password);
    if (!to.cafile.empty()) client.set_ca_cert_path(to.cafile);
    if (method != "GET" && method != "POST" && method != "DELETE") throw error("no such method: " + method);
    auto result = method == "GET"    ? client.Get(path)
                  : method == "POST" ? client.Post(path, json_body, "application/json")
                                     : client.Delete(path);
    if (!result)
        throw error("cannot reach the service at " + to.url + ": " + httplib::to_string(result.error()) +
                    " (is serve running, and is --server its --listen address?)");
    return {result->status, result->body};
}

}  // namespace mqtt_presence
