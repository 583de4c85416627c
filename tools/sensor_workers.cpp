#include "sensor_workers.hpp"
#include "exit_codes.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

namespace sensor_workers {
namespace {

struct worker {
    pid_t pid = -1;
    slice part;
    bool running = false;
    std::chrono::steady_clock::time_point started{};
    std::chrono::steady_clock::time_point restart_at = std::chrono::steady_clock::time_point::max();  // dead: when
    std::chrono::seconds backoff{1};
    int quick_deaths = 0;  // in a row, each within quick_death of its start
};

constexpr auto turn_timeout = std::chrono::seconds(2);  // a worker that cannot get half up does not hold up the rest
constexpr auto quick_death = std::chrono::seconds(10);
constexpr int restarts_given_up_after = 3;  // deaths in a row, each soon after its start

// A worker died while the fleet ran: when it comes back (restart_at), or that restarts keep failing. Returns what to
// add to the line that reports the death.
std::string schedule_restart(worker& wk, bool& gave_up) {
    const auto now = std::chrono::steady_clock::now();
    wk.quick_deaths = now - wk.started < quick_death ? wk.quick_deaths + 1 : 1;
    wk.backoff = wk.quick_deaths > 1 ? std::min(wk.backoff * 2, std::chrono::seconds(30)) : std::chrono::seconds(1);
    if (wk.quick_deaths >= restarts_given_up_after) {
        gave_up = true;
        return "; it died " + std::to_string(wk.quick_deaths) + " times in a row within " +
               std::to_string(quick_death.count()) + " s of its start: stopping";
    }
    wk.restart_at = now + wk.backoff;
    return "; restarting it in " + std::to_string(wk.backoff.count()) + " s";
}

std::string describe(int status) {
    if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
    return "exited with code " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

int wait_for_turn() {
    sigset_t turn;
    sigemptyset(&turn);
    sigaddset(&turn, SIGUSR2);
    sigaddset(&turn, SIGINT);
    sigaddset(&turn, SIGTERM);
    for (;;) {
        const int sig = sigwaitinfo(&turn, nullptr);
        if (sig > 0) return sig;
    }
}

void pass_turn() { kill(getppid(), SIGUSR2); }

namespace {

// The parent's side: its workers, whose turn it is to connect, and the stop. Each step that may fork returns the
// slice when it runs in the new worker (fork returned 0 there), which then leaves the supervisor.
class supervisor {
public:
    supervisor(int count, int per_process, double connect_rate, const std::function<std::string(int)>& name_of,
               const std::function<void(const std::string&)>& log, const sigset_t& before)
        : name_of_(name_of), log_(log), parent_(getpid()), worker_mask_(before) {
        sigaddset(&worker_mask_, SIGUSR2);  // stays blocked in the worker: the turn waits, pending, until taken
        const int n_workers = (count + per_process - 1) / per_process;
        workers_.resize(static_cast<std::size_t>(n_workers));
        for (int w = 0; w < n_workers; ++w) {
            auto& part = workers_[static_cast<std::size_t>(w)].part;
            part.index = w + 1;
            part.first = 1 + w * per_process;
            part.count = std::min(per_process, count - w * per_process);
            part.connect_rate = connect_rate / 2;  // about two workers connect at a time
        }
    }

    // Forks every worker, then logs them (logging starts a thread: not before the forks).
    std::optional<slice> start_all() {
        std::fflush(nullptr);  // nothing buffered is written twice
        std::vector<std::string> started;
        for (auto& wk : workers_) {
            const pid_t pid = start(wk);
            if (pid == 0) return wk.part;
            if (pid < 0) break;
            started.push_back("worker " + std::to_string(wk.part.index) + " (pid " + std::to_string(pid) +
                              "): " + names_of(wk.part));
        }
        for (const auto& line : started) log_(line);
        turn_given_at_ = std::chrono::steady_clock::now();
        give_turn();
        return std::nullopt;
    }

    // Until every worker ended: reaps, restarts, hands out turns, stops on SIGINT/SIGTERM.
    outcome supervise(const sigset_t& wanted) {
        for (;;) {
            reap();
            if (auto part = restart_dead()) return {0, part};
            if (gave_up_ && !stopping_) stop_workers();
            std::size_t alive = 0, coming_back = 0;
            for (const auto& wk : workers_) {
                alive += wk.running ? 1 : 0;
                coming_back += !wk.running && wk.restart_at != std::chrono::steady_clock::time_point::max() ? 1 : 0;
            }
            if (alive == 0 && coming_back == 0) break;
            kill_the_late();
            wait_for_signal(wanted, alive);
        }
        log_(std::string("all workers stopped") + (rc_ == 0 ? "" : " (see above)"));
        return {stopping_ && !gave_up_ ? rc_ : 1, std::nullopt};
    }

private:
    std::string names_of(const slice& part) const {
        return name_of_(part.first) + " ... " + name_of_(part.first + part.count - 1);
    }

    // 0 in the new worker, its pid in the parent, -1 when it could not be made.
    pid_t start(worker& wk) {
        const pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);  // the parent's death (even SIGKILL) ends the worker: wills fire
            if (getppid() != parent_) _exit(1);
            pthread_sigmask(SIG_SETMASK, &worker_mask_, nullptr);
            return 0;
        }
        if (pid < 0) {
            log_("cannot start worker " + std::to_string(wk.part.index) + ": " + std::strerror(errno));
            return -1;
        }
        wk.pid = pid;
        wk.running = true;
        wk.started = std::chrono::steady_clock::now();
        wk.restart_at = std::chrono::steady_clock::time_point::max();
        return pid;
    }

    // Turns: one worker after another starts connecting, when the one before has half of its clients up.
    void give_turn() {
        while (turns_given_ < workers_.size() && !workers_[turns_given_].running) ++turns_given_;  // never started
        if (turns_given_ == workers_.size()) return;
        kill(workers_[turns_given_++].pid, SIGUSR2);
        turn_given_at_ = std::chrono::steady_clock::now();
    }
    [[nodiscard]] bool is_turn_holder(pid_t pid) const {
        return turns_given_ > 0 && workers_[turns_given_ - 1].pid == pid;
    }

    void stop_workers() {  // each stops its clients in parallel; none comes back
        stopping_ = true;
        deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (auto& wk : workers_) {
            wk.restart_at = std::chrono::steady_clock::time_point::max();
            if (wk.running) kill(wk.pid, SIGTERM);
        }
    }

    // Reaps every worker that ended; one that ended before the stop took its clients down with it.
    void reap() {
        int status = 0;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (auto& wk : workers_) {
                if (wk.pid != pid || !wk.running) continue;
                wk.running = false;
                if (!stopping_ && is_turn_holder(pid)) give_turn();
                const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                if (stopping_ && clean) continue;
                rc_ = exit_code::failure;
                auto text = "worker " + std::to_string(wk.part.index) + " (pid " + std::to_string(pid) + ") " +
                            describe(status);
                if (!stopping_)
                    text += ": the broker sends the wills of its " + std::to_string(wk.part.count) + " clients, " +
                            names_of(wk.part) + schedule_restart(wk, gave_up_);
                log_(text);
            }
        }
    }

