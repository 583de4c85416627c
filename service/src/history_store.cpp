#include <mqtt_presence/service/history_store.hpp>

#include <unordered_map>

#include <mqtt_presence/error.hpp>

#include "history_database.hpp"

namespace mqtt_presence {

using detail::from_ms;
using detail::to_ms;

struct history_store::alert_record {
    std::string kind, client, topic, json;
    std::function<void(std::int64_t)> on_disk;  // sends it: once it is in the outbox, so a restart finds it
    std::int64_t id = 0;                        // its row; set when written
};

struct history_store::item {
    enum class kind : std::uint8_t { change, watch_on, watch_off, alert, delivered, silenced, cadences } what = kind::change;
    time_point at;
    change changed;                        // kind::change
    std::unique_ptr<alert_record> alerted;  // kind::alert (a pointer: the queue's items stay small)
    std::int64_t delivered_id = 0;          // kind::delivered
    std::unique_ptr<silence> silenced;      // kind::silenced
    std::unique_ptr<std::vector<learned_cadence>> learned;  // kind::cadences
};

namespace {
struct client_key_hash {
    std::size_t operator()(const detail::client_key& k) const noexcept {
        return std::hash<std::string_view>{}(k.topic) * 31 + std::hash<std::string_view>{}(k.client);
    }
};
}  // namespace

// The writer thread's connection, its session and the watch interval it keeps open.
struct history_store::writer {
    std::unique_ptr<detail::history_database> db;
    std::int64_t session = 0;
    std::optional<std::int64_t> watch_from;  // the open watch interval's start (ms)

    // The open watch interval, if any, now reaches `to`.
    void extend_watch(std::int64_t to) {
        if (watch_from) db->extend_watch(session, *watch_from, to);
    }
    // A watch interval opens at `at` (the scanner's sync ended).
    void watch_on(std::int64_t at) {
        extend_watch(at);
        watch_from = at;
        db->open_watch(session, at);
    }
    // The open watch interval ends at `at` (the scanner lost its connection).
    void watch_off(std::int64_t at) {
        extend_watch(at);
        watch_from.reset();
    }
};

history_store::history_store(history_options options) : options_(std::move(options)) {
    if (options_.queue_limit == 0) throw error("the history queue needs room for at least one change");
    writer_ = std::make_unique<writer>(
        writer{detail::open_history_database(options_.path, true, options_.max_bytes), 0, std::nullopt});
}

const std::string& history_store::path() const noexcept { return writer_->db->name(); }

history_store::~history_store() noexcept {
    end_session();
}

// What no write reports (a file deleted or replaced) is said once; it stays failing until a restart.
void history_store::check_database() {
    auto problem = writer_->db->problem();
    if (problem.empty()) return;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (database_gone_) return;
        database_gone_ = true;
    }
    failed(problem);
}

void history_store::failed(const std::string& why) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.failing = true;
        stats_.last_error = why;
        stats_.last_error_at = clock::now();
    }
    warn("history store: " + why);
}

namespace {
// A read of the history at its start: a database's own exception becomes an error naming the history.
template <class Read>
auto reading(const std::string& where, Read&& read) {
    try {
        return read();
    } catch (const error&) {
        throw;
    } catch (const std::exception& e) {
        throw error("cannot read the history " + where + ": " + e.what());
    }
}
}  // namespace

void history_store::for_each_current_row(const std::function<void(const client_status&)>& visit) const {
    reading(path(), [&] { writer_->db->for_each_current_row(visit); });
}

std::vector<learned_cadence> history_store::cadences() const {
    return reading(path(), [this] { return writer_->db->cadences(); });
}

void history_store::begin_session(const std::string& broker, const std::string& topics, const std::string& observer,
                                  table_source table, warning_sink warn, cadence_source cadences) {
    if (thread_.joinable()) throw error("a history session is already running");
    table_ = std::move(table);
    warn_ = std::move(warn);
    cadences_ = std::move(cadences);
    cadences_asked_ms_ = 0;
    cadences_asked_at_ = std::chrono::steady_clock::now();
    try {
        writer_->session = writer_->db->begin_session(to_ms(clock::now()), broker, topics, observer);
    } catch (const error&) {
        throw;
    } catch (const std::exception& e) {
        throw error("cannot write the history " + path() + ": " + e.what());
    }
    prune(clock::now());
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = interrupted_ = false;
        writer_running_ = true;
        last_take_ = std::chrono::steady_clock::now();  // nothing to take yet: not stuck
        stats_.writer_alive = std::chrono::steady_clock::now();
    }
    thread_ = std::thread([this] { writer_loop(); });
}

