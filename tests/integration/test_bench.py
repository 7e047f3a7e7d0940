"""bench/run.sh (make bench) with tiny sizes: every part runs, its figures
land in the results file given by POCHTA_BENCH_RESULTS, a failed or hung
part fails the run, and nothing is left running or on disk.

The programs come from $POCHTA_BIN; the benchmark's build directory is its
parent.
"""
import glob
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

from pochta_instance import BIN, timeout
from test_smtp_source import FakeServer, reap

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.dirname(BIN)
POP3_SOURCE = os.path.join(BUILD, "bench", "pop3-source")

# Sizes small enough for the whole run to take seconds.
TINY = {
    "POCHTA_BENCH_RUNS": "1:20 4:40",
    "POCHTA_BENCH_IDLE": "50",
    "POCHTA_BENCH_LOCAL_RUNS": "2:30 6:60",
    "POCHTA_BENCH_LOCAL_USERS": "3",
    "POCHTA_BENCH_POP3_MESSAGES": "150",
    "POCHTA_BENCH_POP3_IDLE": "50",
    "POCHTA_BENCH_OUTBOUND_RUNS": "2:20 4:40",
}


def our_processes(path):
    """Pids of live processes whose command line mentions path."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if path.encode() in cmd and state != "Z":
            pids.append(int(entry))
    return pids


class TestBench(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="pochta-bench-test-")
        self.addCleanup(self.tmp.cleanup)
        self.work = os.path.join(self.tmp.name, "work")
        os.mkdir(self.work)
        self.results = os.path.join(self.tmp.name, "out", "bench.json")

    def run_bench(self, secs=120, **env):
        e = dict(os.environ, POCHTA_BENCH_DIR=self.work,
                 POCHTA_BENCH_RESULTS=self.results, **TINY)
        e.update(env)
        p = subprocess.run(["sh", os.path.join(TOP, "bench", "run.sh"),
                            BUILD], env=e, capture_output=True, text=True,
                           timeout=timeout(secs))
        # Whatever the outcome: no instance directory and no process left.
        self.assertEqual(os.listdir(self.work), [], p.stdout + p.stderr)
        self.assertEqual(our_processes(self.work), [])
        return p

    def results_json(self):
        with open(self.results) as f:
            return json.load(f)

    def assert_positive(self, where, value):
        """Every number in value (recursively) is positive."""
        if isinstance(value, dict):
            for k, v in value.items():
                self.assert_positive(f"{where}.{k}", v)
        elif isinstance(value, list):
            self.assertTrue(value, f"{where} is empty")
            for i, v in enumerate(value):
                self.assert_positive(f"{where}[{i}]", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            self.assertGreater(value, 0, where)

    def test_bench_every_part(self):
        p = self.run_bench()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = self.results_json()
        self.assertNotIn("failed", out)
        for key in ("date", "commit", "cpu", "kernel", "spool_fs"):
            self.assertTrue(out[key], key)
        self.assertGreater(out["cores"], 0)
        parts = sorted(os.path.basename(f)[5:-3] for f in
                       glob.glob(os.path.join(TOP, "bench", "part-*.sh")))
        self.assertIn("local", parts)
        self.assertIn("pop3", parts)
        for name in parts:
            self.assertIn(name, out, f"part {name} missing")
            self.assertIn(f"== {name}", p.stdout)
            self.assert_positive(name, out[name])
        self.assert_positive("smtpd", out["smtpd"])
        self.assert_positive("accept", out["accept"])

        # The SMTP accept runs, as asked, with every message queued.
        self.assertEqual([(a["sessions"], a["messages"])
                          for a in out["accept"]], [(1, 20), (4, 40)])
        self.assertEqual(out["smtpd"]["idle_connections"], 50)
        self.assertLess(out["smtpd"]["rss_per_idle_connection_bytes"],
                        1 << 20)

        # Local delivery: every message counted in the Maildirs.
        local = out["local"]
        self.assertEqual([(r["sessions"], r["messages"], r["users"])
                          for r in local["runs"]], [(2, 30, 2), (6, 60, 3)])
        self.assertEqual(local["total_messages"], 90)
        for r in local["runs"]:
            self.assertLessEqual(r["accept_elapsed"], r["elapsed"])
            self.assertAlmostEqual(r["msgs_per_sec"],
                                   r["messages"] / r["elapsed"],
                                   delta=r["msgs_per_sec"] / 50)

        # POP3: the whole mailbox went over the wire, LIST's sizes summed.
        pop3 = out["pop3"]
        self.assertEqual(pop3["messages"], 150)
        self.assertGreater(pop3["octets"], 150 * 5000)
        self.assertEqual(pop3["idle_sessions"], 50)
        self.assertLess(pop3["rss_per_idle_session_bytes"], 1 << 20)
        for k in ("list", "uidl", "retr"):
            self.assertIn(k, pop3["python_client"])

        # The summary names every part's figures.
        self.assertIn("local.runs[1].msgs_per_sec", p.stdout)
        self.assertIn("pop3.retr_msgs_per_sec", p.stdout)
        self.assertIn("written to " + self.results, p.stdout)

    def write_part(self, name, script):
        path = os.path.join(self.tmp.name, f"part-{name}.sh")
        with open(path, "w") as f:
            f.write(script)
        return path

    def test_bench_failed_part(self):
        good = self.write_part("good", 'echo "figure 1"\n'
                               'echo \'{"good": {"x": 1}}\' >"$2/good.json"\n')
        bad = self.write_part("bad", 'echo "broken" >&2\nexit 3\n')
        nokey = self.write_part("nokey", 'echo \'{"other": 1}\' '
                                '>"$2/nokey.json"\n')
        nojson = self.write_part("nojson", 'echo "{" >"$2/nojson.json"\n')
        p = self.run_bench(POCHTA_BENCH_PARTS=" ".join(
            [bad, good, nokey, nojson]))
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("part bad failed", p.stderr)
        self.assertIn("figure 1", p.stdout)
        out = self.results_json()
        self.assertEqual(out["good"], {"x": 1})
        self.assertEqual(sorted(out["failed"]), ["bad", "nojson", "nokey"])
        self.assertNotIn("other", out)
        self.assertIn("FAILED: ", p.stdout)

    def test_bench_hung_part(self):
        hung = self.write_part("hung", "sleep 60\n")
        p = self.run_bench(secs=30, POCHTA_BENCH_TIMEOUT="1",
                           POCHTA_BENCH_PARTS=hung)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(self.results_json()["failed"], ["hung"])

    def test_bench_missing_build(self):
        p = subprocess.run(["sh", os.path.join(TOP, "bench", "run.sh"),
                            os.path.join(self.tmp.name, "nothing")],
                           env=dict(os.environ, POCHTA_BENCH_DIR=self.work,
                                    POCHTA_BENCH_RESULTS=self.results),
                           capture_output=True, text=True,
                           timeout=timeout(30))
        self.assertEqual(p.returncode, 1)
        self.assertIn("run make first", p.stderr)
        self.assertFalse(os.path.exists(self.results))
        self.assertEqual(os.listdir(self.work), [])


# Three messages for the fake POP3 server; the second has a line that
# starts with a dot, which goes dot-stuffed over the wire (RFC 1939 3).
MESSAGES = [b"Subject: one\r\n\r\nbody\r\n",
            b"Subject: two\r\n\r\n.hidden\r\nend\r\n",
            b"Subject: three\r\n\r\n" + b"x" * 900 + b"\r\n"]


def fake_pop3(list_sizes=None, on_retr=None, on_pass=b"+OK in\r\n"):
    """A POP3 server with MESSAGES; list_sizes overrides what LIST says,
    on_retr(conn, n) replaces the answer to RETR n when it returns True."""
    sizes = list_sizes or [len(m) for m in MESSAGES]

    def script(conn, lines, commands):
        conn.sendall(b"+OK fake POP3\r\n")
        for line in lines:
            verb = line.split()[0].upper()
            commands.append(line.strip())
            if verb == b"PASS":
                conn.sendall(on_pass)
            elif verb == b"STAT":
                conn.sendall(b"+OK %d %d\r\n" % (len(MESSAGES),
                                                  sum(sizes)))
            elif verb == b"LIST":
                conn.sendall(b"+OK\r\n" + b"".join(
                    b"%d %d\r\n" % (i + 1, n)
                    for i, n in enumerate(sizes)) + b".\r\n")
            elif verb == b"UIDL":
                conn.sendall(b"+OK\r\n" + b"".join(
                    b"%d uid%d\r\n" % (i + 1, i)
                    for i in range(len(MESSAGES))) + b".\r\n")
            elif verb == b"RETR":
                n = int(line.split()[1])
                if on_retr is not None and on_retr(conn, n):
                    return
                body = MESSAGES[n - 1].replace(b"\r\n.", b"\r\n..")
                conn.sendall(b"+OK\r\n" + body + b".\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"+OK bye\r\n")
                return
            else:
                conn.sendall(b"+OK\r\n")
    return script


def run_pop3(port, *args, secs=30):
    p = subprocess.run([POP3_SOURCE] + [str(a) for a in args] +
                       [f"127.0.0.1:{port}"], capture_output=True,
                       text=True, timeout=timeout(secs))
    return p.returncode, p.stdout, p.stderr


class TestPop3Source(unittest.TestCase):
    """bench/pop3-source against scripted servers, hostile ones too."""

    def test_retrieves_every_message_pipelined(self):
        srv = FakeServer(self, fake_pop3())
        rc, out, err = run_pop3(srv.port, "-j", "-W", "2", "-a", "u:p")
        self.assertEqual(rc, 0, err)
        res = json.loads(out)
        self.assertEqual(res["messages"], 3)
        # Un-stuffed: the sizes LIST gave, not the bytes on the wire.
        self.assertEqual(res["octets"], sum(len(m) for m in MESSAGES))
        for k in ("login", "list", "uidl", "retr", "quit"):
            self.assertGreaterEqual(res[k], 0)
        self.assertEqual(srv.commands, [
            b"USER u", b"PASS p", b"STAT", b"LIST", b"UIDL",
            b"RETR 1", b"RETR 2", b"RETR 3", b"QUIT"])

    def test_refused_login_is_an_error(self):
        srv = FakeServer(self, fake_pop3(on_pass=b"-ERR [AUTH] no\r\n"))
        rc, out, err = run_pop3(srv.port, "-a", "u:p")
        self.assertEqual(rc, 1)
        self.assertIn("PASS: -ERR [AUTH] no", err)
        self.assertEqual(out, "")

    def test_sizes_that_do_not_add_up(self):
        srv = FakeServer(self, fake_pop3(list_sizes=[10, 20, 30]))
        rc, _, err = run_pop3(srv.port, "-a", "u:p")
        self.assertEqual(rc, 1)
        self.assertIn("do not add up", err)

    def test_endless_line_is_refused(self):
        def endless(conn, n):
            conn.sendall(b"+OK\r\n")
            for _ in range(40):
                conn.sendall(b"y" * 65536)
            return True
        srv = FakeServer(self, fake_pop3(on_retr=endless))
        # -W 1: no command is left unread when the server hangs up, so
        # its close cannot turn into a reset that overtakes the data.
        rc, _, err = run_pop3(srv.port, "-W", 1, "-a", "u:p")
        self.assertEqual(rc, 1)
        self.assertIn("too long", err)

    def test_lost_connection_in_retr(self):
        def half(conn, n):
            conn.sendall(b"+OK\r\nSubject: cut")
            return True
        srv = FakeServer(self, fake_pop3(on_retr=half))
        rc, _, err = run_pop3(srv.port, "-W", 1, "-a", "u:p")
        self.assertEqual(rc, 1)
        self.assertIn("connection closed by the server", err)

    def test_silent_server_times_out(self):
        def silent(conn, n):
            time.sleep(5)
            return True
        srv = FakeServer(self, fake_pop3(on_retr=silent))
        t0 = time.monotonic()
        rc, _, err = run_pop3(srv.port, "-w", "1", "-a", "u:p")
        self.assertEqual(rc, 1)
        self.assertIn("timeout", err)
        self.assertLess(time.monotonic() - t0, timeout(4))

    def test_idle_sessions_are_held_until_a_signal(self):
        srv = FakeServer(self, fake_pop3())
        p = subprocess.Popen([POP3_SOURCE, "-i", "-c", "5",
                              f"127.0.0.1:{srv.port}"],
                             stdout=subprocess.PIPE, text=True)
        self.addCleanup(reap, p)
        self.assertEqual(p.stdout.readline(), "connected 5\n")
        time.sleep(0.2)
        self.assertIsNone(p.poll())
        self.assertEqual(srv.commands, [])
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=timeout(10)), 0)

    def test_bad_usage_exits_2(self):
        for args in ([], ["127.0.0.1:1"], ["-a", "nocolon", "127.0.0.1:1"],
                     ["-i", "-c", "0", "127.0.0.1:1"],
                     ["-a", "u:p", "-W", "x", "127.0.0.1:1"],
                     ["-a", "u:p", "localhost"]):
            p = subprocess.run([POP3_SOURCE] + args, capture_output=True,
                               timeout=timeout(10))
            self.assertEqual(p.returncode, 2, args)


if __name__ == "__main__":
    unittest.main()