    // Dead workers come back; one that keeps dying ends the supervisor, which a service manager then sees.
    std::optional<slice> restart_dead() {
        for (auto& wk : workers_) {
            if (gave_up_ || wk.running || std::chrono::steady_clock::now() < wk.restart_at) continue;
            const pid_t again = start(wk);
            if (again == 0) return wk.part;
            if (again > 0) {
                kill(again, SIGUSR2);  // its turn at once: the others are up
                log_("worker " + std::to_string(wk.part.index) + " restarted (pid " + std::to_string(again) + "): " +
                     names_of(wk.part));
            }
        }
        return std::nullopt;
    }

    void kill_the_late() {
        if (!stopping_ || std::chrono::steady_clock::now() <= deadline_) return;
        for (const auto& wk : workers_)
            if (wk.running) kill(wk.pid, SIGKILL);
        log_("workers that did not stop within 10 s were killed (their wills fire)");
        rc_ = exit_code::failure;
        deadline_ = std::chrono::steady_clock::time_point::max();
    }

    // Waits up to 200 ms (less when a turn is due) for a signal: a worker's "half up", SIGINT or SIGTERM.
    void wait_for_signal(const sigset_t& wanted, std::size_t alive) {
        const bool turns_left = !stopping_ && turns_given_ < workers_.size();
        if (turns_left && std::chrono::steady_clock::now() - turn_given_at_ >= turn_timeout) give_turn();
        auto wait = std::chrono::nanoseconds(std::chrono::milliseconds(200));
        if (turns_left)
            wait = std::clamp<std::chrono::nanoseconds>(turn_given_at_ + turn_timeout - std::chrono::steady_clock::now(),
                                                        std::chrono::milliseconds(1), wait);
        const timespec tick{0, static_cast<long>(wait.count())};
        siginfo_t info{};
        const int sig = sigtimedwait(&wanted, &info, &tick);
        if (sig == SIGUSR2 && !stopping_ && is_turn_holder(info.si_pid)) give_turn();
        if ((sig == SIGINT || sig == SIGTERM) && !stopping_) {
            log_(std::string("stopping ") + std::to_string(alive) + " workers on " +
                 (sig == SIGINT ? "SIGINT" : "SIGTERM"));
            stop_workers();
        }
    }

    const std::function<std::string(int)>& name_of_;
    const std::function<void(const std::string&)>& log_;
    const pid_t parent_;
    sigset_t worker_mask_;
    std::vector<worker> workers_;
    std::size_t turns_given_ = 0;
    std::chrono::steady_clock::time_point turn_given_at_{};
    int rc_ = 0;
    bool stopping_ = false;
    bool gave_up_ = false;  // restarts kept failing: the supervisor stops and exits 1
    std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
};

}  // namespace

outcome run(int count, int per_process, double connect_rate, const std::function<std::string(int)>& name_of,
            const std::function<void(const std::string&)>& log) {
    sigset_t wanted;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGINT);
    sigaddset(&wanted, SIGTERM);
    sigaddset(&wanted, SIGCHLD);
    sigaddset(&wanted, SIGUSR2);  // a worker has half of its clients up: the next one's turn
    sigset_t before;
    pthread_sigmask(SIG_BLOCK, &wanted, &before);
    supervisor workers(count, per_process, connect_rate, name_of, log, before);
    if (auto part = workers.start_all()) return {0, part};
    return workers.supervise(wanted);
}

}  // namespace sensor_workers
