"""A whole pochta instance for an integration test.

    from pochta_instance import Instance

    class TestX(unittest.TestCase):
        def test_y(self):
            inst = Instance(self)          # temp dir, free ports, pochta init
            inst.enable("smtp")            # uncomment a master.conf service
            inst.set_conf(smtpd_timeout="10s")
            inst.start()                   # pochta start, waits for ready
            with socket.create_connection(("127.0.0.1", inst.port("smtp"))):
                ...

Instance(testcase) registers its own cleanup with testcase.addCleanup, so
every process it started is stopped (SIGKILL as a last resort) and the
temporary directory removed even when the test fails; as a context manager
(`with Instance() as inst:`) it does the same on exit. The temporary
directory is kept when POCHTA_KEEP=1, to read the log after a failure.

Programs come from $POCHTA_BIN (default: ../../build/bin from this file).
Under POCHTA_SANITIZE=1 every timeout is multiplied by TIMEOUT_SCALE.
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.abspath(os.environ.get("POCHTA_BIN",
                                     os.path.join(HERE, "..", "..", "build",
                                                  "bin")))
SANITIZE = os.environ.get("POCHTA_SANITIZE") == "1"
TIMEOUT_SCALE = 4 if SANITIZE else 1

# `pochta init` puts service NAME on port base + PORTS[NAME].
PORTS = {"smtp": 25, "submission": 587, "smtps": 465, "pop3": 110,
         "pop3s": 995, "imap": 143, "imaps": 993}


def timeout(seconds):
    """seconds, stretched for sanitizer builds."""
    return seconds * TIMEOUT_SCALE


def port_free(port, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_base():
    """A base N in [20000, 60000) with every N + PORTS[x] free."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - 1000, 10)
        if all(port_free(base + p) for p in PORTS.values()):
            return base
    raise RuntimeError("no free port base found")


