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

    const auto names_of = [&name_of](const slice& part) {
        return name_of(part.first) + " ... " + name_of(part.first + part.count - 1);
    };
    const int n_workers = (count + per_process - 1) / per_process;
    std::vector<worker> workers(static_cast<std::size_t>(n_workers));
    const pid_t parent = getpid();
    sigset_t worker_mask = before;  // SIGUSR2 stays blocked in the worker: the turn waits, pending, until taken
    sigaddset(&worker_mask, SIGUSR2);
    std::fflush(nullptr);  // nothing buffered is written twice
    std::vector<std::string> started;  // logged once every worker is forked: logging starts a thread
    // 0 in the new worker, its pid in the parent, -1 when it could not be made.
    const auto start = [&](worker& wk) -> pid_t {
        const pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);  // the parent's death (even SIGKILL) ends the worker: wills fire
            if (getppid() != parent) _exit(1);
            pthread_sigmask(SIG_SETMASK, &worker_mask, nullptr);
            return 0;
        }
        if (pid < 0) {
            log("cannot start worker " + std::to_string(wk.part.index) + ": " + std::strerror(errno));
            return -1;
        }
        wk.pid = pid;
        wk.running = true;
        wk.started = std::chrono::steady_clock::now();
        wk.restart_at = std::chrono::steady_clock::time_point::max();
        return pid;
    };
    for (int w = 0; w < n_workers; ++w) {
        auto& wk = workers[static_cast<std::size_t>(w)];
        wk.part.index = w + 1;
        wk.part.first = 1 + w * per_process;
        wk.part.count = std::min(per_process, count - w * per_process);
        wk.part.connect_rate = connect_rate / 2;  // about two workers connect at a time
        const pid_t pid = start(wk);
        if (pid == 0) return {0, wk.part};
        if (pid < 0) break;
        started.push_back("worker " + std::to_string(wk.part.index) + " (pid " + std::to_string(pid) +
                          "): " + names_of(wk.part));
    }
    for (const auto& line : started) log(line);

    // Turns: one worker after another starts connecting, when the one before has half of its clients up.
    std::size_t turns_given = 0;
    auto turn_given_at = std::chrono::steady_clock::now();
    const auto give_turn = [&] {
        while (turns_given < workers.size() && !workers[turns_given].running) ++turns_given;  // never started
        if (turns_given == workers.size()) return;
        kill(workers[turns_given++].pid, SIGUSR2);
        turn_given_at = std::chrono::steady_clock::now();
    };
    give_turn();

    int rc = 0;
    bool stopping = false;
    bool gave_up = false;  // restarts kept failing: the supervisor stops and exits 1
    auto deadline = std::chrono::steady_clock::time_point::max();
    const auto stop_workers = [&] {  // each stops its clients in parallel; none comes back
        stopping = true;
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (auto& wk : workers) {
            wk.restart_at = std::chrono::steady_clock::time_point::max();
            if (wk.running) kill(wk.pid, SIGTERM);
        }
    };
    for (;;) {
        // Reap every worker that ended; one that ended before the stop took its clients down with it.
        int status = 0;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (auto& wk : workers) {
                if (wk.pid != pid || !wk.running) continue;
                wk.running = false;
                if (!stopping && turns_given > 0 && workers[turns_given - 1].pid == pid) give_turn();
                const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                if (!stopping || !clean) {
                    rc = exit_code::failure;
                    auto text = "worker " + std::to_string(wk.part.index) + " (pid " + std::to_string(pid) + ") " +
                                describe(status);
                    if (!stopping)
                        text += ": the broker sends the wills of its " + std::to_string(wk.part.count) +
                                " clients, " + names_of(wk.part) + schedule_restart(wk, gave_up);
                    log(text);
                }
            }
        }
        // Dead workers come back; one that keeps dying ends the supervisor, which a service manager then sees.
        for (auto& wk : workers) {
            if (gave_up || wk.running || std::chrono::steady_clock::now() < wk.restart_at) continue;
            const pid_t again = start(wk);
            if (again == 0) return {0, wk.part};
            if (again > 0) {
                kill(again, SIGUSR2);  // its turn at once: the others are up
                log("worker " + std::to_string(wk.part.index) + " restarted (pid " + std::to_string(again) + "): " +
                    names_of(wk.part));
            }
        }
        if (gave_up && !stopping) stop_workers();
        std::size_t alive = 0, coming_back = 0;
        for (const auto& wk : workers) {
            alive += wk.running ? 1 : 0;
            coming_back += !wk.running && wk.restart_at != std::chrono::steady_clock::time_point::max() ? 1 : 0;
        }
        if (alive == 0 && coming_back == 0) break;
        if (stopping && std::chrono::steady_clock::now() > deadline) {
            for (const auto& wk : workers)
                if (wk.running) kill(wk.pid, SIGKILL);
            log("workers that did not stop within 10 s were killed (their wills fire)");
            rc = exit_code::failure;
            deadline = std::chrono::steady_clock::time_point::max();
        }
        const bool turns_left = !stopping && turns_given < workers.size();
        if (turns_left && std::chrono::steady_clock::now() - turn_given_at >= turn_timeout) give_turn();
        auto wait = std::chrono::nanoseconds(std::chrono::milliseconds(200));
        if (turns_left)
            wait = std::clamp<std::chrono::nanoseconds>(turn_given_at + turn_timeout - std::chrono::steady_clock::now(),
                                                        std::chrono::milliseconds(1), wait);
        const timespec tick{0, static_cast<long>(wait.count())};
        siginfo_t info{};
        const int sig = sigtimedwait(&wanted, &info, &tick);
        if (sig == SIGUSR2 && !stopping && turns_given > 0 && info.si_pid == workers[turns_given - 1].pid) give_turn();
        if ((sig == SIGINT || sig == SIGTERM) && !stopping) {
            log(std::string("stopping ") + std::to_string(alive) + " workers on " + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
            stop_workers();
        }
    }
    log(std::string("all workers stopped") + (rc == 0 ? "" : " (see above)"));
    return {stopping && !gave_up ? rc : 1, std::nullopt};
}

}  // namespace sensor_workers
