#include "history_database.hpp"

#include <unistd.h>

#include <mqtt_presence/this_machine.hpp>

#include <libpq-fe.h>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/service/history_store.hpp>

namespace mqtt_presence::detail {

std::int64_t to_ms(time_point t) noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
time_point from_ms(std::int64_t ms) noexcept { return time_point(std::chrono::milliseconds(ms)); }

std::map<std::string, std::string> conninfo(const std::string& where) {
    char* err = nullptr;
    PQconninfoOption* options = PQconninfoParse(where.c_str(), &err);
    if (!options) {
        const std::string why = err ? err : "cannot be read";
        PQfreemem(err);
        throw error("the PostgreSQL connection string is not valid: " + why);
    }
    std::map<std::string, std::string> values;
    for (auto* o = options; o->keyword; ++o)
        if (o->val && *o->val) values.emplace(o->keyword, o->val);
    PQconninfoFree(options);
    return values;
}

std::string writer_name() {
    return "mqtt-presence serve on " + host_name() + ", pid " + std::to_string(::getpid());
}

bool is_postgresql(std::string_view where) noexcept {
    const auto starts = [&](std::string_view p) { return where.substr(0, p.size()) == p; };
    if (starts("postgresql://") || starts("postgres://")) return true;
    // libpq's key=value form: a known keyword first ("dbname=x host=y"); no file path looks like that.
    for (std::string_view key : {"host=", "hostaddr=", "dbname=", "user=", "port=", "service="})
        if (starts(key)) return true;
    return false;
}

std::unique_ptr<history_database> open_history_database(const std::string& where, bool writable,
                                                        std::uint64_t max_bytes) {
    if (is_postgresql(where)) {
        if (max_bytes > 0) throw error("a cap on the history's size is for an SQLite file; PostgreSQL has its own");
        return open_postgres_history(where, writable);
    }
    return open_sqlite_history(where, writable, max_bytes);
}

}  // namespace mqtt_presence::detail

namespace mqtt_presence {

bool history_is_postgresql(const std::string& where) noexcept { return detail::is_postgresql(where); }

bool history_location_has_password(const std::string& where) {
    if (!detail::is_postgresql(where)) return false;
    try {
        return detail::conninfo(where).count("password") > 0;
    } catch (const error&) {
        return false;  // unreadable: opening it says why
    }
}

}  // namespace mqtt_presence
