#!/usr/bin/python3
"""How soon the live table shows a death: the scanner's watch mode on a pseudo-terminal, a sensor SIGKILLed ROUNDS
times; for each death, the moment the terminal shows the sensor's row as "disconnected" minus the moment an
independent mosquitto_sub printed the will's "0". Prints p50 and max. Not a test.
Usage: bench/live_table.py [ROUNDS]   (default 20; run scripts/build first)"""
import os, pty, select, signal, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
bins = os.path.join(root, "build", "tools")
work = tempfile.mkdtemp()
subprocess.run([os.path.join(root, "scripts", "test-broker"), "start", work + "/b"], check=True, stdout=subprocess.DEVNULL)
port = open(work + "/b/port").read().strip()
uri = "tcp://127.0.0.1:" + port
try:
    sub = subprocess.Popen(["mosquitto_sub", "-p", port, "-t", "bench/+", "-v"], stdout=subprocess.PIPE, text=True,
                           bufsize=1)
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["COLUMNS"], os.environ["LINES"] = "120", "40"
        os.execv(os.path.join(bins, "mqtt-presence-scanner"),
                 ["mqtt-presence-scanner", "-b", uri, "-t", "bench/{client}", "--no-color"])
    screen = ""

    def read_pty(timeout):
        global screen
        r, _, _ = select.select([fd], [], [], timeout)
        if r:
            data = os.read(fd, 65536).decode(errors="replace")
            at = data.rfind("\x1b[H\x1b[2J")  # the last redraw is the screen
            screen = data[at:] if at >= 0 else screen + data

    lags = []
    for i in range(rounds):
        name = "s%d" % i
        sensor = subprocess.Popen([os.path.join(bins, "mqtt-presence-sensor"), "-b", uri, "-t", "bench/{client}",
                                   "--name", name], stderr=subprocess.DEVNULL)
        while True:  # the will's "1" first
            line = sub.stdout.readline()
            if line.strip() == "bench/%s 1" % name:
                break
        deadline = time.time() + 5
        while time.time() < deadline and not any(l.startswith(name + " ") and "connected" in l and
                                                  "disconnected" not in l for l in screen.splitlines()):
            read_pty(0.05)
        time.sleep(0.1)  # a lone death, not one within the 20 ms rate limit of the birth's redraw
        sensor.send_signal(signal.SIGKILL)
        sensor.wait()
        while True:
            line = sub.stdout.readline()
            if line.strip() == "bench/%s 0" % name:
                will_seen = time.monotonic()
                break
        while not any(l.startswith(name + " ") and "disconnected" in l for l in screen.splitlines()):
            read_pty(0.5)
        lags.append((time.monotonic() - will_seen) * 1000)
    os.kill(pid, signal.SIGINT)
    os.waitpid(pid, 0)
    sub.kill()
    print("live table: a death shown %.1f ms after mosquitto_sub saw the will (p50), max %.1f ms, %d rounds"
          % (statistics.median(lags), max(lags), rounds))
finally:
    subprocess.run([os.path.join(root, "scripts", "test-broker"), "stop", work + "/b"], stdout=subprocess.DEVNULL)
