#include "live_keys.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <utility>

namespace live_keys {

namespace {

// The length of the key at the start of `rest`: an escape sequence (ESC [ ... final byte, or ESC O x) or one byte.
std::size_t key_length(std::string_view rest) {
    if (rest.size() < 2 || rest[0] != '\x1b') return 1;
    if (rest[1] == 'O') return std::min<std::size_t>(3, rest.size());
    if (rest[1] != '[') return 1;
    std::size_t n = 2;
    while (n < rest.size() && (rest[n] < 0x40 || rest[n] > 0x7E)) ++n;
    return std::min(n + 1, rest.size());
}

enum class motion : std::uint8_t { none, up, down, page_up, page_down, home, end };

// What a key does to the offset: the terminals' arrows, PgUp/PgDn and Home/End (both of their spellings), and the
// pager's j/k, space, g/G.
motion motion_of(std::string_view key) {
    static const std::pair<std::string_view, motion> keys[] = {
        {"\x1b[A", motion::up},         {"\x1bOA", motion::up},        {"k", motion::up},
        {"\x1b[B", motion::down},       {"\x1bOB", motion::down},      {"j", motion::down},
        {"\x1b[5~", motion::page_up},   {"\x1b[6~", motion::page_down}, {" ", motion::page_down},
        {"\x1b[H", motion::home},       {"\x1bOH", motion::home},      {"\x1b[1~", motion::home},
        {"\x1b[7~", motion::home},      {"g", motion::home},           {"\x1b[F", motion::end},
        {"\x1bOF", motion::end},        {"\x1b[4~", motion::end},      {"\x1b[8~", motion::end},
        {"G", motion::end}};
    for (const auto& [text, m] : keys)
        if (key == text) return m;
    return motion::none;
}

// One key while the filter is typed: Enter keeps it, Esc (or any key's sequence) drops it, Backspace erases.
void type(view& v, std::string_view key) {
    const char c = key.front();
    if (c == '\r' || c == '\n') {
        v.typing = false;
        v.filter = v.draft;
        v.offset = 0;
    } else if (c == '\x1b') {
        v.typing = false;
        v.draft.clear();
    } else if (c == '\x7f' || c == '\b') {
        if (!v.draft.empty()) v.draft.pop_back();
    } else if (static_cast<unsigned char>(c) >= 0x20 && v.draft.size() < 80) {
        v.draft += c;
    }
}

}  // namespace

bool apply(view& v, std::string_view input, std::size_t page) {
    page = std::max<std::size_t>(page, 1);
    for (std::size_t i = 0, len = 0; i < input.size(); i += len) {
        len = key_length(input.substr(i));
        const auto key = input.substr(i, len);
        if (v.typing) {
            type(v, key);
            continue;
        }
        switch (motion_of(key)) {
            case motion::up: v.offset = v.offset > 0 ? v.offset - 1 : 0; continue;
            case motion::down: ++v.offset; continue;
            case motion::page_up: v.offset = v.offset > page ? v.offset - page : 0; continue;
            case motion::page_down: v.offset += page; continue;
            case motion::home: v.offset = 0; continue;
            case motion::end: v.offset = SIZE_MAX; continue;
            case motion::none: break;
        }
        if (key == "/") {
            v.typing = true;
            v.draft.clear();
        } else if (key == "\x1b") {  // Esc alone: the filter goes
            v.filter.clear();
            v.offset = 0;
        } else if (key == "q" || key == "Q") {
            return true;
        }
    }
    return false;
}

reader::reader(std::function<void()> changed, std::atomic<bool>& quit) : changed_(std::move(changed)), quit_(quit) {
    if (isatty(STDIN_FILENO) == 0 || tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));  // keys as they come, unechoed; ^C still a signal
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) != 0) return;
    raw_ = true;
    thread_ = std::thread([this] { loop(); });
}

reader::~reader() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
    if (raw_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
}

view reader::current() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return view_;
}

void reader::layout(std::size_t page, std::size_t total) {
    std::lock_guard<std::mutex> lock(mutex_);
    page_ = page;
    total_ = total;
    const std::size_t last = total > page ? total - page : 0;  // the offset that shows the last rows
    view_.offset = std::min(view_.offset, last);
}

// Polls (200 ms at a time, so that a stop is seen) and reads what the terminal sent: a key, or a key's sequence.
void reader::loop() {
    while (!stopping_) {
        pollfd p{STDIN_FILENO, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        char buffer[64];
        const auto n = read(STDIN_FILENO, buffer, sizeof buffer);
        if (n <= 0) return;  // the terminal went away
        bool quit = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            quit = apply(view_, std::string_view(buffer, static_cast<std::size_t>(n)), page_);
            const std::size_t last = total_ > page_ ? total_ - page_ : 0;
            view_.offset = std::min(view_.offset, last);
        }
        if (quit) quit_ = true;
        changed_();
    }
}

}  // namespace live_keys
