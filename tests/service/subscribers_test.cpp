// The service's listeners: any number of them, each until its handle goes, none called after.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <mqtt_presence/service/subscribers.hpp>

using mqtt_presence::subscribers;
using mqtt_presence::subscription;

TEST(subscribers, every_listener_is_called_in_order_until_its_handle_goes) {
    subscribers<const std::string&> list;
    std::vector<std::string> heard;
    auto first = list.add([&](const std::string& s) { heard.push_back("first " + s); });
    {
        auto second = list.add([&](const std::string& s) { heard.push_back("second " + s); });
        list.notify("a");
    }
    list.notify("b");
    first.reset();
    list.notify("c");
    EXPECT_EQ(heard, (std::vector<std::string>{"first a", "second a", "first b"}));
    EXPECT_TRUE(list.empty());
}

TEST(subscribers, a_listener_that_throws_does_not_stop_the_others) {
    subscribers<int> list;
    int sum = 0;
    auto bad = list.add([](int) { throw std::runtime_error("listener failed"); });
    auto good = list.add([&](int n) { sum += n; });
    list.notify(2);
    EXPECT_EQ(sum, 2);
}

TEST(subscribers, a_handle_may_outlive_its_list_and_be_moved) {
    subscription kept;
    {
        subscribers<> list;
        int calls = 0;
        auto handle = list.add([&] { ++calls; });
        kept = std::move(handle);
        list.notify();
        EXPECT_EQ(calls, 1);
    }
    kept.reset();  // the list is gone: nothing to remove, no crash
}

TEST(subscribers, removing_waits_for_a_call_in_progress) {
    subscribers<> list;
    std::atomic<bool> in_call{false}, call_done{false};
    auto handle = list.add([&] {
        in_call = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // a listener that takes a while
        call_done = true;
    });
    std::thread notifier([&] { list.notify(); });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!in_call && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    ASSERT_TRUE(in_call) << "the notifier never called the listener";
    handle.reset();
    EXPECT_TRUE(call_done) << "the handle was released while its listener was still running";
    notifier.join();
}
