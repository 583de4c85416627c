#pragma once
// The live table's keys: arrows, PgUp/PgDn, Home/End scroll; '/' then text filters (Enter keeps it, Esc drops
// it); q quits. The terminal is put in raw mode (no echo, no line buffering) while it lives and restored after;
// keys are read on a thread of their own, so the table never waits for one.

#include <atomic>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include <termios.h>

namespace live_keys {

/// What the person asked to see: the first row shown, the filter, and the filter being typed.
struct view {
    std::size_t offset = 0;
    std::string filter;   ///< a case-blind substring of the name or topic; empty: every row
    bool typing = false;  ///< after '/', until Enter or Esc
    std::string draft;    ///< what was typed after '/'
};

/// Applies the keys in `input` (bytes as the terminal sends them) to `v`; `page` rows are one screenful. True when
/// q was pressed outside the filter.
bool apply(view& v, std::string_view input, std::size_t page);

class reader {
public:
    /// Starts reading stdin when it is a terminal (else does nothing); `changed` runs after each key that changed
    /// the view, `quit` is set by q.
    reader(std::function<void()> changed, std::atomic<bool>& quit);
    ~reader();
    reader(const reader&) = delete;
    reader& operator=(const reader&) = delete;

    [[nodiscard]] view current() const;
    /// One screenful, for PgUp and PgDn; and the rows there are, so that End and scrolling stop at the last.
    void layout(std::size_t page, std::size_t total);

private:
    void loop();

    std::function<void()> changed_;
    std::atomic<bool>& quit_;
    mutable std::mutex mutex_;
    view view_;
    std::size_t page_ = 20, total_ = 0;
    termios saved_{};
    bool raw_ = false;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace live_keys
