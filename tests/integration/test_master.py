"""master, pochta start/stop/reload/status and pochta init, end to end.

The services are testworker.py (a tiny worker that greets and echoes) run
by absolute path, so these tests need no mail daemon.
"""
import datetime
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

from pochta_instance import (BIN, Instance, free_port, pid_alive, timeout,
                             wait_for)

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "testworker.py")


def greet(port, host="127.0.0.1"):
    """Connect and return the worker's greeting line, or None."""
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            return s.makefile().readline().strip()
    except OSError:
        return None


def refused(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def log_times(log, pattern):
    """Timestamps (seconds) of the log lines matching pattern."""
    out = []
    for line in log.splitlines():
        if re.search(pattern, line):
            stamp = line.split(" ", 1)[0]
            out.append(datetime.datetime.fromisoformat(stamp).timestamp())
    return out


class MasterTest(unittest.TestCase):
    def instance(self, services):
        """An instance whose master.conf is services: (name, type, listen,
        procs, command) tuples."""
        inst = Instance(self)
        inst.master_conf("".join(
            f"{n} {t} {l} - {p} {c}\n" for n, t, l, p, c in services))
        return inst

    def test_init_creates_runnable_instance(self):
        inst = Instance(self)
        for path in ("conf/pochta.conf", "conf/master.conf", "conf/users",
                     "conf/aliases", "conf/tls/cert.pem", "conf/tls/key.pem"):
            self.assertTrue(os.path.isfile(os.path.join(inst.dir, path)),
                            path)
        for path in ("spool", "mail", "log"):
            self.assertTrue(os.path.isdir(os.path.join(inst.dir, path)))
        key = os.stat(os.path.join(inst.dir, "conf/tls/key.pem"))
        self.assertEqual(stat.S_IMODE(key.st_mode), 0o600)
        with open(os.path.join(inst.dir, "conf/tls/cert.pem")) as f:
            self.assertIn("BEGIN CERTIFICATE", f.read())
        conf = inst.read("pochta.conf")
        self.assertIn(f"queue_directory = {inst.dir}/spool", conf)
        self.assertIn(f"mail_directory = {inst.dir}/mail", conf)
        self.assertIn(f"daemon_directory = {BIN}", conf)
        self.assertIn("mydomain = example.test", conf)
        mconf = inst.read("master.conf")
        for name, off in (("smtp", 25), ("submission", 587), ("smtps", 465),
                          ("pop3", 110), ("pop3s", 995), ("imap", 143),
                          ("imaps", 993)):
            m = re.search(rf"^#?{name}\s+inet\s+127\.0\.0\.1:(\d+)\s", mconf,
                          re.M)
            self.assertIsNotNone(m, name)
            self.assertEqual(int(m.group(1)), inst.port_base + off)
            # Enabled exactly when its daemon is built.
            prog = "imapd" if "imap" in name else (
                "pop3d" if "pop3" in name else "smtpd")
            self.assertEqual(m.group(0).startswith("#"),
                             not os.path.exists(os.path.join(BIN, prog)))
        for name, path in (("qmgr", "private/qmgr"), ("local", "private/local"),
                           ("smtp-out", "private/smtp-out"),
                           ("submit", "public/submit")):
            self.assertRegex(mconf, rf"(?m)^#?{name}\s+unix\s+{path}\s")
        # The instance as written starts and stops.
        inst.start()
        inst.stop()
        # A second init over it is refused without --force.
        p = inst.pochta("init", inst.dir, confdir=False, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("exists", p.stderr)

    def test_chroot(self):
        """user:/dir chroots the workers. master must be root for that:
        it runs as root of a user namespace the test makes, with a mount
        namespace in which the jail gets /usr and the test worker by bind
        mounts."""
        inst = Instance(self)
        jail = os.path.join(inst.dir, "jail")
        here = os.path.dirname(os.path.abspath(__file__))
        outside = "/pochta-jail-record"
        self.assertFalse(os.path.exists(outside))
        self.addCleanup(lambda: os.path.exists(outside) and
                        os.unlink(outside))
        port, free = free_port(), free_port()
        inst.master_conf(
            f"jailed inet {port} -:{jail} 1 {WORKER} --record {outside}\n"
            f"free inet {free} - 1 {WORKER}\n")
        mounts = [f"mkdir -p {jail}{d} && mount --rbind {d} {jail}{d}"
                  for d in ("/usr", here)]
        for d in ("/bin", "/lib", "/lib64", "/sbin"):
            if os.path.islink(d):
                mounts.append(f"ln -sfn {os.readlink(d)} {jail}{d}")
            elif os.path.isdir(d):
                mounts.append(f"mkdir -p {jail}{d} && "
                              f"mount --rbind {d} {jail}{d}")
        os.mkdir(jail)

        def start():
            return subprocess.run(
                ["unshare", "-rm", "sh", "-ec",
                 " && ".join(mounts) + ' && exec "$@"', "sh",
                 inst.bin("pochta"), "-c", inst.confdir, "start"],
                capture_output=True, text=True, timeout=timeout(60))

        p = start()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(greet(port).startswith("hello jailed "))
        self.assertTrue(greet(free).startswith("hello free "))
        # The worker wrote "/pochta-jail-record" inside the jail.
        with open(jail + outside) as f:
            self.assertIn("jailed", f.read())
        self.assertFalse(os.path.exists(outside))
        inst.stop()
        # A chroot directory that does not exist: master refuses to start.
        inst.master_conf(f"jailed inet {port} -:{jail}/none 1 {WORKER}\n")
        p = start()
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("chroot directory does not exist",
                      p.stderr + p.stdout)

    def test_worker_contract(self):
        fd, record = tempfile.mkstemp(prefix="pochta-record.")
        os.close(fd)
        self.addCleanup(os.unlink, record)
        port = free_port()
        inst = self.instance([
            ("wild", "inet", str(port), 1,
             f"{WORKER} --record {record} -o x=y"),
            ("sock", "unix", "public/sock", 1, WORKER),
        ])
        inst.start()
        # A bare port is the IPv4 and the IPv6 wildcard.
        self.assertTrue(greet(port).startswith("hello wild "))
        if socket.has_ipv6 and os.path.exists("/proc/net/if_inet6"):
            self.assertTrue(greet(port, "::1").startswith("hello wild "))
        with open(record) as f:
            words = f.readline().split()
        self.assertEqual(words[1:6], ["-c", inst.confdir, "--record", record,
                                      "-o"])
        self.assertEqual(words[-2:], ["wild", inst.confdir])
        path = os.path.join(inst.spool, "public", "sock")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o666)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            self.assertTrue(s.makefile().readline().startswith("hello sock"))
        inst.stop()
        self.assertFalse(os.path.exists(path))

    def test_kill9_worker_is_restarted(self):
        p1, p2 = free_port(), free_port()
        inst = self.instance([("one", "inet", f"127.0.0.1:{p1}", 1, WORKER),
                              ("two", "inet", f"127.0.0.1:{p2}", 1, WORKER)])
        inst.start()
        old = inst.service("one")["pids"][0]
        other = inst.service("two")["pids"][0]
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()
        s = wait_for(lambda: (lambda s: s if s["pids"] and
                              s["pids"][0] != old else None)(
                                  inst.service("one")), 2,
                     what="a new worker")
        self.assertLess(time.monotonic() - t0, timeout(2.5))
        self.assertEqual(s["restarts"], 1)
        self.assertEqual(s["crashes"], 1)
        self.assertEqual(s["state"], "running")
        self.assertEqual(inst.service("two")["pids"], [other])
        self.assertEqual(greet(p1), f"hello one {s['pids'][0]}")
        self.assertIn(f"worker pid {old} killed by signal 9", inst.log())

    def test_crash_loop_backs_off(self):
        p1 = free_port()
        inst = self.instance([
            ("crash", "unix", "private/crash", 1, f"{WORKER} --exit 3"),
            ("good", "inet", f"127.0.0.1:{p1}", 1, WORKER),
        ])
        inst.start()
        inst.wait_for_log(r"service crash crashed 4 times, next start in 8 s",
                          15)
        exits = log_times(inst.log(), r"service crash: worker pid \d+ "
                          r"exited with status 3")
        self.assertGreaterEqual(len(exits), 4)
        gaps = [b - a for a, b in zip(exits, exits[1:])]
        for gap, want in zip(gaps, (1, 2, 4)):
            self.assertGreater(gap, want * 0.8, gaps)
            self.assertLess(gap, want + 1.5 * timeout(1), gaps)
        s = inst.service("crash")
        self.assertEqual(s["state"], "throttled")
        self.assertGreaterEqual(s["crashes"], 4)
        # The other service never noticed.
        good = inst.service("good")
        self.assertEqual(good["restarts"], 0)
        self.assertEqual(greet(p1), f"hello good {good['pids'][0]}")

    def test_reload_while_a_worker_starts(self):
        # The SIGHUP reaches the worker before its handler exists: it must
        # neither kill the worker nor be lost.
        port = free_port()
        fd, record = tempfile.mkstemp(prefix="pochta-slow.")
        os.close(fd)
        os.unlink(record)       # its appearance says the worker started
        self.addCleanup(lambda: os.path.exists(record) and os.unlink(record))
        inst = self.instance([("slow", "inet", f"127.0.0.1:{port}", 1,
                               f"{WORKER} --record {record} "
                               "--slow-start 2")])
        inst.start()
        wait_for(lambda: os.path.exists(record), 5, what="the worker")
        pid = int(open(record).read().split()[0])
        inst.reload()
        line = wait_for(lambda: greet(port), 10, what="the worker's greeting")
        self.assertEqual(line, f"hello slow {pid}")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            rd = s.makefile()
            rd.readline()
            s.sendall(b"reloads?\n")
            self.assertEqual(rd.readline(), "reloads 1\n")
        self.assertEqual(inst.service("slow")["restarts"], 0)

    def test_reload_right_after_start_is_one_reload(self):
        # A reload sent while master is still forking workers: a signal
        # that hits a child before it has reset master's handlers must not
        # land in master's loop (an extra reload each time, re-signalling
        # the workers) nor be lost for the worker.
        for _ in range(4):
            inst = Instance(self)
            inst.master_conf("".join(
                f"s{i} inet 127.0.0.1:{free_port()} - 8 {WORKER}\n"
                for i in range(6)))
            inst.start()
            inst.reload()
            wait_for(lambda: "reloaded: " in inst.log(), 10,
                     what="master's reload")
            time.sleep(1)
            self.assertEqual(len(re.findall(r"reloaded: ", inst.log())), 1)
            self.assertEqual(sum(s["restarts"] for s in
                                 inst.status()["services"]), 0)
            inst.stop()

    def test_reload_adds_removes_keeps(self):
        pa, pb, pc = free_port(), free_port(), free_port()
        inst = self.instance([("a", "inet", f"127.0.0.1:{pa}", 1, WORKER),
                              ("b", "inet", f"127.0.0.1:{pb}", 1, WORKER),
                              ("d", "inet", f"127.0.0.1:{free_port()}", 1,
                               WORKER)])
        inst.start()
        apid = inst.service("a")["pids"][0]
        dpid = inst.service("d")["pids"][0]
        dport = int(inst.service("d")["listen"].split(":")[1])
        conn = socket.create_connection(("127.0.0.1", pa), timeout=5)
        self.addCleanup(conn.close)
        rd = conn.makefile()
        self.assertEqual(rd.readline().strip(), f"hello a {apid}")

        # b removed, c added, d changed (one more argument), a untouched.
        inst.master_conf(
            f"a inet 127.0.0.1:{pa} - 1 {WORKER}\n"
            f"c inet 127.0.0.1:{pc} - 1 {WORKER}\n"
            f"d inet 127.0.0.1:{dport} - 1 {WORKER} -o changed=yes\n")
        inst.reload()
        wait_for(lambda: greet(pc), 5, what="service c")
        wait_for(lambda: refused(pb), 5, what="service b to close")
        wait_for(lambda: inst.service("d")["pids"] not in ([], [dpid]), 5,
                 what="service d to restart")
        self.assertEqual(inst.service("a")["pids"], [apid])
        self.assertIsNone(inst.service("b"))
        self.assertTrue(greet(dport).startswith("hello d "))
        # The connection to the unchanged service lives on, and its
        # worker was told to read pochta.conf again.
        conn.sendall(b"still there\n")
        self.assertEqual(rd.readline(), "echo still there\n")
        conn.sendall(b"reloads?\n")
        self.assertEqual(rd.readline(), "reloads 1\n")

        # A broken master.conf is reported and changes nothing: pochta
        # reload refuses it, and master itself logs it on a bare SIGHUP.
        inst.master_conf(f"a inet 127.0.0.1:{pa} - 1 {WORKER}\n"
                         f"e tcp 127.0.0.1:{free_port()} - 1 {WORKER}\n")
        p = inst.pochta("reload", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"master\.conf:2: .*bad type")
        os.kill(inst.master_pid(), signal.SIGHUP)
        inst.wait_for_log(r"reload failed.*master\.conf:2: .*bad type")
        names = [s["name"] for s in inst.status()["services"]]
        self.assertEqual(names, ["a", "c", "d"])
        self.assertTrue(greet(pc))
        # So is a broken pochta.conf.
        inst.master_conf(f"a inet 127.0.0.1:{pa} - 1 {WORKER}\n")
        with open(inst.conf_path(), "a") as f:
            f.write("no_such_parameter = 1\n")
        p = inst.pochta("reload", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"pochta\.conf:\d+: ")
        os.kill(inst.master_pid(), signal.SIGHUP)
        inst.wait_for_log(r"reload failed.*pochta\.conf:\d+: ")
        inst.write("pochta.conf", inst.read("pochta.conf").replace(
            "no_such_parameter = 1\n", ""))
        self.assertEqual(len(inst.status()["services"]), 3)
        conn.sendall(b"again\n")
        self.assertEqual(rd.readline(), "echo again\n")

    def test_bad_config_refuses_start(self):
        inst = self.instance([("a", "inet", f"127.0.0.1:{free_port()}", 1,
                               WORKER),
                              ("a", "unix", "private/a", 1, WORKER)])
        p = inst.start(check=False)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"master\.conf:2: duplicate service name")
        self.assertIsNone(inst.master_pid())

        inst.master_conf(f"a inet 127.0.0.1:{free_port()} - 1 {WORKER}\n")
        with open(inst.conf_path(), "a") as f:
            f.write("queue_minfree = lots\n")
        lines = inst.read("pochta.conf").count("\n")
        p = inst.start(check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"pochta.conf:{lines}:", p.stderr)
        self.assertIsNone(inst.master_pid())

    def test_port_in_use_refuses_start(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            inst = self.instance([("a", "inet", f"127.0.0.1:{port}", 1,
                                   WORKER)])
            p = inst.start(check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"cannot listen on 127.0.0.1:{port}", p.stderr)
        self.assertIsNone(inst.master_pid())

    def test_second_master_refused(self):
        inst = self.instance([("a", "inet", f"127.0.0.1:{free_port()}", 1,
                               WORKER)])
        inst.start()
        pid = inst.master_pid()
        p = inst.start(check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"already running (pid {pid})", p.stderr)
        # master itself, bypassing pochta's check, refuses too.
        p = subprocess.run([inst.bin("master"), "-c", inst.confdir],
                           capture_output=True, text=True,
                           timeout=timeout(10))
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"already running (pid {pid})", p.stderr)
        self.assertEqual(inst.master_pid(), pid)

    def test_stop_leaves_nothing(self):
        inst = self.instance([("a", "inet", f"127.0.0.1:{free_port()}", 2,
                               WORKER),
                              ("b", "unix", "private/b", 1, WORKER)])
        inst.start()
        st = inst.status()
        self.assertTrue(st["ready"])
        pid = st["pid"]
        workers = [p for s in st["services"] for p in s["pids"]]
        self.assertEqual(len(workers), 3)
        text = inst.status(json_output=False)
        self.assertRegex(text, r"(?m)^a\s+inet\s+127\.0\.0\.1:\d+\s+running")
        inst.stop()
        for p in [pid] + workers:
            self.assertFalse(pid_alive(p), p)
        self.assertFalse(os.path.exists(
            os.path.join(inst.spool, "pid", "master.pid")))
        self.assertFalse(os.path.exists(
            os.path.join(inst.spool, "private", "b")))
        self.assertFalse(os.path.exists(
            os.path.join(inst.spool, "private", "master")))
        p = inst.pochta("status", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not running", p.stderr)
        p = inst.pochta("stop", check=False)
        self.assertEqual(p.returncode, 1)

    def test_master_killed_leaves_no_orphans(self):
        port = free_port()
        inst = self.instance([("a", "inet", f"127.0.0.1:{port}", 2, WORKER),
                              ("b", "unix", "private/b", 1, WORKER)])
        inst.start()
        pid = inst.master_pid()
        workers = [p for s in inst.status()["services"] for p in s["pids"]]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(pid_alive(p) for p in [pid] + workers), 5,
                 what="the workers to follow master")
        # The stale pid file and sockets do not stop a new master.
        inst.start()
        self.assertNotEqual(inst.master_pid(), pid)
        self.assertTrue(greet(port).startswith("hello a "))
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(os.path.join(inst.spool, "private", "b"))
            self.assertTrue(s.makefile().readline().startswith("hello b"))

    def test_status_socket_hostile_clients(self):
        inst = self.instance([("a", "unix", "private/a", 1, WORKER)])
        inst.start()
        path = os.path.join(inst.spool, "private", "master")

        def ask(data):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(timeout(5))
                s.connect(path)
                try:
                    s.sendall(data)
                    return s.recv(65536)
                except OSError:
                    return b""

        self.assertEqual(ask(b"no equals sign\n\n"), b"")
        self.assertEqual(ask(b"request=" + b"x" * 100000), b"")
        self.assertEqual(ask(b"request=%zz\n\n"), b"")
        self.assertIn(b"status=error", ask(b"request=nonsense\n\n"))
        with socket.socket(socket.AF_UNIX) as idle:
            idle.connect(path)          # says nothing, blocks nobody
            self.assertIn(b"ready=yes", ask(b"request=ready\n\n"))
        self.assertEqual(inst.service("a")["state"], "running")

    def test_stop_kills_stubborn_worker(self):
        port = free_port()
        inst = self.instance([("a", "inet", f"127.0.0.1:{port}", 1,
                               f"{WORKER} --ignore-term")])
        inst.set_conf(master_grace_time="1s")
        inst.start()
        self.assertTrue(greet(port))    # SIGTERM is ignored by now
        worker = inst.service("a")["pids"][0]
        t0 = time.monotonic()
        inst.stop()
        self.assertLess(time.monotonic() - t0, timeout(5))
        self.assertFalse(pid_alive(worker))
        self.assertIn("did not stop in time", inst.log())

    def worker_uid(self, inst, name):
        pid = inst.service(name)["pids"][0]
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))

    def test_user_column(self):
        port = free_port()
        inst = self.instance([("a", "inet", f"127.0.0.1:{port}", 1, WORKER)])
        inst.master_conf(f"a inet 127.0.0.1:{port} nobody 1 {WORKER}\n")
        nobody = pwd.getpwnam("nobody").pw_uid
        if os.geteuid() != 0:
            # Unprivileged: the column is ignored, and that is said once.
            inst.start()
            self.assertEqual(self.worker_uid(inst, "a"), os.geteuid())
            self.assertEqual(inst.log().count("running unprivileged: the "
                                              "user column of master.conf "
                                              "is ignored"), 1)
            return
        # As root the worker becomes the service's user...
        inst.start()
        self.assertEqual(self.worker_uid(inst, "a"), nobody)
        self.assertNotIn("running unprivileged", inst.log())
        inst.stop()
        # ...and a master started by an ordinary user runs workers as that
        # user, saying so in the log.
        if shutil.which("setpriv") is None:
            self.fail("setpriv(1) is needed to test an unprivileged master")
        subprocess.run(["chown", "-R", "nobody", inst.dir], check=True)
        os.chmod(inst.dir, 0o755)
        p = subprocess.run(["setpriv", "--reuid", "nobody", "--regid",
                            str(pwd.getpwnam("nobody").pw_gid),
                            "--clear-groups", inst.bin("pochta"), "-c",
                            inst.confdir, "start"], capture_output=True,
                           text=True, timeout=timeout(60))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.worker_uid(inst, "a"), nobody)
        self.assertEqual(inst.log().count("running unprivileged: the user "
                                          "column of master.conf is "
                                          "ignored"), 1)
        self.assertTrue(greet(port).startswith("hello a "))

    def test_foreground_logs_to_stderr(self):
        port = free_port()
        inst = self.instance([("a", "inet", f"127.0.0.1:{port}", 1, WORKER)])
        proc = inst.start_foreground()
        self.assertTrue(greet(port).startswith("hello a "))
        os.kill(inst.master_pid(), signal.SIGTERM)
        out, _ = proc.communicate(timeout=timeout(15))
        self.assertEqual(proc.returncode, 0)
        self.assertRegex(out, r"pochta/master\[\d+\]: started")
        self.assertRegex(out, r"pochta/master\[\d+\]: stopped")


if __name__ == "__main__":
    unittest.main()
