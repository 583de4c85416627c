#pragma once
// The tools' exit codes, one meaning each, for scripts and systemd units (docs/operations.md lists them).

namespace exit_code {

constexpr int ok = 0;
/// A runtime failure: the sensor's clients could not all run (a client id conflict, dead workers); serve stopped
/// with changes it could not write; purge left statuses it could not clear.
constexpr int failure = 1;
/// Bad options, files or URIs: retrying will not help.
constexpr int usage = 2;
/// once --require: a required client is not connected (or stale, or unconfirmed).
constexpr int not_connected = 3;
/// The broker could not be reached, or the connection was lost during once.
constexpr int unreachable = 4;
/// once: the snapshot is not known complete (a sync that timed out, was not verified, or is partial).
constexpr int incomplete = 5;
/// serve: another instance holds what it needs (the history file, the HTTP port, the notary's template).
constexpr int in_use = 6;
/// serve: another serve took over its PostgreSQL history while this one could not reach it (it stood still, or its
/// connection was cut): a restart makes it a follower, so systemd restarts it.
constexpr int superseded = 7;

}  // namespace exit_code
