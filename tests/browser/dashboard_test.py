#!/usr/bin/python3
"""The dashboard in real headless Chromium against a real `serve`, real sensors and the CTest fixture's mosquitto.

Usage (CTest runs it): dashboard_test.py SCANNER_BIN SENSOR_BIN BROKER_PORT OUT_DIR
Every wait is bounded and says what it waited for; a screenshot is left in OUT_DIR for a human to look at.
"""
import os
import re
import signal
import subprocess
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

SCANNER, SENSOR, PORT, OUT = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
BROKER = "tcp://127.0.0.1:" + PORT
PREFIX = "browser-%d" % os.getpid()
TEMPLATE = PREFIX + "/{client}"
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">&amp;"
LONG = "L" * 60000 + "<script>document.title='pwned'"  # a 60 KiB name (one topic level: no /)
processes = []


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def wait(what, condition, timeout=10.0):
    """Polls `condition` (the page is another process: no event reaches us) until it is true; fails naming `what`."""
    until = time.monotonic() + timeout
    last = None
    while time.monotonic() < until:
        try:
            last = condition()
            if last:
                return last
        except StaleElementReferenceException:
            pass  # the row was redrawn between finding it and reading it
        time.sleep(0.05)
    fail("waited %.1f s for %s (last: %r)" % (timeout, what, last))


def start(argv):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    processes.append(p)
    return p


def sensor(name, *extra):
    return start([SENSOR, "--broker", BROKER, "--topic", TEMPLATE, "--name", name, *extra])


def rows(driver):
    """{client name: state text} of the rows on the page."""
    out = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "#clients tbody tr"):
        cells = tr.find_elements(By.TAG_NAME, "td")
        out[cells[0].text.split("\n")[0]] = cells[1].text  # the name's line: groups and silences follow
    return out


def click_row(driver, name):
    """Clicks a client's row in the page itself: a redraw between finding it and clicking it cannot stale it."""
    return driver.execute_script(
        "for (const tr of document.querySelectorAll('#clients tbody tr'))"
        "  if (tr.cells[0].firstChild.textContent === arguments[0]) { tr.click(); return true; }"
        "return false;", name)


