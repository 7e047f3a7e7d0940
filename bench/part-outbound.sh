#!/bin/sh
# bench/part-outbound.sh BUILD WORKDIR - outbound relay: 5 KB messages
# queued on one instance, then relayed by qmgr and smtp-out to a second
# instance that only accepts (its smtpd fsyncs each message before 250);
# messages per second from the queue run's start until the sink holds them
# all, at 10 and 50 concurrent connections. Writes WORKDIR/outbound.json.
set -eu
POCHTA_BENCH_LIB=1 . "$(dirname "$0")/run.sh"
bench_paths "$1"
work=$2
bench_trap

# Connections:messages per run.
runs=${POCHTA_BENCH_OUTBOUND_RUNS:-"10:1000 50:2000"}
sink=$work/outbound-sink
relay=$work/outbound-relay

# The sink: smtpd alone, mail for sink.test stays in its incoming/.
bench_instance "$sink"
sink_conf=$bench_conf
sink_port=$((bench_base + 25))
bench_disable "$sink_conf" qmgr local smtp-out
"$bench_pochta" -c "$sink_conf" conf -e mydomain=sink.test \
    smtpd_client_connection_limit=1000 smtpd_connection_limit=5000
bench_user "$sink_conf" bench@sink.test \
    "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
"$bench_pochta" -c "$sink_conf" start >/dev/null
bench_worker "$sink_conf" smtp smtpd >/dev/null

# The relay: queues first (qmgr off), then delivers everything through
# the sink as its relayhost (no DNS in the figure).
bench_instance "$relay"
relay_conf=$bench_conf
relay_port=$((bench_base + 25))
bench_disable "$relay_conf" qmgr local
"$bench_pochta" -c "$relay_conf" conf -e \
    "relayhost=[127.0.0.1]:$sink_port" smtp_process_limit=100 \
    smtpd_client_connection_limit=1000
"$bench_pochta" -c "$relay_conf" start >/dev/null
bench_worker "$relay_conf" smtp smtpd >/dev/null

SOURCE=$bench_build/bench/smtp-source POCHTA=$bench_pochta \
RELAY=$relay RELAY_PORT=$relay_port SINK=$sink RUNS=$runs \
OUT=$work/outbound.json python3 - <<'PY'
import json, os, re, subprocess, sys, time

e = os.environ
pochta, relay = e["POCHTA"], e["RELAY"]
conf = os.path.join(relay, "conf")


def files(base, q):
    try:
        return len(os.listdir(os.path.join(base, "spool", q)))
    except FileNotFoundError:
        return 0


def queued(base):
    return sum(files(base, q) for q in ("incoming", "active", "deferred"))


def qmgr(on):
    path = os.path.join(conf, "master.conf")
    text = open(path).read()
    if on:
        text = re.sub(r"^#(qmgr\s)", r"\1", text, flags=re.M)
    else:
        text = re.sub(r"^(qmgr\s)", r"#\1", text, flags=re.M)
    open(path, "w").write(text)
    subprocess.run([pochta, "-c", conf, "reload"], check=True,
                   stdout=subprocess.DEVNULL)


def log_count(pattern):
    try:
        text = open(os.path.join(relay, "log", "pochta.log"),
                    errors="replace").read()
    except FileNotFoundError:
        return 0
    return len(re.findall(pattern, text))


out = []
print("outbound relay, 5 KB messages, queue -> qmgr -> smtp-out -> "
      "SMTP sink, all fsynced:")
for run in e["RUNS"].split():
    conns, messages = (int(x) for x in run.split(":"))
    subprocess.run([pochta, "-c", conf, "conf", "-e",
                    f"smtp_destination_concurrency_limit={conns}"],
                   check=True, stdout=subprocess.DEVNULL)
    before = files(e["SINK"], "incoming")
    src = subprocess.run(
        [e["SOURCE"], "-q", "-j", "-c", str(min(conns, 20)), "-m",
         str(messages), "-s", "5120", "-r", "1", "-t", "bench@sink.test",
         "127.0.0.1:" + e["RELAY_PORT"]], capture_output=True, text=True)
    res = json.loads(src.stdout or "{}")
    if src.returncode != 0 or res.get("accepted") != messages:
        sys.exit(f"bench: queueing failed: {src.stdout}{src.stderr}")
    opened0 = log_count(r"connected to ")
    reused0 = log_count(r"reusing connection to ")
    t0 = time.monotonic()
    qmgr(True)
    last, last_change = -1, time.monotonic()
    while True:
        got = files(e["SINK"], "incoming") - before
        if got != last:
            last, last_change = got, time.monotonic()
        if got >= messages and queued(relay) == 0:
            break
        if time.monotonic() - last_change > 60:
            sys.exit(f"bench: {got} of {messages} relayed, none for 60 s")
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    qmgr(False)
    if got != messages:
        sys.exit(f"bench: {got} messages at the sink, {messages} queued")
    r = {"connections": conns, "messages": messages, "size": 5120,
         "fsync": True, "elapsed": round(elapsed, 3),
         "msgs_per_sec": round(messages / elapsed, 1),
         "smtp_connections_opened": log_count(r"connected to ") - opened0,
         "smtp_connections_reused": log_count(r"reusing connection to ")
         - reused0}
    out.append(r)
    print(f"  {conns:>4} connections  {messages:>6} messages  "
          f"{elapsed:>7.2f} s  {r['msgs_per_sec']:>8.1f} msgs/s "
          f"({r['smtp_connections_opened']} connections opened, "
          f"{r['smtp_connections_reused']} reuses)")
with open(e["OUT"], "w") as f:
    json.dump({"outbound": {"runs": out}}, f, indent=2)
PY
