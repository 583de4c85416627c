#pragma once
// The one exception type of the library: setup and usage errors (bad names, templates, options, URIs, broker
// failures at start-up). Expected outcomes, such as a payload that cannot be read, are values, never exceptions.

#include <stdexcept>
#include <string>

namespace mqtt_presence {

class error : public std::runtime_error {
public:
    explicit error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace mqtt_presence
