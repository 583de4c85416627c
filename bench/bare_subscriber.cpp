// The baseline: a bare Paho C++ callback subscriber that only counts messages, exiting after N. It leaves the way
// mqtt-presence-scanner --once does (disconnect, then exit without Paho's destructor), so that the two times
// differ only by what the scanner does with the messages.
// Usage: bare_subscriber URI FILTER N QOS
#include <mqtt/async_client.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: bare_subscriber URI FILTER N QOS\n");
        return 2;
    }
    const long n = std::atol(argv[3]);
    const int qos = std::atoi(argv[4]);
    mqtt::async_client cli(argv[1], "mqtt-presence-bare-subscriber");
    std::atomic<long> count{0};
    std::mutex m;
    std::condition_variable done;
    cli.set_message_callback([&](mqtt::const_message_ptr) {
        if (++count == n) {
            std::lock_guard<std::mutex> lock(m);
            done.notify_all();
        }
    });
    cli.connect()->wait();
    cli.subscribe(argv[2], qos);
    std::unique_lock<std::mutex> lock(m);
    done.wait(lock, [&] { return count.load() >= n; });
    lock.unlock();
    cli.disconnect()->wait();
    std::_Exit(0);
}
