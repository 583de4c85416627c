#include "text_util.hpp"

namespace mqtt_presence::detail {
namespace {

// Length of the valid UTF-8 sequence starting at text[i], or 0 if it is invalid (overlongs, surrogates and
// code points above U+10FFFF are invalid).
std::size_t utf8_sequence(std::string_view text, std::size_t i) noexcept {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned c = byte(i);
    if (c < 0x80) return 1;
    std::size_t len = 0;
    unsigned min = 0;
    unsigned cp = 0;
    if ((c & 0xE0) == 0xC0) { len = 2; min = 0x80; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; min = 0x800; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; min = 0x10000; cp = c & 0x07; }
    else return 0;
    if (i + len > text.size()) return 0;
    for (std::size_t k = 1; k < len; ++k) {
        if ((byte(i + k) & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (byte(i + k) & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

}  // namespace

bool is_valid_utf8(std::string_view text) noexcept {
    for (std::size_t i = 0; i < text.size();) {
        const auto len = utf8_sequence(text, i);
        if (len == 0) return false;
        i += len;
    }
    return true;
}

std::string_view trim(std::string_view text) noexcept {
    // A plain loop: find_first_not_of calls memchr over the set once per character.
    const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; };
    std::size_t first = 0, last = text.size();
    while (first < last && space(text[first])) ++first;
    while (last > first && space(text[last - 1])) --last;
    return text.substr(first, last - first);
}

std::string printable(std::string_view text, std::size_t limit) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(text.size() < limit ? text.size() : limit);
    for (std::size_t i = 0; i < text.size();) {
        if (out.size() >= limit) {
            out += "...";
            break;
        }
        const auto len = utf8_sequence(text, i);
        const auto c = static_cast<unsigned char>(text[i]);
        if (len == 0 || c < 0x20 || c == 0x7F) {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xF];
            ++i;
        } else {
            out.append(text.substr(i, len));
            i += len;
        }
    }
    return out;
}

}  // namespace mqtt_presence::detail
