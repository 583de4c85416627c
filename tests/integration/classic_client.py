#!/usr/bin/python3
# The classic pattern with Debian's python3-paho-mqtt (not our code): will "0" retained, "1" retained in
# on_connect, "0" before disconnect. Prints "up" once connected; a line on stdin (or EOF) stops it cleanly.
import sys
import paho.mqtt.client as mqtt

port, topic = int(sys.argv[1]), sys.argv[2]
client = mqtt.Client(client_id=topic.replace("/", "-"))
client.will_set(topic, "0", qos=1, retain=True)


def on_connect(c, userdata, flags, rc):
    c.publish(topic, "1", qos=1, retain=True)
    print("up", flush=True)


client.on_connect = on_connect
client.connect("127.0.0.1", port, keepalive=5)
client.loop_start()
sys.stdin.readline()
client.publish(topic, "0", qos=1, retain=True).wait_for_publish()
client.disconnect()
client.loop_stop()
