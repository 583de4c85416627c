#!/usr/bin/python3
# A minimal Python scanner (Debian's python3-paho-mqtt): subscribe, decode "1"/"0"/JSON, keep a dict, exit after N.
# Usage: py_scanner.py PORT FILTER N QOS
import json
import sys

import paho.mqtt.client as mqtt

port, flt, n, qos = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
table = {}


def on_connect(c, userdata, flags, rc):
    c.subscribe(flt, qos)


def on_message(c, userdata, msg):
    p = msg.payload
    if p[:1] == b"{":
        try:
            p = str(json.loads(p).get("status"))
        except ValueError:
            p = "?"
    else:
        p = p.decode(errors="replace")
    table[msg.topic.rsplit("/", 1)[-1]] = p
    if len(table) >= n:
        c.disconnect()


client = mqtt.Client(client_id="mqtt-presence-py-scanner")
client.on_connect = on_connect
client.on_message = on_message
client.connect("127.0.0.1", port)
client.loop_forever()
