#pragma once
// An std::ostream over cpp-httplib's DataSink: a renderer that writes to a stream (snapshot_writer) streams a
// response, so a large answer is never held as one text. After the client has gone, writes are dropped.
// Private to the service library.

#include <httplib.h>

#include <ostream>
#include <streambuf>

namespace mqtt_presence::detail {

class sink_stream : private std::streambuf, public std::ostream {
public:
    explicit sink_stream(httplib::DataSink& sink) : std::ostream(this), sink_(sink) {}

private:
    std::streamsize xsputn(const char* s, std::streamsize n) override {
        if (open_) open_ = sink_.write(s, static_cast<std::size_t>(n));
        return n;
    }
    using traits = std::streambuf::traits_type;
    std::streambuf::int_type overflow(std::streambuf::int_type c) override {
        if (c != traits::eof()) {
            const char ch = traits::to_char_type(c);
            xsputn(&ch, 1);
        }
        return traits::not_eof(c);
    }

    httplib::DataSink& sink_;
    bool open_ = true;
};

}  // namespace mqtt_presence::detail
