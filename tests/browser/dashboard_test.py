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
        out[cells[0].text] = cells[1].text
    return out


def main():
    db = os.path.join(OUT, PREFIX + ".db")
    serve = start([SCANNER, "serve", "--broker", BROKER, "--topic", TEMPLATE, "--db", db, "--listen", "127.0.0.1:0",
                   "--alert-after", "0s", "--alert-exec", "true"])
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
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,800"):
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

        # SIGKILL: the broker publishes the will; the row turns disconnected without a reload, within 2 s.
        driver.execute_script("window.__marker = 1")
        garage.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait("garage disconnected", lambda: rows(driver).get("garage") == "disconnected", timeout=2.0)
        print("will -> row disconnected: %.0f ms" % ((time.monotonic() - killed) * 1000))
        if driver.execute_script("return window.__marker") != 1:
            fail("the page reloaded to show the change")
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

        driver.find_element(By.CSS_SELECTOR, "th[data-sort=client]").click()
        wait("names sorted ascending again", lambda: list(rows(driver)) == sorted(rows(driver)))
        shot = os.path.join(OUT, "dashboard.png")
        driver.save_screenshot(shot)
        print("screenshot: " + shot)

        # A client's history, in the side panel.
        for tr in driver.find_elements(By.CSS_SELECTOR, "#clients tbody tr"):
            if tr.find_elements(By.TAG_NAME, "td")[0].text == "garage":
                tr.click()
                break
        wait("garage's history with its death", lambda: "lost" in driver.find_element(By.ID, "detail").text or
             "unknown" in driver.find_element(By.ID, "detail").text)

        shot = os.path.join(OUT, "dashboard-history.png")
        driver.save_screenshot(shot)
        print("screenshot: " + shot)

        # On a phone: the secondary columns fold away, the state stays in words.
        driver.set_window_size(390, 844)
        driver.find_element(By.ID, "detail-close").click()
        wait("the ip column hidden on a narrow screen",
             lambda: not driver.find_element(By.CSS_SELECTOR, "#clients thead th:nth-child(8)").is_displayed())
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