bool history_store::record(const change& c) noexcept {
    const auto observed = c.at;
    try {
        bool dropped = false;
        bool wake = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++stats_.recorded;
            if (queued_changes_ + retrying_ >= options_.queue_limit) {
                ++stats_.dropped;
                if (!first_drop_) first_drop_ = observed;
                dropped = true;
            } else {
                queue_.push_back(item{item::kind::change, observed, c, nullptr, 0, nullptr, nullptr});
                ++queued_changes_;
                wake = queue_.size() == 1;
            }
        }
        if (wake) cv_.notify_one();
        return !dropped;
    } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.dropped;
        if (!first_drop_) first_drop_ = observed;
        return false;
    }
}

void history_store::alert_delivered(std::int64_t id, time_point at) noexcept {
    try {
        item it{item::kind::delivered, at, {}, nullptr, id, nullptr, nullptr};
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(it));
    } catch (...) {
        // out of memory: a restart delivers it again
    }
    cv_.notify_one();
}

void history_store::record_silence(const silence& s) noexcept {
    try {
        item it{item::kind::silenced, s.from, {}, nullptr, 0, std::make_unique<silence>(s), nullptr};
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(it));
    } catch (...) {
        // out of memory: the silence holds until a restart
    }
    cv_.notify_one();
}

void history_store::record_alert(std::string kind, std::string client, std::string topic, std::string json,
                                 time_point at, std::function<void(std::int64_t)> on_disk) noexcept {
    try {
        item it{item::kind::alert, at, {},
                std::make_unique<alert_record>(alert_record{std::move(kind), std::move(client), std::move(topic),
                                                            std::move(json), std::move(on_disk), 0}),
                0, nullptr, nullptr};
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(it));
    } catch (...) {
        // out of memory: the alert was still sent; a restart may send a "down" again
    }
    cv_.notify_one();
}

void history_store::watching(bool on, time_point at) noexcept {
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(item{on ? item::kind::watch_on : item::kind::watch_off, at, {}, nullptr, 0, nullptr, nullptr});
    } catch (...) {
        // out of memory: the interval stays open until the next one, a few ms more of "watched"
    }
    cv_.notify_one();
}

history_stats history_store::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto s = stats_;
    s.queued = retrying_ + queued_changes_;
    // A writer that has not come round for a while with changes waiting is held by the database (a batch of a
    // million takes seconds; one that takes more than stuck_after is said).
    const auto waiting = s.queued + writing_;
    if (writer_running_ && waiting > 0)
        s.unanswered = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                              s.writer_alive);
    if (s.unanswered >= history_stats::stuck_after) {
        s.failing = true;
        s.last_error = "the history " + path() + " has not answered for " +
                       std::to_string(s.unanswered.count() / 1000) + " s; " + std::to_string(waiting) +
                       " changes wait (in memory, up to the queue's bound)";
    }
    return s;
}

void history_store::warn(const std::string& text) {
    const auto now = std::chrono::steady_clock::now();
    if (!warn_ || now - last_warning_ < std::chrono::seconds(1)) return;
    last_warning_ = now;
    try {
        warn_(text);
    } catch (...) {
        // a warning that cannot be shown
    }
}

std::uint64_t history_store::prune(time_point now) {
    // Event ids grow with time: the backends delete from the oldest in chunks, so a large prune never holds the
    // writer long.
    try {
        return writer_->db->prune(to_ms(now - options_.keep));
    } catch (const std::exception& e) {
        writer_->db->rollback();
        warn("history store: pruning failed: " + std::string(e.what()));
        return 0;
    }
}

// What the writer took from the queue besides the items: the gap dropped changes left, and whether it is the last.
struct history_store::batch_info {
    std::optional<time_point> gap_from;
    std::uint64_t gap_dropped = 0;
    bool last = false;
};

void history_store::writer_loop() {
    struct done_on_exit {  // however the loop ends: end_session() waits for this, not for the thread
        history_store& store;
        ~done_on_exit() {
            {
                std::lock_guard<std::mutex> lock(store.mutex_);
                store.writer_running_ = false;
            }
            store.cv_.notify_all();
        }
    } finished{*this};
    auto last_prune = std::chrono::steady_clock::now();
    std::vector<item> batch;
    for (;;) {
        const auto info = gather_batch(batch);
        ask_cadences(batch, info.last);
        const auto now = to_ms(clock::now());
        try {
            std::vector<committed> done;
            const auto changes = write_batch(batch, info, now, done);
            after_commit(batch, info, changes, done);
            batch.clear();
        } catch (const history_locked& e) {
            writer_->db->rollback();
            {
                std::lock_guard<std::mutex> lock(mutex_);
                stats_.superseded = true;
            }
            failed(std::string(e.what()) + "; this service writes no more");
            return;
        } catch (const std::exception& e) {
            if (!batch_failed(batch, info, e.what())) return;
            continue;
        }
        if (info.last) return;
        check_database();
        if (std::chrono::steady_clock::now() - last_prune > std::chrono::minutes(10)) {
            prune(clock::now());
            last_prune = std::chrono::steady_clock::now();
        }
    }
}

