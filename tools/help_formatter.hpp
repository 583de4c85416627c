#pragma once
// --help that fits the terminal: CLI11 prints each description on one line, however long, and a terminal then
// breaks it at any character and column. This formatter wraps descriptions at word boundaries, continued lines in
// the description column. Width: 80 columns, or the terminal's when it is narrower.

#include <CLI/CLI.hpp>

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <sstream>
#include <string>

namespace cli {

class help_formatter : public CLI::Formatter {
public:
    help_formatter() : width_(terminal_width()) {}

    /// Words of `text` on lines of at most `width` characters ('\n' in `text` kept); a word longer than a line
    /// stands alone on it.
    static std::string wrap(const std::string& text, std::size_t width) {
        std::string out, paragraph;
        std::istringstream paragraphs(text);
        bool first_paragraph = true;
        while (std::getline(paragraphs, paragraph)) {
            if (!first_paragraph) out += '\n';
            first_paragraph = false;
            std::istringstream words(paragraph);
            std::size_t line = 0;
            for (std::string word; words >> word;) {
                if (line > 0 && line + 1 + word.size() > width) {
                    out += '\n';
                    line = 0;
                } else if (line > 0) {
                    out += ' ';
                    ++line;
                }
                out += word;
                line += word.size();
            }
        }
        return out;
    }

    std::string make_description(const CLI::App* app) const override {
        const auto description = CLI::Formatter::make_description(app);
        return description.empty() ? description : wrap(description, width_) + "\n";
    }

    std::string make_option_desc(const CLI::Option* opt) const override {
        return wrap(CLI::Formatter::make_option_desc(opt), description_width());
    }

    std::string make_subcommand(const CLI::App* sub) const override {
        std::stringstream out;
        CLI::detail::format_help(out, sub->get_display_name(true), wrap(sub->get_description(), description_width()),
                                 get_column_width());
        return out.str();
    }

private:
    /// What is left of a line after the description column (options in a group are indented two more).
    std::size_t description_width() const {
        const auto column = get_column_width() + 2;
        return width_ > column + 30 ? width_ - column : 30;
    }

    static std::size_t terminal_width() {
        winsize size{};
        if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0)
            return std::clamp<std::size_t>(size.ws_col, 60, 80);
        return 80;
    }

    std::size_t width_;
};

}  // namespace cli
