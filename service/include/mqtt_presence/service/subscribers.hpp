#pragma once
// subscribers: a list of callbacks, each added with a handle that removes it. How the service's parts listen to one
// another (the dashboard to the history's commits and the scanner's own state) without one overwriting another's
// callback, and without a callback outliving its listener.
//
//   auto handle = store.on_commit([&](const auto& batch) { ... });   // called until `handle` is destroyed
//
// Calls run on the notifying thread, one at a time, under the list's lock: removing a callback (destroying its
// handle) waits for a call in progress, so after it nothing of the listener is called. A callback must therefore not
// add or remove callbacks of the same list, and must not block. What a callback throws is swallowed: one
// listener's failure must not stop the notifier (a history writer, a delivery thread).

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace mqtt_presence {

/// Removes its callback when destroyed (or reset()). Movable; an empty handle does nothing.
class subscription {
public:
    subscription() = default;
    explicit subscription(std::function<void()> remove) : remove_(std::move(remove)) {}
    subscription(subscription&& other) noexcept : remove_(std::exchange(other.remove_, nullptr)) {}
    subscription& operator=(subscription&& other) noexcept {
        if (this != &other) {
            reset();
            remove_ = std::exchange(other.remove_, nullptr);
        }
        return *this;
    }
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;
    ~subscription() { reset(); }

    void reset() noexcept {
        if (!remove_) return;
        try {
            remove_();
        } catch (...) {
            // a lock that cannot be taken: nothing more to do
        }
        remove_ = nullptr;
    }

private:
    std::function<void()> remove_;
};

template <class... Args>
class subscribers {
public:
    using callback = std::function<void(Args...)>;

    /// Adds `cb`; it is called until the returned handle is destroyed. The handle may outlive the list.
    [[nodiscard]] subscription add(callback cb) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        const auto id = ++state_->next_id;
        state_->entries.emplace_back(id, std::move(cb));
        return subscription([weak = std::weak_ptr<state>(state_), id] {
            if (const auto s = weak.lock()) {
                std::lock_guard<std::mutex> hold(s->mutex);
                auto& e = s->entries;
                for (auto it = e.begin(); it != e.end(); ++it)
                    if (it->first == id) {
                        e.erase(it);
                        break;
                    }
            }
        });
    }

    /// Calls every callback, in the order they were added.
    void notify(Args... args) const noexcept {
        std::lock_guard<std::mutex> lock(state_->mutex);
        for (const auto& entry : state_->entries) {
            try {
                entry.second(args...);
            } catch (...) {
                // one listener's failure is its own
            }
        }
    }

    [[nodiscard]] bool empty() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->entries.empty();
    }

private:
    struct state {
        std::mutex mutex;
        std::uint64_t next_id = 0;
        std::vector<std::pair<std::uint64_t, callback>> entries;
    };
    std::shared_ptr<state> state_ = std::make_shared<state>();
};

}  // namespace mqtt_presence