// What the table learned since the writer last asked joins the batch: every cadence_interval, and at the end.
void history_store::ask_cadences(std::vector<item>& batch, bool last) {
    if (!cadences_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!last && now - cadences_asked_at_ < cadence_interval) return;
    cadences_asked_at_ = now;
    const auto since = cadences_asked_ms_;
    cadences_asked_ms_ = to_ms(clock::now());  // a message during the question is asked for again next time
    try {
        auto learned = cadences_(since);
        if (learned.empty()) return;
        item it{item::kind::cadences, clock::now(), {}, nullptr, 0, nullptr,
                std::make_unique<std::vector<learned_cadence>>(std::move(learned))};
        batch.push_back(std::move(it));
    } catch (...) {
        cadences_asked_ms_ = since;  // out of memory: asked again next time
    }
}

// Sleeps until there is something to write, then gathers for up to one batch interval. A batch that failed goes
// first, and what joins it is held for the retry too.
history_store::batch_info history_store::gather_batch(std::vector<item>& batch) {
    std::unique_lock<std::mutex> lock(mutex_);
    stats_.writer_alive = std::chrono::steady_clock::now();
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_ || !queue_.empty(); });
    // A batch gathers for one interval, unless the queue already holds a transaction's worth (a paced stream of
    // removals waits for room: each interval spent gathering would be lost).
    if (!stopping_ && !queue_.empty() && queued_changes_ < full_batch)
        cv_.wait_for(lock, options_.batch_interval, [this] { return stopping_; });
    if (batch.empty()) {
        batch.swap(queue_);
        writing_ = queued_changes_;
    } else {
        batch.insert(batch.end(), std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
        queue_.clear();
        retrying_ += queued_changes_;
        writing_ = retrying_;
    }
    queued_changes_ = 0;
    last_take_ = std::chrono::steady_clock::now();
    room_cv_.notify_all();
    return batch_info{first_drop_, stats_.dropped - dropped_in_gaps_, stopping_};
}

void history_store::wait_for_room(std::size_t below, std::chrono::milliseconds most) {
    std::unique_lock<std::mutex> lock(mutex_);
    room_cv_.wait_for(lock, most, [&] {
        return queued_changes_ + retrying_ < below || stopping_ || !writer_running_ || stats_.failing ||
               std::chrono::steady_clock::now() - last_take_ > history_stats::stuck_after;
    });
}

