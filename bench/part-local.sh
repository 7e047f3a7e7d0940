#!/bin/sh
# bench/part-local.sh BUILD WORKDIR - end-to-end local delivery: 5 KB
# messages through smtpd, qmgr and local-deliver into the Maildirs of a few
# users, every step synced to disk; messages per second from the first SMTP
# connection until the last message is in new/. Writes WORKDIR/local.json.
set -eu
POCHTA_BENCH_LIB=1 . "$(dirname "$0")/run.sh"
bench_part "$@"

# Sessions:messages per run.
runs=${POCHTA_BENCH_LOCAL_RUNS:-"10:3000 50:6000"}
users=${POCHTA_BENCH_LOCAL_USERS:-4}
d=$work/local

bench_instance "$d"
"$bench_pochta" -c "$bench_conf" conf -e smtpd_client_connection_limit=1000
i=1
while [ "$i" -le "$users" ]; do
	bench_user "$bench_conf" "user$i@example.test" \
	    "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
	i=$((i + 1))
done
"$bench_pochta" -c "$bench_conf" start >/dev/null
bench_worker "$bench_conf" smtp smtpd >/dev/null
bench_worker "$bench_conf" qmgr qmgr >/dev/null

SOURCE=$bench_build/bench/smtp-source PORT=$((bench_base + 25)) \
MAIL=$d/mail/example.test USERS=$users RUNS=$runs OUT=$work/local.json \
python3 - <<'EOF'
import json, os, subprocess, sys, time

e = os.environ
users = int(e["USERS"])
news = [os.path.join(e["MAIL"], f"user{i}", "new")
        for i in range(1, users + 1)]


def delivered():
    n = 0
    for d in news:
        try:
            n += len(os.listdir(d))
        except FileNotFoundError:
            pass
    return n


out = []
print("local delivery, 5 KB messages, smtpd -> qmgr -> local-deliver, "
      "all fsynced:")
for run in e["RUNS"].split():
    sessions, messages = (int(x) for x in run.split(":"))
    # One smtp-source per user, the sessions and messages shared out, so
    # every mailbox gets its part at the same time.
    k = min(users, sessions, messages)
    before = delivered()
    t0 = time.monotonic()
    procs = []
    for i in range(k):
        c = sessions // k + (i < sessions % k)
        m = messages // k + (i < messages % k)
        procs.append(subprocess.Popen(
            [e["SOURCE"], "-q", "-j", "-c", str(c), "-m", str(m),
             "-s", "5120", "-r", "1", "-t", f"user{i + 1}@example.test",
             "127.0.0.1:" + e["PORT"]], stdout=subprocess.PIPE, text=True))
    accepted = 0
    accept_end = None
    last, last_change = before, time.monotonic()
    while True:
        now = delivered()
        if now != last:
            last, last_change = now, time.monotonic()
        if accept_end is None and all(p.poll() is not None for p in procs):
            accept_end = time.monotonic()
            for p in procs:
                res = json.loads(p.communicate()[0])
                if p.returncode != 0:
                    sys.exit(f"bench: smtp-source failed: {res}")
                accepted += res["accepted"]
            if accepted != messages:
                sys.exit(f"bench: {accepted} of {messages} accepted")
        if now - before >= messages and accept_end is not None:
            break
        if time.monotonic() - last_change > 60:
            sys.exit(f"bench: {now - before} of {messages} messages "
                     f"delivered, none for 60 s")
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    if now - before != messages:
        sys.exit(f"bench: {now - before} messages in the Maildirs, "
                 f"{messages} sent")
    r = {"sessions": sessions, "messages": messages, "users": k,
         "size": 5120, "fsync": True, "elapsed": round(elapsed, 3),
         "accept_elapsed": round(accept_end - t0, 3),
         "msgs_per_sec": round(messages / elapsed, 1)}
    out.append(r)
    print(f"  {sessions:>4} sessions  {messages:>6} messages  {k} users  "
          f"{elapsed:>7.2f} s  {r['msgs_per_sec']:>8.1f} msgs/s "
          f"(accepted in {r['accept_elapsed']:.2f} s)")
total = sum(r["messages"] for r in out)
with open(e["OUT"], "w") as f:
    json.dump({"local": {"runs": out, "total_messages": total}}, f,
              indent=2)
print(f"  {total} messages delivered in all")
EOF
