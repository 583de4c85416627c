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
# A connection that began and ended while the service reconnected (the recorder's persistent session kept its will,
# the broker's retained store had moved on, or lost it in a restart) cannot be in the history; the history then says
# so around it: the next event has cause 'unseen' (something happened while nobody watched), or the one before is
# 'removed' (the broker no longer held a status). Such gaps are covered.
chains = {}
for client, epoch, cause in con.execute("SELECT client, epoch, cause FROM events WHERE epoch IS NOT NULL ORDER BY id"):
    chains.setdefault(client, []).append((epoch, cause))
def covered(client, epoch):
    chain = chains.get(client, [])
    for (before, before_cause), (after, after_cause) in zip(chain, chain[1:]):
        if before < epoch < after and (after_cause == "unseen" or before_cause == "removed"):
            return True
    return False
not_in_history = sorted(seen - in_history)
gaps = [m for m in not_in_history if covered(*m)]
missing = [m for m in not_in_history if not covered(*m)]
wrong = sorted(c for c in last if final.get(c) != last[c])
events = con.execute("SELECT count(*) FROM events").fetchone()[0]
disconnects = con.execute("SELECT count(*) FROM events WHERE state = 'disconnected'").fetchone()[0]
print(f"recorder: {len(seen)} connections of {len(last)} clients; history: {events} events, {disconnects} disconnects")
print(f"connections the recorder saw that began and ended while the service reconnected (a gap the history marks "
      f"'unseen' or 'removed'): {len(gaps)}")
print(f"connections the recorder saw and the history lacks: {len(missing)} {missing[:5]}")
print(f"clients whose last state differs: {len(wrong)} {[(c, last[c], final.get(c)) for c in wrong[:5]]}")
sys.exit(1 if missing or wrong else 0)
