#include "history_database.hpp"

#include <libpq-fe.h>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/service/history_store.hpp>

namespace mqtt_presence::detail {

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
    char* err = nullptr;
    PQconninfoOption* options = PQconninfoParse(where.c_str(), &err);
    if (!options) {
        PQfreemem(err);
        return false;  // unreadable: opening it says why
    }
    bool found = false;
    for (auto* o = options; o->keyword; ++o)
        if (std::string_view(o->keyword) == "password" && o->val && *o->val) found = true;
    PQconninfoFree(options);
    return found;
}

}  // namespace mqtt_presence