def main():
    db = os.path.join(OUT, PREFIX + ".db")
    serve = start([SCANNER, "serve", "--broker", BROKER, "--topic", TEMPLATE, "--db", db, "--listen", "127.0.0.1:0",
                   "--alert-after", "0s", "--alert-exec", "true", "--group", "cellar=garage",
                   "--expect", "LLLL*=1s"])
    url = None
    until = time.monotonic() + 15
    while url is None and time.monotonic() < until:
        line = serve.stderr.readline()
        match = re.search(r"dashboard: (http://\S+)", line)
        if match:
            url = match.group(1)
    if not url:
        fail("serve never printed its dashboard URL")

    sensor("kitchen", "--format", "json", "--meta", '{"fw":"1.5","room":"kitchen"}')
    garage = sensor("garage")
    sensor(HOSTILE, "--format", "json")
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", PORT, "-r", "-q", "1", "-t", PREFIX + "/" + LONG,
                    "-m", "1"], check=True)

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        started = time.monotonic()
        driver.get(url)
        wait("the three sensors and the long name listed",
             lambda: {"kitchen", "garage", HOSTILE} <= set(rows(driver)) and len(rows(driver)) == 4)
        print("first paint with rows: %.2f s" % (time.monotonic() - started))
        wait("all three connected", lambda: all(rows(driver)[n] == "connected" for n in ("kitchen", "garage", HOSTILE)))

        # A hostile name is text: no element of it, no script ran.
        if driver.find_elements(By.CSS_SELECTOR, "#clients img, #clients script"):
            fail("a client's name became an element")
        long_cell = [n for n in rows(driver) if n.startswith("LLLL")]
        if not long_cell:
            fail("the 60 KiB name is not listed as text")
        if driver.title == "pwned":
            fail("a client's name ran a script")
        # The long name is expected every second (--expect) and never heard again: overdue, counted as down.
        wait("the long name overdue", lambda: rows(driver).get(long_cell[0]) == "overdue", timeout=5.0)
        wait("the overdue chip counts it", lambda: driver.find_element(By.ID, "n-overdue").text == "1")
        # The connected chip filters the healthy ones, so it counts them: the three sensors, not the overdue name.
        wait("the connected chip counts the three healthy ones",
             lambda: driver.find_element(By.ID, "n-connected").text == "3")

        # Notifications, opted into: the browser grants them, the button says so.
        driver.execute_cdp_cmd("Browser.grantPermissions", {"origin": url.rstrip("/"), "permissions": ["notifications"]})
        driver.find_element(By.ID, "notify").click()
        wait("the notify button on", lambda: driver.find_element(By.ID, "notify").text == "Notifying")

        # SIGKILL: the broker publishes the will; the row turns disconnected without a reload, within 2 s.
        driver.execute_script("window.__marker = 1")
        garage.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait("garage disconnected", lambda: rows(driver).get("garage") == "disconnected", timeout=2.0)
        print("will -> row disconnected: %.0f ms" % ((time.monotonic() - killed) * 1000))
        wait("a notification for garage's death", lambda: int(driver.execute_script(
            "return document.body.dataset.notified || '0'")) >= 1, timeout=5.0)
        if driver.execute_script("return window.__marker") != 1:
            fail("the page reloaded to show the change")
        # The time of the death in the row, the tab's title and icon say what is down.
        garage_since = ("for (const tr of document.querySelectorAll('#clients tbody tr'))"
                        "  if (tr.cells[0].firstChild.textContent === 'garage') return tr.cells[2].textContent;"
                        "return null;")
        since = wait("garage's row says when it went down", lambda: (lambda t: t if t and re.match(
            r"(lost|down) \d{1,2}:\d\d( [AP]M)?, \d+s ago", t) else None)(driver.execute_script(garage_since)))
        print("garage row: " + since)
        wait("the tab's title counts two down (garage, and the overdue one)",
             lambda: driver.title.startswith("(2 down) mqtt-presence"))
        if "c62828" not in driver.execute_script("return document.querySelector('link[rel=icon]').href"):
            fail("the tab's icon is not red while a client is down")
        # The strip spans the time the service watched, with garage's outage visible, and says how much of a day.
        strip = wait("garage's strip with its outage", lambda: driver.execute_script("""
            for (const tr of document.querySelectorAll('#clients tbody tr')) {
              if (tr.cells[0].firstChild.textContent !== 'garage') continue;
              const down = tr.querySelector('.strip span.down'), up = tr.querySelector('.strip span.up');
              const note = tr.querySelector('.watched');
              if (down && up && down.offsetWidth >= 2 && up.offsetWidth >= 2 && note)
                return [up.offsetWidth, down.offsetWidth, note.textContent];
            }
            return null;"""), timeout=5.0)
        print("garage's strip: up %d px, down %d px, %s" % tuple(strip))
        if not strip[2].endswith("of 24 h"):
            fail("the strip does not say how much of the day was watched: " + strip[2])
        wait("garage's down alert listed on the page",
             lambda: "garage" in driver.find_element(By.ID, "alerts").text and
             "down" in driver.find_element(By.ID, "alerts").text, timeout=5.0)

        # A new sensor appears by itself.
        sensor("attic")
        wait("attic listed", lambda: rows(driver).get("attic") == "connected", timeout=3.0)

        # The filter box and the sort.
        box = driver.find_element(By.ID, "q")
        box.send_keys("kit")
        wait("only kitchen after filtering", lambda: list(rows(driver)) == ["kitchen"])
        if "q=kit" not in driver.current_url:
            fail("the URL does not keep the filter: " + driver.current_url)
        box.clear()
        box.send_keys(" ")
        box.clear()
        driver.execute_script("document.getElementById('q').dispatchEvent(new Event('input'))")
        wait("all five back", lambda: len(rows(driver)) == 5)
        driver.find_element(By.CSS_SELECTOR, "th[data-sort=client]").click()
        wait("names sorted descending", lambda: list(rows(driver)) == sorted(rows(driver), reverse=True))
        driver.find_element(By.CSS_SELECTOR, ".chip[data-state=disconnected]").click()
        wait("the disconnected chip shows garage alone", lambda: list(rows(driver)) == ["garage"])
        driver.find_element(By.CSS_SELECTOR, ".chip[data-state=disconnected]").click()
        wait("all five back after the chip", lambda: len(rows(driver)) == 5)
        # A group's chip shows its clients.
        driver.find_element(By.CSS_SELECTOR, ".chip[data-group=cellar]").click()
        wait("the cellar chip shows garage alone", lambda: list(rows(driver)) == ["garage"])
        driver.find_element(By.CSS_SELECTOR, ".chip[data-group=cellar]").click()
        wait("all five back after the group chip", lambda: len(rows(driver)) == 5)

        driver.find_element(By.CSS_SELECTOR, "th[data-sort=client]").click()
        wait("names sorted ascending again", lambda: list(rows(driver)) == sorted(rows(driver)))
        shot = os.path.join(OUT, "dashboard.png")
        driver.save_screenshot(shot)
        print("screenshot: " + shot)

        # A client's history, in the side panel.
        wait("garage's row clicked", lambda: click_row(driver, "garage"))
        wait("garage's history with its death", lambda: "lost" in driver.find_element(By.ID, "detail").text or
             "unknown" in driver.find_element(By.ID, "detail").text)

        panel = driver.execute_script("const d = document.getElementById('detail'); return [d.scrollWidth, d.clientWidth]")
        if panel[0] > panel[1] + 1:
            fail("the history panel overflows sideways: %d px in %d" % tuple(panel))
        # The panel's timeline: garage's connection and its death, coloured; the window's figures beside it.
        wait("garage's timeline with its death", lambda: driver.execute_script(
            "return !!document.querySelector('#detail-timeline .seg.connected') && "
            "!!document.querySelector('#detail-timeline .seg.disconnected')"), timeout=5.0)
        if "Uptime 24h" not in driver.find_element(By.ID, "detail-facts").text:
            fail("the panel does not give the window's uptime: " + driver.find_element(By.ID, "detail-facts").text)
        driver.find_element(By.CSS_SELECTOR, "#detail-windows .chip[data-window='7d']").click()
        wait("the 7-day window in the URL", lambda: "window=7d" in driver.current_url)
        wait("the 7-day figures", lambda: "Uptime 7d" in driver.find_element(By.ID, "detail-facts").text)
        # A deep link keeps the view: a reload opens the same client and window; /clients/NAME opens its panel.
        driver.refresh()
        wait("the panel again after a reload", lambda: driver.find_element(By.ID, "detail-name").text == "garage" and
             "Uptime 7d" in driver.find_element(By.ID, "detail-facts").text, timeout=5.0)
        driver.get(url + "clients/kitchen")
        wait("/clients/kitchen opens kitchen's panel", lambda: driver.find_element(By.ID, "detail-name").text ==
             "kitchen" and driver.find_element(By.ID, "detail").is_displayed(), timeout=5.0)
        wait("kitchen's metadata in its panel", lambda: "room" in driver.find_element(By.ID, "detail-facts").text)
        wait("garage's row clicked", lambda: click_row(driver, "garage"))
        wait("garage's panel again", lambda: driver.find_element(By.ID, "detail-name").text == "garage")

        # Silence garage from its panel: the row says so, the panel lists it with an End button that ends it.
        driver.find_element(By.ID, "silence-reason").send_keys("new door")
        driver.find_element(By.ID, "silence-button").click()
        wait("garage's row says it is silenced", lambda: driver.execute_script("""
            for (const tr of document.querySelectorAll('#clients tbody tr'))
              if (tr.cells[0].firstChild.textContent === 'garage') return !!tr.querySelector('.silenced');
            return false;"""), timeout=5.0)
        wait("the panel lists the silence", lambda: "new door" in driver.find_element(By.ID, "detail-silences").text)
        shot = os.path.join(OUT, "dashboard-silence.png")
        driver.save_screenshot(shot)
        print("screenshot: " + shot)
        driver.find_element(By.CSS_SELECTOR, "#detail-silences button.end").click()
        wait("the silence ended", lambda: driver.find_element(By.ID, "detail-silences").text == "")

        shot = os.path.join(OUT, "dashboard-history.png")
        driver.save_screenshot(shot)
        print("screenshot: " + shot)

        # On a phone: the secondary columns fold away, the state stays in words.
        driver.set_window_size(390, 844)
        driver.find_element(By.ID, "detail-close").click()
        wait("the ip column hidden on a narrow screen",
             lambda: not driver.find_element(By.CSS_SELECTOR, "#clients thead th:nth-child(8)").is_displayed())
        cut = driver.execute_script(
            "return [...document.querySelectorAll('#clients tbody td:nth-child(2)')]"
            ".filter(td => td.scrollWidth > td.clientWidth + 1).map(td => td.textContent)")
        if cut:
            fail("states cut off on a phone: %r" % cut)
        wide = driver.execute_script("return document.documentElement.scrollWidth")
        table = driver.execute_script("const w = document.querySelector('.tablewrap'); return [w.scrollWidth, w.clientWidth]")
        if wide > 390 + 1 or table[0] > table[1] + 1:
            columns = driver.execute_script(
                "return [...document.querySelectorAll('#clients thead th')].filter(th => th.offsetWidth > 0)"
                ".map(th => th.textContent + ' ' + th.offsetWidth)") + driver.execute_script(
                "return [...document.querySelectorAll('#clients tbody td:nth-child(2) .state')]"
                ".map(b => b.textContent + ' ' + b.offsetWidth)")
            fail("the page or its table scrolls sideways on a phone: page %d px, table %d px in %d; columns %r" %
                 (wide, table[0], table[1], columns))
        shot = os.path.join(OUT, "dashboard-phone.png")
        driver.save_screenshot(shot)
        print("screenshot: " + shot)

        # A system in dark mode gets the dark theme.
        light = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        dark = wait("the dark theme", lambda: (lambda c: c if c != light else None)(
            driver.execute_script("return getComputedStyle(document.body).backgroundColor")))
        channels = [int(x) for x in re.findall(r"\d+", dark)[:3]]
        if max(channels) > 60:
            fail("the dark theme's background is not dark: " + dark)
        shot = os.path.join(OUT, "dashboard-dark.png")
        driver.save_screenshot(shot)
        print("screenshot: " + shot)

        # A storm of changes: the page loads at most about once a second, never two loads at once, and ends on the
        # storm's last word.
        driver.execute_script("performance.setResourceTimingBufferSize(100000); performance.clearResourceTimings()")
        storm = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", PORT, "-q", "0", "-l", "-t",
                                  PREFIX + "/storm"], stdin=subprocess.PIPE, text=True)
        began = time.monotonic()
        sent = 0
        while time.monotonic() - began < 5.0:
            storm.stdin.write("%d\n" % (sent % 2))
            sent += 1
            if sent % 20 == 0:
                storm.stdin.flush()
                time.sleep(0.01)
        storm.stdin.write("1\n")
        storm.stdin.close()
        storm.wait(10)
        seconds = time.monotonic() - began
        ended = time.monotonic()
        # A bound, not a speed: the service takes the storm's backlog first on a machine with two cores.
        wait("the storm's client listed connected", lambda: rows(driver).get("storm") == "connected", timeout=20.0)
        print("the storm's last word on the page %.1f s after it was sent" % (time.monotonic() - ended))
        notes = int(driver.execute_script("return document.body.dataset.notified || '0'"))
        if notes > 4:
            fail("a storm of changes became %d notifications (a client at most once a minute)" % notes)
        loads = driver.execute_script(
            "return performance.getEntriesByType('resource').filter(e => e.name.includes('api/clients?'))"
            ".map(e => [e.startTime, e.responseEnd])")
        print("a storm of %d changes in %.1f s: the page loaded %d times" % (sent + 1, seconds, len(loads)))
        if len(loads) > seconds + 3:
            fail("the page loaded %d times during a %.1f s storm (at most one a second)" % (len(loads), seconds))
        loads.sort()
        for (a_start, a_end), (b_start, _) in zip(loads, loads[1:]):
            if b_start < a_end:
                fail("two loads of the page overlapped: %r" % loads)
    finally:
        driver.quit()
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    print("PASS")


if __name__ == "__main__":
    main()
