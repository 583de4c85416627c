#pragma once
// --count beyond one process's share: the sensor runs its fleet in worker processes (itself, re-executed), each
// with a slice of the names, supervised by the first process. Paho C searches its list of clients linearly for every
// packet, so a process's cost grows with the square of its clients: five hundred per process keeps it small.
//
// Workers connect in turn: each is started (its clients made) at once, but connects only when the one before it has
// half of its clients connected (or after 2 s). Twenty workers connecting together would share the machine's cores
// with the broker, whose listen queue then overflows and whose TCP handshakes are retried a second later; in turn,
// about two connect at a time and the fleet is up about twice as fast. The signal is SIGUSR2 both ways: the parent
// sends it to the worker whose turn it is, the worker sends it back when half of its clients are connected.
//
// Workers die with their parent (PR_SET_PDEATHSIG): a SIGKILLed parent takes them along and the broker sends every
// will. SIGINT/SIGTERM to the parent stops all workers cleanly, in parallel. A worker that ends on its own (killed,
// crashed) is reported with the names its clients had: the broker sends their wills.

#include <functional>
#include <optional>
#include <string>

namespace sensor_workers {

/// The slice of the fleet this process runs, when it is a worker (set by its parent through the environment).
struct slice {
    int first = 1;  ///< the first sensor's number
    int count = 0;
    double connect_rate = 0;
    int index = 0;  ///< the worker's number, from 1
};
[[nodiscard]] std::optional<slice> this_worker();

/// A worker: waits for its turn to connect (SIGUSR2, kept blocked across the exec by the parent). Returns the signal
/// that ended the wait: SIGUSR2 for its turn, or SIGINT/SIGTERM (stop before connecting).
int wait_for_turn();
/// A worker: tells the parent that half of its clients are connected, so that the next worker may connect.
void pass_turn();

/// The parent: starts ceil(count / per_process) workers running argv again, each with its slice and half of
/// connect_rate (about two connect at a time), lets them connect in turn, waits for SIGINT/SIGTERM (blocked by the caller), stops them, and returns the exit code (0: all
/// stopped cleanly). `name_of(i)` names sensor i for the reports; `log` writes a line.
int run(char** argv, int count, int per_process, double connect_rate, const std::function<std::string(int)>& name_of,
        const std::function<void(const std::string&)>& log);

}  // namespace sensor_workers
