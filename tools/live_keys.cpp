#include "live_keys.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>

namespace live_keys {

bool apply(view& v, std::string_view input, std::size_t page) {
    page = std::max<std::size_t>(page, 1);
    for (std::size_t i = 0; i < input.size(); ++i) {
        const char c = input[i];
        const auto rest = input.substr(i);
        if (v.typing) {
            if (c == '\r' || c == '\n') {
                v.typing = false;
                v.filter = v.draft;
                v.offset = 0;
            } else if (c == '\x1b') {  // Esc (or a key's sequence while typing: drops the draft, as Esc does)
                v.typing = false;
                v.draft.clear();
                while (i + 1 < input.size() && input[i + 1] != '\x1b' && (input[i + 1] == '[' || input[i + 1] == 'O' ||
                                                                           (input[i + 1] >= '0' && input[i + 1] <= '~')))
                    ++i;
            } else if (c == '\x7f' || c == '\b') {
                if (!v.draft.empty()) v.draft.pop_back();
            } else if (static_cast<unsigned char>(c) >= 0x20 && v.draft.size() < 80) {
                v.draft += c;
            }
            continue;
        }
        const auto seq = [&rest](std::string_view s) { return rest.substr(0, s.size()) == s; };
        if (seq("\x1b[A") || seq("\x1bOA")) v.offset = v.offset > 0 ? v.offset - 1 : 0, i += 2;
        else if (seq("\x1b[B") || seq("\x1bOB")) ++v.offset, i += 2;
        else if (seq("\x1b[5~")) v.offset = v.offset > page ? v.offset - page : 0, i += 3;
        else if (seq("\x1b[6~")) v.offset += page, i += 3;
        else if (seq("\x1b[H") || seq("\x1bOH")) v.offset = 0, i += 2;
        else if (seq("\x1b[1~") || seq("\x1b[7~")) v.offset = 0, i += 3;
        else if (seq("\x1b[F") || seq("\x1bOF")) v.offset = SIZE_MAX, i += 2;
        else if (seq("\x1b[4~") || seq("\x1b[8~")) v.offset = SIZE_MAX, i += 3;
        else if (c == 'k') v.offset = v.offset > 0 ? v.offset - 1 : 0;
        else if (c == 'j') ++v.offset;
        else if (c == ' ') v.offset += page;
        else if (c == 'g') v.offset = 0;
        else if (c == 'G') v.offset = SIZE_MAX;
        else if (c == '/') v.typing = true, v.draft.clear();
        else if (c == '\x1b' && rest.size() == 1) v.filter.clear(), v.offset = 0;  // Esc alone: the filter goes
        else if (c == 'q' || c == 'Q') return true;
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
