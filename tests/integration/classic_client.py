#!/usr/bin/python3
# The classic pattern with Debian's python3-paho-mqtt (not our code): will "0" retained, "1" retained in
# on_connect, "0" before disconnect. Prints "up" once "1" is acknowledged; SIGTERM or SIGINT stops it cleanly.
import signal
import sys
import threading

import paho.mqtt.client as mqtt

port, topic = int(sys.argv[1]), sys.argv[2]
stop_signals = {signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # before loop_start: its thread inherits the mask

client = mqtt.Client(client_id=topic.replace("/", "-"))
client.will_set(topic, "0", qos=1, retain=True)


def on_connect(c, userdata, flags, rc):
    info = c.publish(topic, "1", qos=1, retain=True)
    threading.Thread(target=lambda: (info.wait_for_publish(), print("up", flush=True))).start()


client.on_connect = on_connect
client.connect("127.0.0.1", port, keepalive=5)
client.loop_start()
signal.sigwait(stop_signals)
client.publish(topic, "0", qos=1, retain=True).wait_for_publish()
client.disconnect()
client.loop_stop()
