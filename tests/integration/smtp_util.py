"""Helpers for SMTP integration tests: an instance with smtpd enabled and
users, a raw line-oriented client for what smtplib will not send, and a
reader for queue files (pochta-queue(5))."""
import glob
import os
import socket
import ssl
import time

from pochta_instance import Instance, timeout

PASSWORD = "correct horse battery staple"


def smtp_instance(testcase, users=("alice@example.test", "bob@example.test"),
                  start=True, **conf):
    """An instance with the smtpd services, no DNS lookups of clients (tests
    never leave loopback) and the given users, all with PASSWORD. No queue
    manager or delivery agent runs, so accepted mail stays in incoming/
    (enable them with inst.enable("qmgr", "local") before start)."""
    inst = Instance(testcase)
    inst.disable("qmgr", "local", "smtp-out")
    settings = {"smtpd_peername_lookup": "no"}
    settings.update(conf)
    inst.set_conf(**settings)
    for user in users:
        inst.pochta("user", "add", user, "--password-stdin",
                    input=PASSWORD + "\n")
    if start:
        inst.start()
    return inst


def queued(inst, queue="incoming"):
    """Paths of the queue files in one queue directory, oldest first."""
    return sorted(glob.glob(os.path.join(inst.spool, queue, "*")))


def wait_queued(inst, n, secs=10):
    deadline = time.monotonic() + timeout(secs)
    while len(queued(inst)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return queued(inst)


def parse_queue_file(path):
    """(envelope dict of lists, message bytes, recipients [(status, addr)])."""
    with open(path, "rb") as f:
        data = f.read()
    head = data.split(b"\n", 1)[0].split()
    off, size = int(head[2]), int(head[3])
    env = {}
    for line in data[:off].decode().splitlines()[1:]:
        if not line:
            continue
        k, _, v = line.partition(" ")
        env.setdefault(k, []).append(v)
    msg = data[off:off + size]
    rcpts = []
    for line in data[off + size:].decode().splitlines():
        if line[:1] in ("R", "D", "B", "F") and " to=" in line:
            rcpts.append((line[0], line.split(" to=", 1)[1].split(" ")[0]))
    return env, msg, rcpts


class RawSMTP:
    """A plain socket client: send bytes exactly, read reply lines."""

    def __init__(self, port, host="127.0.0.1", tls=False, unix=None):
        if unix:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(unix)
        else:
            self.sock = socket.create_connection((host, port),
                                                 timeout=timeout(10))
        self.sock.settimeout(timeout(10))
        if tls:
            self.sock = client_tls().wrap_socket(self.sock)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        """One whole (possibly multi-line) reply: (code, [texts])."""
        texts = []
        while True:
            line = self.line()
            texts.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), texts

    def cmd(self, text):
        self.send(text.encode() + b"\r\n")
        return self.reply()

    def closed(self):
        """True when the server has closed the connection."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, ConnectionResetError):
            return False
        except OSError:
            return True

    def starttls(self):
        self.sock = client_tls().wrap_socket(self.sock)
        self.buf = b""

    def close(self):
        self.sock.close()


def client_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
