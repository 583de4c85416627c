#pragma once
// The history file's schema, its version checks and migrations, and the column mapping shared by the store (which
// writes) and the reader. Private to the service library.

#include <cstdint>
#include <optional>
#include <string>

#include <SQLiteCpp/SQLiteCpp.h>

#include <mqtt_presence/connection_table.hpp>

namespace mqtt_presence::detail {

/// Opens `path` (creating it when `writable`), checks that it is a history file of a schema this binary knows, and
/// (writable) creates or migrates the schema. Throws mqtt_presence::error naming the file and the problem.
std::unique_ptr<SQLite::Database> open_history(const std::string& path, bool writable);

std::int64_t to_ms(time_point t) noexcept;
time_point from_ms(std::int64_t ms) noexcept;

/// The columns of `clients`, in the order current_rows_sql selects them and the upsert binds them.
extern const char* const current_rows_sql;
client_status read_client_row(SQLite::Statement& row);

}  // namespace mqtt_presence::detail
