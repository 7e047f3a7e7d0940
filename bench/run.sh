#!/bin/sh
# bench/run.sh BUILD - `make bench`: the SMTP accept rate and smtpd's memory
# per idle connection on a throwaway instance, then every bench/part-*.sh in
# name order; the figures are merged into one JSON file and summarised. A
# failed part is reported and makes the run exit 1. See pochta-bench(1).
#
# Parts may use the functions below: POCHTA_BENCH_LIB=1 . bench/run.sh
set -eu

bench_top=$(cd "$(dirname "$0")/.." && pwd)
# Instances to stop and background processes to kill on exit.
bench_instances=
bench_pids=

# bench_paths BUILD: set bench_build (absolute) and bench_pochta, and check
# that the programs the benchmarks need were built.
bench_paths() {
	bench_build=$1
	case $bench_build in
	/*) ;;
	*) bench_build=$bench_top/$bench_build ;;
	esac
	bench_pochta=$bench_build/bin/pochta
	for p in "$bench_pochta" "$bench_build/bin/smtpd" \
	    "$bench_build/bench/smtp-source"; do
		if [ ! -x "$p" ]; then
			echo "bench: $p is missing; run make first" >&2
			exit 1
		fi
	done
}

# bench_part BUILD WORKDIR: what a part starts with, given its arguments:
# the paths, work=WORKDIR, and the cleanup on exit.
bench_part() {
	if [ $# -ne 2 ]; then
		echo "usage: sh $0 builddir workdir" >&2
		exit 2
	fi
	bench_paths "$1"
	work=$2
	bench_trap
}

# bench_cleanup: kill what bench_bg started, stop every instance (SIGKILL
# as a last resort) and remove its directory.
bench_cleanup() {
	for p in $bench_pids; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	bench_pids=
	for d in $bench_instances; do
		if [ -f "$d/spool/pid/master.pid" ]; then
			master=$(cat "$d/spool/pid/master.pid" 2>/dev/null || true)
			"$bench_pochta" -c "$d/conf" stop >/dev/null 2>&1 || true
			if [ -n "$master" ] && kill -0 "$master" 2>/dev/null; then
				for p in $(ps -o pid= --ppid "$master" \
				    2>/dev/null); do
					kill -9 "$p" 2>/dev/null || true
				done
				kill -9 "$master" 2>/dev/null || true
			fi
		fi
		rm -rf "$d"
	done
	bench_instances=
}

bench_trap() {
	trap 'status=$?; trap - EXIT INT TERM HUP; bench_cleanup; exit $status' \
	    EXIT
	trap 'exit 1' INT TERM HUP
}

# bench_bg CMD...: run CMD in the background, killed on exit; sets
# bench_bg_pid.
bench_bg() {
	"$@" &
	bench_bg_pid=$!
	bench_pids="$bench_pids $bench_bg_pid"
}

# bench_bg_stop PID: kill a bench_bg process and wait for it.
bench_bg_stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	bench_pids=$(echo "$bench_pids" | tr ' ' '\n' | grep -vx "$1" |
	    tr '\n' ' ' || true)
}

# bench_instance DIR: `pochta init` into DIR on 127.0.0.1 with a free port
# base, no DNS (reverse lookups would measure the resolver); sets
# bench_conf and bench_base. Not started yet.
bench_instance() {
	bench_base=$(python3 -c '
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
	if [ -z "$bench_base" ]; then
		echo "bench: no free port base" >&2
		exit 1
	fi
	bench_instances="$bench_instances $1"
	bench_conf=$1/conf
	"$bench_pochta" init "$1" --port-base "$bench_base" \
	    --domain example.test --listen 127.0.0.1 --force >/dev/null
	"$bench_pochta" -c "$bench_conf" conf -e smtpd_peername_lookup=no \
	    dns_servers=127.0.0.1:1
}

# bench_disable CONF SERVICE...: comment out services in master.conf.
bench_disable() {
	c=$1
	shift
	for s in "$@"; do
		sed "s/^$s[[:space:]]/#&/" "$c/master.conf" >"$c/master.conf.new"
		mv "$c/master.conf.new" "$c/master.conf"
	done
}

# bench_user CONF ADDRESS PASSWORD: add a mailbox user.
bench_user() {
	echo "$3" | "$bench_pochta" -c "$1" user add "$2" --password-stdin
}

# bench_worker CONF SERVICE PROGRAM: wait for the service's one worker
# process to be running PROGRAM and print its pid.
bench_worker() {
	i=0
	while [ "$i" -lt 100 ]; do
		pid=$("$bench_pochta" -c "$1" status --json 2>/dev/null |
		    SERVICE=$2 python3 -c '
import json, os, sys
for s in json.load(sys.stdin)["services"]:
    if (s["name"] == os.environ["SERVICE"] and
            s.get("state") == "running" and s["pids"]):
        print(s["pids"][0])
' || true)
		# Until the exec is done the pid is a copy of master, whose
		# memory would be measured instead.
		if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null |
		    sed 's|.*/||')" = "$3" ]; then
			sleep 0.3
			echo "$pid"
			return 0
		fi
		i=$((i + 1))
		sleep 0.1
	done
	echo "bench: service $2 did not start" >&2
	exit 1
}

