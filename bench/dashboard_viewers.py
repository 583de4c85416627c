#!/usr/bin/python3
"""Page-like dashboard viewers: each holds /api/events open and refetches as the page does.

  dashboard_viewers.py URL VIEWERS SECONDS page|eager|listen

Runs SECONDS, or until SIGTERM; then prints.

page:  what service/web/app.js does: on each event a refresh after 50-400 ms, at most one a second, never two
       loads at once (a load asked for during one runs after it).
eager: the page before that discipline: one timer pending at most, but a load starts whether or not one is in
       flight (the model the fast-where-it-matters measurement used).
listen: the live feed only, no load (what the viewers cost the service, and this harness, by themselves).
A load is GET api/alerts?limit=8 and api/clients?limit=100&offset=0&sort=client&history=1. Prints the loads made
and their median and worst time. Standard library only.
"""
import http.client
import signal
import statistics
import sys
import threading
import time
import urllib.parse

url, viewers, seconds, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
parts = urllib.parse.urlsplit(url)
base = parts.path if parts.path.endswith("/") else parts.path + "/"
deadline = time.monotonic() + seconds
times, refused, lock = [], [], threading.Lock()
DELAYS = {"changes": 0.4, "reset": 0.05, "scanner": 0.2}


def get(path):
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("GET", base + path)
        conn.getresponse().read()
    finally:
        conn.close()


def one_load():
    start = time.monotonic()
    try:
        get("api/alerts?limit=8")
        get("api/clients?limit=100&offset=0&sort=client&history=1")
    except OSError:
        return
    with lock:
        times.append(time.monotonic() - start)


class viewer:
    def __init__(self):
        self.timer = None
        self.loading = False
        self.again = False
        self.last = 0.0
        self.m = threading.Lock()

    def refresh_soon(self, delay):
        with self.m:
            if self.timer is not None:
                return
            if mode == "page":
                delay = max(delay, self.last + 1.0 - time.monotonic())
            self.timer = threading.Timer(max(0.0, delay), self.fire)
            self.timer.daemon = True
            self.timer.start()

    def fire(self):
        with self.m:
            self.timer = None
            if mode == "page":
                if self.loading:
                    self.again = True
                    return
                self.loading = True
                self.last = time.monotonic()
        if mode == "eager":
            threading.Thread(target=one_load, daemon=True).start()
            return
        one_load()
        with self.m:
            self.loading = False
            again, self.again = self.again, False
        if again:
            self.refresh_soon(0)

    def run(self):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=seconds + 30)
        conn.request("GET", base + "api/events")
        res = conn.getresponse()
        if res.status != 200:  # the service's cap on live viewers (64)
            with lock:
                refused.append(res.status)
            return
        event = ""
        while time.monotonic() < deadline:
            line = res.fp.readline()
            if not line:
                return
            line = line.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line == "" and event:
                if mode != "listen":
                    self.refresh_soon(DELAYS.get(event, 0.4))
                event = ""


threads = [threading.Thread(target=viewer().run, daemon=True) for _ in range(viewers)]
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
began = time.monotonic()
for t in threads:
    t.start()
stop.wait(seconds)
seconds = time.monotonic() - began
with lock:
    done = sorted(times)
if refused:
    print(f"{len(refused)} of {viewers} viewers refused (HTTP {refused[0]}): the service serves 64 live viewers")
if done:
    print(f"{viewers} {mode} viewers: {len(done)} loads in {seconds:.0f} s, median {statistics.median(done)*1000:.0f} ms,"
          f" worst {done[-1]*1000:.0f} ms")
else:
    print(f"{viewers} {mode} viewers: no load finished in {seconds:.0f} s")
