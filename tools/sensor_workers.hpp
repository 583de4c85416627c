#pragma once
// --count beyond one process's share: the sensor runs its fleet in worker processes, each a fork of the first process
// with a slice of the names, supervised by it. Paho C searches its list of clients linearly for every packet, so a
// process's cost grows with the square of its clients: a few hundred per process keeps it small.
//
// A worker is a fork, not a new program: it shares the libraries the parent has loaded and relocated instead of
// loading them again, and touches only the pages it uses (about 1.8 MiB less resident memory per worker). The parent
// forks every worker before it starts a thread of its own, so each fork is a copy of a single-threaded process.
//
// Workers connect in turn: each is started (its clients made) at once, but connects only when the one before it has
// half of its clients connected (or after 2 s). Twenty workers connecting together would share the machine's cores
// with the broker, whose listen queue then overflows and whose TCP handshakes are retried a second later; in turn,
// about two connect at a time and the fleet is up about twice as fast. The signal is SIGUSR2 both ways: the parent
// sends it to the worker whose turn it is, the worker sends it back when half of its clients are connected.
//
// Workers die with their parent (PR_SET_PDEATHSIG): a SIGKILLed parent takes them along and the broker sends every
// will. SIGINT/SIGTERM to the parent stops all workers cleanly, in parallel. A worker that ends on its own (killed,
// crashed) is reported with the names its clients had (the broker sends their wills) and started again after a
// back-off (1 s doubling to 30 s); when restarts keep failing (three deaths in a row, each within 10 s of its start)
// the supervisor stops the rest and exits 1 at once, so that its service manager sees the failure. The supervisor
// starts no thread: every fork, a restart too, copies a single-threaded process.

#include <functional>
#include <optional>
#include <string>

namespace sensor_workers {

/// The slice of the fleet a worker runs.
struct slice {
    int first = 1;  ///< the first sensor's number
    int count = 0;
    double connect_rate = 0;
    int index = 0;  ///< the worker's number, from 1
};
/// A worker: waits for its turn to connect (SIGUSR2, blocked since the fork). Returns the signal
/// that ended the wait: SIGUSR2 for its turn, or SIGINT/SIGTERM (stop before connecting).
int wait_for_turn();
/// A worker: tells the parent that half of its clients are connected, so that the next worker may connect.
void pass_turn();

/// What run() returns: in the parent, its exit code once every worker has ended (0: all stopped cleanly); in a
/// worker, which returns from run() right after the fork, the slice it runs.
struct outcome {
    int exit_code = 0;
    std::optional<slice> worker;
};

/// The parent: forks ceil(count / per_process) workers, each with its slice and half of connect_rate (about two
/// connect at a time), lets them connect in turn, waits for SIGINT/SIGTERM (blocked by the caller), stops them, and
/// returns its exit code. Call it before any thread starts. `name_of(i)` names sensor i for the reports; `log`
/// writes a line (only after every fork).
outcome run(int count, int per_process, double connect_rate, const std::function<std::string(int)>& name_of,
            const std::function<void(const std::string&)>& log);

}  // namespace sensor_workers