bench_rss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# bench_idle_rss PID N OUT CMD...: the worker PID's VmRSS before and while
# CMD holds N idle sessions (CMD prints "connected n" once they are open).
# Sets bench_rss_base, bench_rss_idle (KB) and bench_greeted.
bench_idle_rss() {
	w=$1 n=$2 out=$3
	shift 3
	bench_rss_base=$(bench_rss_kb "$w")
	bench_bg "$@" >"$out" 2>&1
	i=0
	until grep -q '^connected' "$out"; do
		i=$((i + 1))
		if [ "$i" -gt 300 ] || ! kill -0 "$bench_bg_pid" 2>/dev/null
		then
			echo "bench: $n idle sessions did not connect:" >&2
			cat "$out" >&2
			exit 1
		fi
		sleep 0.1
	done
	sleep 0.5
	bench_rss_idle=$(bench_rss_kb "$w")
	bench_greeted=$(awk '/^connected/ { print $2 }' "$out")
	bench_bg_stop "$bench_bg_pid"
	if [ "$bench_greeted" -lt "$n" ]; then
		echo "bench: only $bench_greeted of $n idle sessions were" \
		    "greeted" >&2
		[ "$bench_greeted" -gt 0 ] || exit 1
	fi
}

# bench_now: seconds since the epoch with nanoseconds, for elapsed times.
bench_now() {
	date +%s.%N
}

if [ "${POCHTA_BENCH_LIB:-}" = 1 ]; then
	return 0
fi

