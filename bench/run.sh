#!/bin/sh
# bench/run.sh BUILD - `make bench`: a throwaway instance on 127.0.0.1 with
# free ports, its SMTP accept rate (5 KB messages, one recipient, every
# message synced to disk before the 250) at 1, 10 and 50 sessions, and the
# smtpd worker's resident memory idle and per idle connection. Figures go to
# bench/results/bench.json and the terminal. See pochta-bench(1).
set -eu

build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
case $build in
/*) ;;
*) build=$top/$build ;;
esac
pochta=$build/bin/pochta
source=$build/bench/smtp-source
results=$top/bench/results
# Sessions:messages per run; each run should take a few seconds.
runs=${POCHTA_BENCH_RUNS:-"1:2000 10:6000 50:10000"}
idle=${POCHTA_BENCH_IDLE:-1000}
size=5120

for p in "$pochta" "$build/bin/smtpd" "$source"; do
	if [ ! -x "$p" ]; then
		echo "bench: $p is missing; run make first" >&2
		exit 1
	fi
done

dir=$(mktemp -d "${POCHTA_BENCH_DIR:-${TMPDIR:-/tmp}}/pochta-bench.XXXXXX")
idle_pid=
conf=$dir/conf

# Whatever happens, stop what was started and remove the instance.
cleanup() {
	status=$?
	trap - EXIT INT TERM HUP
	if [ -n "$idle_pid" ]; then
		kill "$idle_pid" 2>/dev/null || true
		wait "$idle_pid" 2>/dev/null || true
	fi
	if [ -f "$dir/spool/pid/master.pid" ]; then
		master=$(cat "$dir/spool/pid/master.pid" 2>/dev/null || true)
		"$pochta" -c "$conf" stop >/dev/null 2>&1 || true
		if [ -n "$master" ] && kill -0 "$master" 2>/dev/null; then
			for p in $(ps -o pid= --ppid "$master" 2>/dev/null); do
				kill -9 "$p" 2>/dev/null || true
			done
			kill -9 "$master" 2>/dev/null || true
		fi
	fi
	rm -rf "$dir"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# A base N with N+25, N+587, N+465 and the other standard ports free.
base=$(python3 -c '
import random, socket
def free(p):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            return False
    return True
for _ in range(200):
    b = random.randrange(20000, 59000, 10)
    if all(free(b + p) for p in (25, 587, 465, 110, 995, 143, 993)):
        print(b)
        break
')
[ -n "$base" ] || { echo "bench: no free port base" >&2; exit 1; }
port=$((base + 25))

"$pochta" init "$dir" --port-base "$base" --domain example.test \
    --listen 127.0.0.1 --force >/dev/null
# Reverse DNS would measure the resolver; the idle test needs more
# sessions from one address than the default allows.
"$pochta" -c "$conf" conf -e smtpd_peername_lookup=no \
    smtpd_client_connection_limit=$((idle + 100)) \
    smtpd_connection_limit=$((idle + 1000))
od -An -N12 -tx1 /dev/urandom | tr -d ' \n' |
    "$pochta" -c "$conf" user add bench@example.test --password-stdin
"$pochta" -c "$conf" start >/dev/null

worker_pid() {
	"$pochta" -c "$conf" status --json 2>/dev/null | python3 -c '
import json, sys
for s in json.load(sys.stdin)["services"]:
    if s["name"] == "smtp" and s.get("state") == "running" and s["pids"]:
        print(s["pids"][0])
' || true
}

rss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

i=0
worker=
while [ -z "$worker" ]; do
	i=$((i + 1))
	if [ "$i" -gt 100 ]; then
		echo "bench: smtpd did not start" >&2
		exit 1
	fi
	sleep 0.1
	worker=$(worker_pid)
done

# Memory first, on a fresh worker, so the runs' freed memory cannot hide
# what idle sessions cost.
rss_base=$(rss_kb "$worker")
"$source" -q -i -c "$idle" "127.0.0.1:$port" >"$dir/idle.out" 2>&1 &
idle_pid=$!
i=0
until grep -q '^connected' "$dir/idle.out"; do
	i=$((i + 1))
	if [ "$i" -gt 300 ] || ! kill -0 "$idle_pid" 2>/dev/null; then
		echo "bench: $idle idle sessions did not connect:" >&2
		cat "$dir/idle.out" >&2
		exit 1
	fi
	sleep 0.1
done
sleep 0.5
rss_idle=$(rss_kb "$worker")
greeted=$(awk '/^connected/ { print $2 }' "$dir/idle.out")
if [ "$greeted" -lt "$idle" ]; then
	echo "bench: only $greeted of $idle idle sessions were greeted" >&2
	[ "$greeted" -gt 0 ] || exit 1
fi
kill "$idle_pid"
wait "$idle_pid" || true
idle_pid=

# Accept throughput.
: >"$dir/runs.json"
for r in $runs; do
	c=${r%%:*}
	m=${r#*:}
	before=$(find "$dir/spool/incoming" -type f | wc -l)
	if ! "$source" -q -j -c "$c" -m "$m" -s "$size" -r 1 \
	    -t bench@example.test "127.0.0.1:$port" >"$dir/run.out"; then
		echo "bench: the run with $c sessions failed:" >&2
		cat "$dir/run.out" >&2
		exit 1
	fi
	after=$(find "$dir/spool/incoming" -type f | wc -l)
	if [ $((after - before)) -ne "$m" ]; then
		echo "bench: $m messages accepted but $((after - before))" \
		    "in the queue" >&2
		exit 1
	fi
	cat "$dir/run.out" >>"$dir/runs.json"
done

mkdir -p "$results"
commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
# --no-optional-locks: reading the status must not rewrite the index.
if [ -n "$(git -C "$top" --no-optional-locks status --porcelain \
    2>/dev/null | head -1)" ]; then
	commit="$commit-dirty"
fi
fstype=$(stat -f -c %T "$dir/spool" 2>/dev/null || echo unknown)

RSS_BASE=$rss_base RSS_IDLE=$rss_idle GREETED=$greeted \
BUILDDIR=${build##*/} COMMIT=$commit FSTYPE=$fstype \
RUNS=$dir/runs.json OUT=$results/bench.json python3 - <<'EOF'
import json, os, platform, time
e = os.environ
runs = [json.loads(l) for l in open(e["RUNS"]) if l.strip()]
greeted = int(e["GREETED"])
base, idle = int(e["RSS_BASE"]), int(e["RSS_IDLE"])
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
out = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "commit": e["COMMIT"],
    "build": e["BUILDDIR"],
    "cores": os.cpu_count(),
    "cpu": cpu,
    "kernel": platform.release(),
    "spool_fs": e["FSTYPE"],
    "smtpd": {
        "rss_baseline_bytes": base * 1024,
        "idle_connections": greeted,
        "rss_with_idle_bytes": idle * 1024,
        "rss_per_idle_connection_bytes":
            round((idle - base) * 1024 / greeted) if greeted else None,
    },
    "accept": [{
        "sessions": r["sessions"], "messages": r["accepted"],
        "size": r["size"], "rcpts": r["rcpts"], "fsync": True,
        "elapsed": r["elapsed"], "msgs_per_sec": r["msgs_per_sec"],
    } for r in runs],
}
with open(e["OUT"] + ".tmp", "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
os.replace(e["OUT"] + ".tmp", e["OUT"])
print(f"pochta bench, {out['date']}, commit {out['commit']}, "
      f"{out['cores']} cores, spool on {out['spool_fs']}")
print()
print("SMTP accept, 5 KB messages, 1 recipient, fsync before 250:")
print(f"  {'sessions':>8}  {'messages':>8}  {'seconds':>8}  "
      f"{'msgs/s':>8}")
for a in out["accept"]:
    print(f"  {a['sessions']:>8}  {a['messages']:>8}  "
          f"{a['elapsed']:>8.2f}  {a['msgs_per_sec']:>8.1f}")
s = out["smtpd"]
print()
print("smtpd worker resident memory:")
print(f"  idle worker              "
      f"{s['rss_baseline_bytes'] / 1024:>8.0f} KB")
print(f"  with {greeted} idle sessions "
      f"{s['rss_with_idle_bytes'] / 1024:>8.0f} KB")
if s["rss_per_idle_connection_bytes"] is not None:
    print(f"  per idle session         "
          f"{s['rss_per_idle_connection_bytes']:>8} bytes")
print()
print("written to " + e["OUT"])
EOF
