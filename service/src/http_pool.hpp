#pragma once
// http_pool: the dashboard's HTTP threads. Threads are made as connections need them, up to a bound; the
// connections waiting for one are served newest first, so a probe (/healthz) that arrives behind a flood of idle
// or slow connections is answered as soon as a thread is free (connection_guard frees them), not after the flood.
// Private to the service library.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <httplib.h>

namespace mqtt_presence::detail {

class http_pool : public httplib::TaskQueue {
public:
    explicit http_pool(std::size_t max_threads) : max_threads_(max_threads) {}
    ~http_pool() override { shutdown(); }

    void enqueue(std::function<void()> fn) override {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            jobs_.push_back(std::move(fn));
            if (jobs_.size() > idle_ && threads_.size() < max_threads_) threads_.emplace_back([this] { work(); });
        }
        cv_.notify_one();
    }

    void shutdown() override {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_) return;
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& t : threads_) t.join();  // each drains the connections still queued (httplib closes them)
    }

private:
    void work() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            ++idle_;
            cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
            --idle_;
            if (jobs_.empty()) return;
            auto fn = std::move(jobs_.back());  // newest first
            jobs_.pop_back();
            lock.unlock();
            try {
                fn();
            } catch (...) {
                // a connection's failure ends that connection only
            }
            lock.lock();
        }
    }

    std::size_t max_threads_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    std::vector<std::thread> threads_;
    std::size_t idle_ = 0;
    bool stopping_ = false;
};

}  // namespace mqtt_presence::detail
