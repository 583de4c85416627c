#include "text_util.hpp"

#include <algorithm>

#include <clocale>
#include <cwchar>
#include <locale.h>

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

// The code point of the valid sequence of `len` bytes at text[i].
char32_t code_point(std::string_view text, std::size_t i, std::size_t len) noexcept {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    if (len == 1) return byte(i);
    char32_t cp = byte(i) & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (byte(i + k) & 0x3F);
    return cp;
}

// Characters that are valid but must not reach a terminal as they are: C1 controls (a C1 CSI starts an escape
// sequence on some terminals), bidi controls that reorder the rest of the line (Trojan Source), zero-width
// characters that hide a difference between two names, separators that break a line, non-characters.
bool hidden_or_control(char32_t cp) noexcept {
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0xAD || cp == 0x061C || cp == 0x180E ||
           (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2069) ||
           cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) || (cp >= 0xFDD0 && cp <= 0xFDEF) ||
           (cp & 0xFFFE) == 0xFFFE || (cp >= 0xE0000 && cp <= 0xE007F);
}

// wcwidth() answers for the calling thread's locale: ask the C.UTF-8 one, whatever the program's locale is.
int cell_width(char32_t cp) noexcept {
    static const locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
    if (cp < 0x80) return 1;
    if (utf8 == static_cast<locale_t>(nullptr)) return 1;
    const locale_t previous = uselocale(utf8);
    const int w = wcwidth(static_cast<wchar_t>(cp));
    uselocale(previous);
    return w < 0 ? 1 : w;
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
            continue;
        }
        const char32_t cp = len == 1 ? c : code_point(text, i, len);
        if (len > 1 && hidden_or_control(cp)) {
            out += cp <= 0x9F ? "\\x" : "\\u{";
            for (int shift = cp <= 0x9F ? 4 : cp > 0xFFFF ? 16 : 12; shift >= 0; shift -= 4) out += hex[(cp >> shift) & 0xF];
            if (cp > 0x9F) out += '}';
        } else {
            out.append(text.substr(i, len));
        }
        i += len;
    }
    return out;
}

std::size_t display_width(std::string_view text) noexcept {
    std::size_t cells = 0;
    for (std::size_t i = 0; i < text.size();) {
        const auto len = utf8_sequence(text, i);
        if (len == 0) {  // not from printable(): count the byte, it will be shown as one escape
            ++cells;
            ++i;
            continue;
        }
        cells += static_cast<std::size_t>(cell_width(code_point(text, i, len)));
        i += len;
    }
    return cells;
}

std::string fit_line(std::string_view line, std::size_t cells) {
    while (!line.empty() && line.back() == ' ') line.remove_suffix(1);  // padding is not content
    // The piece at `i`: a colour sequence, kept whole, of no cell; or one character and its cells.
    const auto piece = [&line](std::size_t i, std::size_t& width) -> std::size_t {
        width = 0;
        if (line[i] == '\x1b') {
            const auto end = line.find('m', i);
            return end == std::string_view::npos ? line.size() - i : end + 1 - i;
        }
        const auto len = std::max<std::size_t>(utf8_sequence(line, i), 1);
        width = static_cast<std::size_t>(cell_width(code_point(line, i, len)));
        return len;
    };
    std::size_t total = 0, width = 0;
    for (std::size_t i = 0; i < line.size();) {
        i += piece(i, width);
        total += width;
    }
    if (total <= cells || cells < 2) return std::string(line);
    std::string out;
    std::size_t used = 0;
    bool coloured = false, past = false;
    for (std::size_t i = 0; i < line.size();) {
        const auto len = piece(i, width);
        if (line[i] == '\x1b') {  // kept past the cut too, so that a colour still ends
            coloured = true;
            out.append(line.substr(i, len));
        } else if (!past && used + width <= cells - 1) {
            out.append(line.substr(i, len));
            used += width;
        } else {
            past = true;
        }
        i += len;
    }
    return out + "\u2026" + (coloured ? "\x1b[0m" : "");
}

std::string fit_cells(std::string_view text, std::size_t cells) {
    std::string out;
    std::size_t used = 0;
    if (const auto width = display_width(text); width <= cells) {
        out.assign(text);
        used = width;
    } else if (cells > 0) {
        for (std::size_t i = 0; i < text.size();) {
            const auto len = std::max<std::size_t>(utf8_sequence(text, i), 1);
            const auto w = static_cast<std::size_t>(cell_width(code_point(text, i, len)));
            if (used + w > cells - 1) break;
            out.append(text.substr(i, len));
            used += w;
            i += len;
        }
        out += '~';
        ++used;
    }
    out.append(cells > used ? cells - used : 0, ' ');
    return out;
}

}  // namespace mqtt_presence::detail
