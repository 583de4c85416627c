#include "watched_silences.hpp"

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/service/history_reader.hpp>

#include <algorithm>

using namespace mqtt_presence;

namespace {
constexpr auto read_every = std::chrono::seconds(5);
constexpr auto read_bound = std::chrono::seconds(2);
}  // namespace

watched_silences::watched_silences(const std::string& db)
    : db_(db), reader_(std::make_unique<history_reader>(db, read_bound)) {
    read();
    thread_ = std::thread([this] { loop(); });
}

watched_silences::~watched_silences() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();  // a read in progress is bounded by read_bound
}

void watched_silences::read() {
    std::vector<silence> running;
    std::string failure;
    try {
        if (!reader_) reader_ = std::make_unique<history_reader>(db_, read_bound);
        running = reader_->silences(clock::now());
    } catch (const std::exception& e) {
        failure = e.what();
        reader_.reset();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (failure.empty()) running_ = std::move(running);  // on a failure the last silences read stay, said as such
    failure_ = std::move(failure);
}

void watched_silences::loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, read_every, [this] { return stopping_; })) {
        lock.unlock();
        read();
        lock.lock();
    }
}

std::optional<silence> watched_silences::covering(const client_status& row, time_point now) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& s : running_)
        if (s.active(now) && s.covers(row.client, row.groups)) return s;
    return std::nullopt;
}

std::pair<std::size_t, std::string> watched_silences::state(time_point now) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto n = static_cast<std::size_t>(
        std::count_if(running_.begin(), running_.end(), [now](const silence& s) { return s.active(now); }));
    return {n, failure_};
}

std::string silence_note(const silence& s, time_point now) {
    const auto until = format_iso8601(s.until);  // 2026-12-07T14:00:00.000Z
    const bool today = until.compare(0, 10, format_iso8601(now), 0, 10) == 0;
    // The reason before who set it: the DETAIL column is cut at 60 cells.
    return "silenced until " + (today ? until.substr(11, 5) : until.substr(0, 10) + " " + until.substr(11, 5)) +
           " UTC: " + terminal_safe(s.reason, 80) +
           (s.by.empty() ? std::string() : " (by " + terminal_safe(s.by, 40) + ")");
}
