#pragma once
// watch --db: the silences of the history that `serve` writes, for the live table to show beside the rows they
// cover ("silenced until 14:00 UTC: firmware update (by alice)"). Read every 5 s on a thread of its own, each read
// bounded (2 s): a frozen database never holds the table. A read that fails is said, never hidden.

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/service/silences.hpp>

namespace mqtt_presence {
class history_reader;
}

class watched_silences {
public:
    /// Opens the history and reads it once; throws mqtt_presence::error when it is missing or not a history.
    explicit watched_silences(const std::string& db);
    ~watched_silences();
    watched_silences(const watched_silences&) = delete;
    watched_silences& operator=(const watched_silences&) = delete;

    /// The running silence that covers `row` at `now`, as the last read had them; nullopt when none does.
    [[nodiscard]] std::optional<mqtt_presence::silence> covering(const mqtt_presence::client_status& row,
                                                                 mqtt_presence::time_point now) const;
    /// How many silences run at `now`, and why the last read failed ("" when it did not).
    [[nodiscard]] std::pair<std::size_t, std::string> state(mqtt_presence::time_point now) const;

private:
    void read();
    void loop();

    std::string db_;
    std::unique_ptr<mqtt_presence::history_reader> reader_;  // the refresh thread's; reopened after a failure
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::vector<mqtt_presence::silence> running_;
    std::string failure_;
    std::thread thread_;
};

/// "silenced until 14:00 UTC: firmware update (by alice)" (the date too when it is not today; printable: the
/// reason and who come from people).
[[nodiscard]] std::string silence_note(const mqtt_presence::silence& s, mqtt_presence::time_point now);