# The SMTP accept part: 5 KB messages to one user at 1, 10 and 50 sessions,
# each synced to disk before the 250, and smtpd's memory per idle session.
# qmgr is off so that the queue only grows and delivery takes no CPU from
# the figure: it stays comparable with runs from before delivery existed.
part_smtp() {
	runs=${POCHTA_BENCH_RUNS:-"1:2000 10:6000 50:10000"}
	idle=${POCHTA_BENCH_IDLE:-1000}
	source=$bench_build/bench/smtp-source
	d=$work/smtp

	bench_instance "$d"
	bench_disable "$bench_conf" qmgr
	"$bench_pochta" -c "$bench_conf" conf -e \
	    smtpd_client_connection_limit=$((idle + 100)) \
	    smtpd_connection_limit=$((idle + 1000))
	bench_user "$bench_conf" bench@example.test \
	    "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
	"$bench_pochta" -c "$bench_conf" start >/dev/null
	worker=$(bench_worker "$bench_conf" smtp smtpd)

	# Memory first, on a fresh worker, so the runs' freed memory cannot
	# hide what idle sessions cost.
	bench_idle_rss "$worker" "$idle" "$d/idle.out" \
	    "$source" -q -i -c "$idle" "127.0.0.1:$((bench_base + 25))"

	: >"$d/runs.json"
	for r in $runs; do
		c=${r%%:*}
		m=${r#*:}
		before=$(find "$d/spool/incoming" -type f | wc -l)
		if ! "$source" -q -j -c "$c" -m "$m" -s 5120 -r 1 \
		    -t bench@example.test "127.0.0.1:$((bench_base + 25))" \
		    >"$d/run.out"; then
			echo "bench: the run with $c sessions failed:" >&2
			cat "$d/run.out" >&2
			return 1
		fi
		after=$(find "$d/spool/incoming" -type f | wc -l)
		if [ $((after - before)) -ne "$m" ]; then
			echo "bench: $m messages accepted but" \
			    "$((after - before)) in the queue" >&2
			return 1
		fi
		cat "$d/run.out" >>"$d/runs.json"
	done
	RSS_BASE=$bench_rss_base RSS_IDLE=$bench_rss_idle \
	GREETED=$bench_greeted RUNS=$d/runs.json OUT=$work/smtp.json \
	python3 - <<'EOF'
import json, os
e = os.environ
runs = [json.loads(l) for l in open(e["RUNS"]) if l.strip()]
greeted = int(e["GREETED"])
base, idle = int(e["RSS_BASE"]), int(e["RSS_IDLE"])
out = {
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
with open(e["OUT"], "w") as f:
    json.dump(out, f, indent=2)
print("SMTP accept, 5 KB messages, 1 recipient, fsync before 250:")
for a in out["accept"]:
    print(f"  {a['sessions']:>4} sessions  {a['messages']:>6} messages  "
          f"{a['elapsed']:>7.2f} s  {a['msgs_per_sec']:>8.1f} msgs/s")
s = out["smtpd"]
print(f"smtpd worker: {base} KB idle, {idle} KB with {greeted} idle "
      f"sessions, {s['rss_per_idle_connection_bytes']} bytes per session")
EOF
	bench_cleanup
}

bench_paths "${1:-build}"
results=${POCHTA_BENCH_RESULTS:-$bench_top/bench/results/bench.json}
timeout=${POCHTA_BENCH_TIMEOUT:-900}
work=$(mktemp -d "${POCHTA_BENCH_DIR:-${TMPDIR:-/tmp}}/pochta-bench.XXXXXX")
bench_instances=$work
bench_trap

# Parts by name: POCHTA_BENCH_PARTS, else smtp and every bench/part-*.sh.
parts=${POCHTA_BENCH_PARTS:-}
if [ -z "$parts" ]; then
	parts=smtp
	for f in "$bench_top"/bench/part-*.sh; do
		[ -f "$f" ] || continue
		n=${f##*/part-}
		parts="$parts ${n%.sh}"
	done
fi

fstype=$(stat -f -c %T "$work" 2>/dev/null || echo unknown)
failed=
names=
for p in $parts; do
	# A path names a part outside the tree, for trying one out.
	case $p in
	*/*)
		f=$p
		p=${f##*/part-}
		p=${p%.sh}
		;;
	*)
		f=$bench_top/bench/part-$p.sh
		;;
	esac
	names="$names $p"
	echo "== $p"
	if [ "$p" = smtp ]; then
		# A subshell, so that a failed step (exit) fails only this part.
		if ! (bench_instances=; bench_trap; part_smtp); then
			failed="$failed $p"
		fi
		continue
	fi
	if [ ! -f "$f" ]; then
		echo "bench: no part $p ($f)" >&2
		failed="$failed $p"
		continue
	fi
	rm -f "$work/$p.json"
	if ! timeout -k 10 "$timeout" sh "$f" "$bench_build" "$work"; then
		echo "bench: part $p failed" >&2
		failed="$failed $p"
		rm -f "$work/$p.json"
	elif [ ! -s "$work/$p.json" ]; then
		echo "bench: part $p wrote no $work/$p.json" >&2
		failed="$failed $p"
	fi
done

commit=$(git -C "$bench_top" rev-parse --short HEAD 2>/dev/null ||
    echo unknown)
# --no-optional-locks: reading the status must not rewrite the index.
if [ -n "$(git -C "$bench_top" --no-optional-locks status --porcelain \
    2>/dev/null | head -1)" ]; then
	commit="$commit-dirty"
fi
mkdir -p "$(dirname "$results")"

echo "== summary"
# The merge exits 1 when a part's file is unreadable: that part failed too.
set +e
BUILDDIR=${bench_build##*/} COMMIT=$commit FSTYPE=$fstype WORK=$work \
PARTS=$names FAILED=$failed OUT=$results python3 - <<'EOF'
import json, os, platform, sys, time
e = os.environ
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
}
bad = e["FAILED"].split()
for p in e["PARTS"].split():
    if p in bad:
        continue
    try:
        with open(os.path.join(e["WORK"], p + ".json")) as f:
            part = json.load(f)
        if not isinstance(part, dict) or not part:
            raise ValueError("not a JSON object")
        if p != "smtp" and p not in part:
            raise ValueError(f"no key \"{p}\"")
    except (OSError, ValueError) as err:
        print(f"bench: part {p}: {err}")
        bad.append(p)
        continue
    out.update(part)
if bad:
    out["failed"] = bad
with open(e["OUT"] + ".tmp", "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
os.replace(e["OUT"] + ".tmp", e["OUT"])


def flat(prefix, v):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from flat(f"{prefix}.{k}" if prefix else k, x)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from flat(f"{prefix}[{i}]", x)
    else:
        yield prefix, v


print(f"pochta bench, {out['date']}, commit {out['commit']}, "
      f"{out['cores']} cores, spool on {out['spool_fs']}")
for k, v in out.items():
    if k in ("date", "commit", "build", "cores", "cpu", "kernel",
             "spool_fs", "failed"):
        continue
    for name, x in flat(k, v):
        if name.endswith(("per_sec", "per_idle_connection_bytes",
                          "per_idle_session_bytes", "elapsed")) or \
                name.split(".")[-1] in ("list", "uidl", "retr", "quit",
                                        "first_login"):
            if isinstance(x, float):
                x = f"{x:.4g}" if x < 1000 else f"{x:.0f}"
            print(f"  {name} = {x}")
if bad:
    print("FAILED: " + " ".join(bad))
print("written to " + e["OUT"])
sys.exit(1 if bad else 0)
EOF
merged=$?
set -e
[ -z "$failed" ] && [ "$merged" -eq 0 ]
