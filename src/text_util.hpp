#pragma once
// Small text helpers shared by the pure layers. Private to the library.

#include <cstddef>
#include <string>
#include <string_view>

namespace mqtt_presence::detail {

[[nodiscard]] bool is_valid_utf8(std::string_view text) noexcept;
/// Case-insensitive ASCII comparison. Inline: the codec calls it for every plain payload.
[[nodiscard]] inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto x = static_cast<unsigned char>(a[i]);
        auto y = static_cast<unsigned char>(b[i]);
        if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
        if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
        if (x != y) return false;
    }
    return true;
}
/// Strips ASCII whitespace (space, tab, CR, LF, VT, FF) at both ends.
[[nodiscard]] std::string_view trim(std::string_view text) noexcept;
/// A copy that is harmless on a terminal, valid UTF-8 and at most about `limit` bytes: C0 and C1 control
/// characters, DEL and invalid bytes become "\xNN"; bidi overrides and isolates, zero-width characters, line and
/// paragraph separators and non-characters become "\u{XXXX}" (they reorder or hide text); "..." marks a cut.
[[nodiscard]] std::string printable(std::string_view text, std::size_t limit = 80);
/// The number of terminal cells valid UTF-8 `text` takes (wide East Asian characters take two, combining
/// marks none). Call on printable() text.
[[nodiscard]] std::size_t display_width(std::string_view text) noexcept;
/// A line of printable() text with colour sequences (ESC [ ... m, which take no cell) cut to at most `cells` terminal
/// cells, "…" marking a cut (then a colour reset, when the line has colours); trailing spaces dropped.
[[nodiscard]] std::string fit_line(std::string_view line, std::size_t cells);
/// `text` (printable) cut to at most `cells` terminal cells, "~" marking a cut, then padded with spaces to
/// exactly `cells` cells.
[[nodiscard]] std::string fit_cells(std::string_view text, std::size_t cells);

}  // namespace mqtt_presence::detail
