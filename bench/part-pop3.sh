#!/bin/sh
# bench/part-pop3.sh BUILD WORKDIR - pop3d on a large mailbox: the time of
# the first login (indexing a Maildir written directly, as after a
# migration), of LIST, UIDL, RETR of every message and QUIT over one
# session, and pop3d's memory per idle session. Writes WORKDIR/pop3.json.
set -eu
POCHTA_BENCH_LIB=1 . "$(dirname "$0")/run.sh"
bench_part "$@"

messages=${POCHTA_BENCH_POP3_MESSAGES:-10000}
idle=${POCHTA_BENCH_POP3_IDLE:-1000}
client=$bench_build/bench/pop3-source
d=$work/pop3
password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

if [ ! -x "$client" ]; then
	echo "bench: $client is missing; run make first" >&2
	exit 1
fi
bench_instance "$d"
"$bench_pochta" -c "$bench_conf" conf -e \
    pop3d_connection_limit=$((idle + 100))
bench_user "$bench_conf" pop@example.test "$password"

# The mailbox is written as Maildir files straight into cur/, the way
# another Maildir program would leave them (pochta-mailstore(5)): 5 KB
# messages named with S= and W=, no index yet. Delivering 10,000 messages
# through SMTP would take longer than everything measured here.
MAILBOX=$d/mail/example.test/pop N=$messages python3 - <<'EOF'
import os, socket, time
mailbox, n = os.environ["MAILBOX"], int(os.environ["N"])
st = os.stat(os.path.dirname(os.path.dirname(mailbox)))
for sub in ("", "cur", "new", "tmp"):
    os.makedirs(os.path.join(mailbox, sub), mode=0o700, exist_ok=True)
    os.chown(os.path.join(mailbox, sub), st.st_uid, st.st_gid)
host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
now = int(time.time()) - n
line = ("x" * 75) + "\n"
for i in range(1, n + 1):
    head = (f"Date: Thu, 26 Nov 2026 10:00:00 +0000\n"
            f"From: <sender@example.test>\nTo: <pop@example.test>\n"
            f"Subject: message {i}\n"
            f"Message-ID: <{i}.bench@example.test>\n\n")
    body = line * ((5120 - len(head)) // len(line))
    data = (head + body).encode()
    lines = data.count(b"\n")
    name = (f"{now + i}.M{i % 1000000}P{os.getpid()}Q{i}.{host},"
            f"S={len(data)},W={len(data) + lines}:2,")
    path = os.path.join(mailbox, "cur", name)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, st.st_uid, st.st_gid)
EOF

"$bench_pochta" -c "$bench_conf" start >/dev/null
worker=$(bench_worker "$bench_conf" pop3 pop3d)
port=$((bench_base + 110))

# Memory first, on a fresh worker. The sessions are not authenticated: a
# maildrop is locked by one session at a time (RFC 1939 8).
bench_idle_rss "$worker" "$idle" "$d/idle.out" \
    "$client" -i -c "$idle" "127.0.0.1:$port"

# The first login indexes the mailbox; timed on its own.
PORT=$port PASSWORD=$password python3 - >"$d/sync.out" <<'EOF'
import os, poplib, time
t0 = time.monotonic()
p = poplib.POP3("127.0.0.1", int(os.environ["PORT"]), timeout=600)
p.user("pop@example.test")
p.pass_(os.environ["PASSWORD"])
elapsed = time.monotonic() - t0
p.quit()
print(f"{elapsed:.6f}")
EOF

"$client" -j -a "pop@example.test:$password" -w 600 "127.0.0.1:$port" \
    >"$d/c.json"

# The same session from Python's poplib, to show how much of the time a
# client in an interpreted language would add.
PORT=$port PASSWORD=$password python3 - >"$d/py.json" <<'EOF'
import json, os, poplib, time
p = poplib.POP3("127.0.0.1", int(os.environ["PORT"]), timeout=600)
p.user("pop@example.test")
p.pass_(os.environ["PASSWORD"])
n = p.stat()[0]
out = {"messages": n}
t0 = time.monotonic()
p.list()
out["list"] = time.monotonic() - t0
t0 = time.monotonic()
p.uidl()
out["uidl"] = time.monotonic() - t0
t0 = time.monotonic()
for i in range(1, n + 1):
    p.retr(i)
out["retr"] = time.monotonic() - t0
p.quit()
print(json.dumps(out))
EOF

SYNC=$(cat "$d/sync.out") C=$d/c.json PY=$d/py.json N=$messages \
RSS_BASE=$bench_rss_base RSS_IDLE=$bench_rss_idle GREETED=$bench_greeted \
OUT=$work/pop3.json python3 - <<'EOF'
import json, os, sys
e = os.environ
c = json.load(open(e["C"]))
py = json.load(open(e["PY"]))
n = int(e["N"])
if c["messages"] != n or py["messages"] != n:
    sys.exit(f"bench: the mailbox holds {c['messages']} messages, not {n}")
base, idle, greeted = (int(e[k]) for k in ("RSS_BASE", "RSS_IDLE",
                                            "GREETED"))
out = {
    "messages": n,
    "octets": c["octets"],
    "first_login": round(float(e["SYNC"]), 6),
    "list": round(c["list"], 6),
    "uidl": round(c["uidl"], 6),
    "retr": round(c["retr"], 6),
    "retr_msgs_per_sec": c["retr_msgs_per_sec"],
    "quit": round(c["quit"], 6),
    "python_client": {k: round(py[k], 6) for k in ("list", "uidl", "retr")},
    "rss_baseline_bytes": base * 1024,
    "idle_sessions": greeted,
    "rss_with_idle_bytes": idle * 1024,
    "rss_per_idle_session_bytes":
        round((idle - base) * 1024 / greeted) if greeted else None,
}
with open(e["OUT"], "w") as f:
    json.dump({"pop3": out}, f, indent=2)
print(f"pop3d, {n} messages of 5 KB ({c['octets']} octets), one session:")
print(f"  first login (indexing)  {out['first_login']:>8.3f} s")
print(f"  LIST                    {out['list']:>8.4f} s   "
      f"(Python poplib {py['list']:.4f} s)")
print(f"  UIDL                    {out['uidl']:>8.4f} s   "
      f"(Python poplib {py['uidl']:.4f} s)")
print(f"  RETR of every message   {out['retr']:>8.3f} s   "
      f"(Python poplib {py['retr']:.3f} s), "
      f"{c['retr_msgs_per_sec']:.0f} msgs/s")
print(f"  QUIT (marking Seen)     {out['quit']:>8.3f} s")
print(f"pop3d worker: {base} KB idle, {idle} KB with {greeted} idle "
      f"sessions, {out['rss_per_idle_session_bytes']} bytes per session")
EOF
