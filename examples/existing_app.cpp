// A plain Paho publisher that gains a connection status by adding the lines marked "status".
// Usage: existing_app [broker-uri] [name]   (defaults: tcp://localhost:1883, existing-app)
#include <mqtt/async_client.h>

#include <mqtt_presence/status_announcer.hpp>

#include <csignal>
#include <iostream>

int main(int argc, char** argv) {
    const std::string uri = argc > 1 ? argv[1] : "tcp://localhost:1883";
    const std::string name = argc > 2 ? argv[2] : "existing-app";

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);

    mqtt::async_client cli(uri, name);
    auto conn_opts = mqtt::connect_options_builder().keep_alive_interval(std::chrono::seconds(5))
                         .clean_session().automatic_reconnect().finalize();

    mqtt_presence::status_announcer status(name);                                    // status
    status.add_will(conn_opts);                                                      // status
    cli.set_connected_handler([&](const std::string&) { status.announce(cli); });   // status

    try {
        cli.connect(conn_opts)->wait();
        cli.publish("readings/" + name, "21.5", 0, false);
        std::cerr << "existing_app: connected; status on " << status.topic() << "\n";
        int sig = 0;
        sigwait(&stop, &sig);
        status.disconnect(cli);                                                      // status
    } catch (const mqtt::exception& e) {
        std::cerr << "existing_app: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
