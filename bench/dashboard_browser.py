#!/usr/bin/python3
"""The dashboard in headless Chromium (prints numbers; not a test).

Usage: dashboard_browser.py URL SENSOR_BIN BROKER_URI TEMPLATE ROUNDS
  first paint: from navigation to the first page of rows on screen (with whatever fleet the service holds);
  will -> red: a sensor killed with SIGKILL, from mosquitto_sub's receipt of the will (%U) to the row showing
  "disconnected", ROUNDS times; prints p50 and max.
"""
import signal
import statistics
import subprocess
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

URL, SENSOR, BROKER, TEMPLATE, ROUNDS = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
host, port = BROKER.rsplit("/", 1)[1].split(":")

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def state_of(name):
    try:
        for tr in driver.find_elements(By.CSS_SELECTOR, "#clients tbody tr"):
            cells = tr.find_elements(By.TAG_NAME, "td")
            if cells and cells[0].text == name:
                return cells[1].text
    except StaleElementReferenceException:
        pass  # the row was redrawn while being read: ask again
    return None


try:
    t = time.monotonic()
    driver.get(URL)
    while not driver.find_elements(By.CSS_SELECTOR, "#clients tbody tr"):
        time.sleep(0.005)
    print("first paint (rows on screen): %.0f ms; %s" % ((time.monotonic() - t) * 1000,
                                                         driver.find_element(By.ID, "range").text))
    name = "aaa-bench-sensor"  # sorts first: on the first page
    topic = TEMPLATE.replace("{client}", name)
    lags = []
    for r in range(ROUNDS):
        sensor = subprocess.Popen([SENSOR, "--broker", BROKER, "--topic", TEMPLATE, "--name", name],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until = time.monotonic() + 10
        while state_of(name) != "connected" and time.monotonic() < until:
            time.sleep(0.01)
        sub = subprocess.Popen(["mosquitto_sub", "-h", host, "-p", port, "-t", topic, "-F", "%U %p", "-q", "1"],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)  # mosquitto_sub subscribed (its retained "1" line arrives first)
        sensor.send_signal(signal.SIGKILL)
        sensor.wait()
        while True:
            line = sub.stdout.readline()
            if line.split(" ", 1)[1].strip() == "0":
                will_at = float(line.split(" ", 1)[0])
                break
        while state_of(name) != "disconnected":
            time.sleep(0.002)
        lags.append((time.time() - will_at) * 1000)
        sub.kill()
    print("will -> row disconnected in the browser: p50 %.0f ms, max %.0f ms (%d rounds)" %
          (statistics.median(lags), max(lags), len(lags)))
finally:
    driver.quit()
