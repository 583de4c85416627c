#pragma once
// The dashboard's page, built into the binary from service/web/ at build time (web_assets.cpp is generated).
#include <cstddef>
#include <string_view>

namespace mqtt_presence::detail {

struct web_asset {
    std::string_view path;          // "/", "/app.js", "/style.css"
    std::string_view content_type;
    std::string_view body;
};
/// Every asset; the generated file defines it.
extern const web_asset web_assets[];
extern const std::size_t web_asset_count;

}  // namespace mqtt_presence::detail
