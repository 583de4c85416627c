// A consumer of the installed service component: writes a change into a history file and reads it back.
#include <mqtt_presence/service/history_reader.hpp>
#include <mqtt_presence/service/history_store.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
    const std::string path = argc > 1 ? argv[1] : "service_consumer.db";
    std::remove(path.c_str());
    const auto now = mqtt_presence::clock::now();
    {
        mqtt_presence::history_options options;
        options.path = path;
        mqtt_presence::history_store store(options);
        store.begin_session("tcp://127.0.0.1:1883", "sensors/connected/+", "consumer");
        mqtt_presence::change c;
        c.current.client = "kitchen";
        c.current.topic = "sensors/connected/kitchen";
        c.current.status = mqtt_presence::state::connected;
        c.at = now;
        if (!store.record(c)) return 1;
        store.end_session();
    }
    const mqtt_presence::history_reader reader(path);
    const auto events = reader.events_of("kitchen", now - std::chrono::minutes(1));
    std::printf("%zu event(s) of kitchen\n", events.size());
    return events.size() == 1 ? 0 : 1;
}