def free_port():
    """A free TCP port on 127.0.0.1 (for extra services in tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, secs=10, interval=0.05, what="condition"):
    """Poll predicate() until it returns a true value, which is returned.
    Raises AssertionError after secs (scaled under sanitizers)."""
    deadline = time.monotonic() + timeout(secs)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout(secs)} s "
                                 f"waiting for {what}")
        time.sleep(interval)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Instance:
    """One instance: DIR/conf, DIR/spool, DIR/mail, DIR/log."""

    def __init__(self, testcase=None, domain="example.test", init=True):
        self.dir = tempfile.mkdtemp(prefix="pochta-test-")
        self.confdir = os.path.join(self.dir, "conf")
        self.spool = os.path.join(self.dir, "spool")
        self.logfile = os.path.join(self.dir, "log", "pochta.log")
        self.domain = domain
        self.port_base = free_port_base()
        self.procs = []          # Popen objects we started (start -f)
        self._cleaned = False
        if testcase is not None:
            testcase.addCleanup(self.cleanup)
        if init:
            self.pochta("init", self.dir, "--port-base", str(self.port_base),
                        "--domain", domain, "--force", confdir=False)
            # Tests never leave loopback: without a fake DNS server of the
            # test's own (fakedns.py), DNS goes nowhere, fast.
            self.set_conf(dns_servers="127.0.0.1:1")

    # -- context manager -------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    # -- running commands ------------------------------------------------
    def bin(self, name):
        return os.path.join(BIN, name)

    def pochta(self, *args, input=None, check=True, confdir=True,
               secs=60):
        """Run `pochta -c CONFDIR ARGS`; returns the CompletedProcess
        (text mode). check=True raises AssertionError on a non-zero exit,
        with the output in the message."""
        cmd = [self.bin("pochta")]
        if confdir:
            cmd += ["-c", self.confdir]
        cmd += [str(a) for a in args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True,
                           timeout=timeout(secs))
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:"
                                 f"\n{p.stdout}{p.stderr}")
        return p

    # -- configuration ---------------------------------------------------
    def conf_path(self, name="pochta.conf"):
        return os.path.join(self.confdir, name)

    def read(self, name):
        with open(self.conf_path(name)) as f:
            return f.read()

    def write(self, name, text):
        with open(self.conf_path(name), "w") as f:
            f.write(text)

    def set_conf(self, **params):
        """Set pochta.conf parameters (replacing earlier settings)."""
        lines = self.read("pochta.conf").splitlines()
        for name, value in params.items():
            lines = [l for l in lines
                     if not re.match(rf"{re.escape(name)}\s*=", l)]
            lines.append(f"{name} = {value}")
        self.write("pochta.conf", "\n".join(lines) + "\n")

    def master_conf(self, text):
        """Replace master.conf with text."""
        self.write("master.conf", text)

    def enable(self, *services):
        """Uncomment the master.conf lines of these services."""
        text = self.read("master.conf")
        for name in services:
            text, n = re.subn(rf"^#({re.escape(name)}\s)", r"\1", text,
                              flags=re.M)
            if n == 0 and not re.search(rf"^{re.escape(name)}\s", text,
                                        re.M):
                raise AssertionError(f"no service {name} in master.conf")
        self.write("master.conf", text)

    def disable(self, *services):
        """Comment out the master.conf lines of these services (those not
        there, or already commented out, are left alone)."""
        text = self.read("master.conf")
        for name in services:
            text = re.sub(rf"^({re.escape(name)}\s)", r"#\1", text,
                          flags=re.M)
        self.write("master.conf", text)

    def port(self, name):
        """The TCP port of an inet service written by pochta init."""
        return self.port_base + PORTS[name]

    # -- the running system ----------------------------------------------
    def start(self, check=True):
        """pochta start (detached); returns the CompletedProcess."""
        return self.pochta("start", check=check)

    def start_foreground(self):
        """pochta start -f as a child process (stderr logging)."""
        p = subprocess.Popen([self.bin("pochta"), "-c", self.confdir,
                              "start", "-f"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        self.procs.append(p)
        wait_for(lambda: self.master_pid() and self.status_ok(), 15,
                 what="master to start")
        return p

    def stop(self, check=True):
        return self.pochta("stop", check=check)

    def reload(self):
        return self.pochta("reload")

    def status_ok(self):
        return self.pochta("status", check=False).returncode == 0

    def status(self, json_output=True):
        """pochta status --json, parsed (or the text without json)."""
        if not json_output:
            return self.pochta("status").stdout
        return json.loads(self.pochta("status", "--json").stdout)

    def service(self, name):
        """The status entry of one service (a dict), or None."""
        for s in self.status()["services"]:
            if s["name"] == name:
                return s
        return None

    def master_pid(self):
        """master's pid from the pid file, if one is alive."""
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return None
        return pid if pid and pid_alive(pid) else None

    def log(self):
        """The whole log file so far ("" before it exists)."""
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern, secs=10):
        """Wait until the log matches the regular expression pattern;
        returns the match."""
        return wait_for(lambda: re.search(pattern, self.log(), re.M), secs,
                        what=f"log line /{pattern}/")

    wait_for = staticmethod(wait_for)

    # -- cleanup -----------------------------------------------------------
    def _descendants(self, pid):
        """pid's live descendants, by walking /proc."""
        children = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [pid]
        while todo:
            for c in children.get(todo.pop(), []):
                out.append(c)
                todo.append(c)
        return out

    def cleanup(self):
        """Stop everything this instance started and remove its files."""
        if self._cleaned:
            return
        self._cleaned = True
        pid = self.master_pid()
        if pid:
            workers = self._descendants(pid)
            self.pochta("stop", check=False, secs=30)
            for p in [pid] + workers:
                if pid_alive(p):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout:
                p.stdout.close()
        if os.environ.get("POCHTA_KEEP") == "1":
            print(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