// One transaction: every item, each client's last row, the gap if changes were dropped. Returns the changes written;
// `done` gets what the commit sink is told.
std::size_t history_store::write_batch(std::vector<item>& batch, const batch_info& info, std::int64_t now,
                                       std::vector<committed>& done) {
    auto& w = *writer_;
    w.db->begin();
    // Each client's last row of the batch (null: removed) and the head of its chain of events, read for all the
    // batch's clients at once.
    struct latest {
        const client_status* row;
        std::int64_t head;
    };
    // One hash lookup per change: each change's client is numbered once, in the order the clients first appear.
    std::unordered_map<detail::client_key, std::uint32_t, client_key_hash> numbers;
    numbers.reserve(batch.size());
    std::vector<detail::client_key> keys;
    std::vector<std::uint32_t> client_of;  // per change, in the batch's order
    client_of.reserve(batch.size());
    for (const auto& it : batch) {
        if (it.what != item::kind::change) continue;
        const auto& row = it.changed.current;
        const auto [at, added] = numbers.try_emplace(detail::client_key{row.topic, row.client},
                                                     static_cast<std::uint32_t>(keys.size()));
        if (added) keys.push_back(at->first);
        client_of.push_back(at->second);
    }
    std::vector<latest> last_rows(keys.size(), latest{nullptr, 0});
    const auto heads = w.db->chain_heads(keys);
    for (std::size_t i = 0; i < keys.size(); ++i) last_rows[i].head = heads[i];
    const bool wanted = !commit_subscribers_.empty();  // who waits for the commit
    if (wanted) done.reserve(batch.size());
    std::size_t changes = 0;
    for (auto& it : batch) {
        const auto at = to_ms(it.at);
        switch (it.what) {
            case item::kind::change: {
                const auto& row = it.changed.current;
                auto& entry = last_rows[client_of[changes]];
                entry.head = w.db->write_event(it.changed, entry.head, w.session);
                if (wanted) done.push_back(committed{entry.head, &it.changed});
                ++changes;
                entry.row = it.changed.kind == change_kind::removed ? nullptr : &row;
                break;
            }
            case item::kind::watch_on: w.watch_on(at); break;
            case item::kind::watch_off: w.watch_off(at); break;
            case item::kind::alert: {
                auto& a = *it.alerted;
                a.id = w.db->write_alert(a.kind, a.client, a.topic, a.json, at);
                break;
            }
            case item::kind::delivered: w.db->write_delivered(it.delivered_id, at); break;
            case item::kind::silenced: w.db->write_silence(*it.silenced); break;
            case item::kind::cadences: w.db->write_cadences(*it.learned); break;
        }
    }
    for (std::size_t i = 0; i < keys.size(); ++i) {
        if (last_rows[i].row) w.db->write_client(*last_rows[i].row, last_rows[i].head);
        else w.db->forget_client(keys[i].topic, keys[i].client, last_rows[i].head);
    }
    if (info.gap_from) {
        // The clients table is rewritten from the live table.
        w.db->write_gap(to_ms(*info.gap_from), now, info.gap_dropped);
        if (table_) {
            w.db->forget_all_clients();
            table_([&w](const client_status& row) { w.db->write_client(row, std::nullopt); });
        }
    }
    w.extend_watch(now);
    w.db->session_alive(w.session, now, info.last);
    w.db->commit();
    return changes;
}

// After a commit: the counters, then who waits for what is on disk (alerts to send, the live feed).
void history_store::after_commit(std::vector<item>& batch, const batch_info& info, std::size_t changes,
                                 const std::vector<committed>& done) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.written += changes;
        writing_ = 0;
        ++stats_.batches;
        stats_.failing = database_gone_;
        stats_.last_commit_at = clock::now();
        stats_.cache_bytes = writer_->db->cache_bytes();
        retrying_ = 0;
        if (info.gap_from) {
            first_drop_.reset();
            dropped_in_gaps_ += info.gap_dropped;
        }
    }
    for (auto& it : batch) {
        if (!it.alerted || !it.alerted->on_disk) continue;
        try {
            it.alerted->on_disk(it.alerted->id);
        } catch (...) {
            // the callback's own failure: the record is on disk all the same
        }
    }
    if (!done.empty()) commit_subscribers_.notify(done);  // a listener that fails does not stop the history
    if (info.gap_from)
        warn("history store: " + std::to_string(info.gap_dropped) + " changes dropped (the disk could not keep "
             "up); the history has a gap, recorded as not watched; the current rows were rewritten");
}

// The batch is held for the next try, a second later; the queue stays bounded while the disk refuses (the oldest
// retries stay, what does not fit is dropped). False when stopping: nothing more can be done.
bool history_store::batch_failed(std::vector<item>& batch, const batch_info& info, const std::string& why) {
    writer_->db->rollback();
    std::size_t held = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.write_errors;
        retrying_ = 0;
        for (const auto& it : batch) retrying_ += it.what == item::kind::change ? 1 : 0;
        held = retrying_;
    }
    failed("cannot write " + path() + " (" + why + "); " + std::to_string(held) +
           " changes kept in memory and retried; the live table goes on");
    std::unique_lock<std::mutex> lock(mutex_);
    if (info.last || interrupted_) return false;  // cut at the stop: another try would wait as long again
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
    if (batch.size() > options_.queue_limit) {
        stats_.dropped += batch.size() - options_.queue_limit;
        if (!first_drop_) first_drop_ = batch[options_.queue_limit].at;
        batch.resize(options_.queue_limit);
    }
    return true;
}

void history_store::end_session() noexcept {
    bool answered = true;
    std::size_t waiting = 0;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        if (!thread_.joinable()) return;
        stopping_ = true;
        cv_.notify_all();
        answered = cv_.wait_for(lock, options_.stop_wait, [this] { return !writer_running_; });
        waiting = queued_changes_ + writing_;
        interrupted_ = !answered;
    }
    if (!answered) {
        failed("the history " + path() + " did not answer for " + std::to_string(options_.stop_wait.count()) +
               " ms at the stop: its call was interrupted; up to " + std::to_string(waiting) +
               " changes may not be written");
        writer_->db->interrupt();
    }
    thread_.join();
}

}  // namespace mqtt_presence
