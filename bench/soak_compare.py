"""bench/soak's verdict: the history (a serve SQLite file) against a recorder's "topic payload" lines.

Every (client, epoch) the recorder saw, born or dead, must be an event of the history with that epoch, and every
client's last state in the history must be the recorder's last payload for it. Exit 1 on a difference."""
import json
import sqlite3
import sys

recorded, db = sys.argv[1], sys.argv[2]
seen = set()
last = {}
for line in open(recorded, encoding="utf-8", errors="replace"):
    topic, _, payload = line.rstrip("\n").partition(" ")
    client = topic.split("/", 1)[1]
    try:
        p = json.loads(payload)
    except ValueError:
        continue
    seen.add((client, p.get("epoch")))
    last[client] = "connected" if p.get("status") == 1 else "disconnected"

con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
in_history = set(con.execute("SELECT client, epoch FROM events"))
final = dict(con.execute("SELECT client, state FROM clients"))
missing = sorted(seen - in_history)
wrong = sorted(c for c in last if final.get(c) != last[c])
events = con.execute("SELECT count(*) FROM events").fetchone()[0]
disconnects = con.execute("SELECT count(*) FROM events WHERE state = 'disconnected'").fetchone()[0]
print(f"recorder: {len(seen)} connections of {len(last)} clients; history: {events} events, {disconnects} disconnects")
print(f"connections the recorder saw and the history lacks: {len(missing)} {missing[:5]}")
print(f"clients whose last state differs: {len(wrong)} {[(c, last[c], final.get(c)) for c in wrong[:5]]}")
sys.exit(1 if missing or wrong else 0)
