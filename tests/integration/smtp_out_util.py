"""Helpers for smtp-out tests: instances listening on chosen loopback
addresses with a fake DNS server, and a scriptable SMTP server in Python
standing in for remote MTAs (friendly, failing or hostile)."""
import os
import socket
import socketserver
import ssl
import threading
import time

from pochta_instance import Instance, free_port, timeout, wait_for
from smtp_util import PASSWORD

# Retries within seconds; short SMTP timeouts so a silent server is seen.
FAST = dict(qmgr_scan_interval="1s", queue_run_delay="1s",
            minimal_backoff_time="1s", maximal_backoff_time="2s",
            qmgr_delivery_timeout="20s", smtpd_peername_lookup="no",
            smtp_helo_timeout="3s", smtp_mail_timeout="3s",
            smtp_rcpt_timeout="3s", smtp_data_init_timeout="3s",
            smtp_data_xfer_timeout="3s", smtp_data_done_timeout="3s",
            smtp_connect_timeout="3s")


def instance(testcase, listen, domain, dns, users=(), **conf):
    """An instance on address listen for domain, with qmgr, local and
    smtp-out, DNS from dns (a started fakedns.FakeDNS) and the users (all
    with PASSWORD). Not started."""
    inst = Instance(testcase, domain=domain, init=False)
    inst.pochta("init", inst.dir, "--listen", listen, "--port-base",
                str(inst.port_base), "--domain", domain, "--force",
                confdir=False)
    inst.listen = listen
    settings = dict(FAST, dns_servers=dns.servers)
    settings.update(conf)
    inst.set_conf(**settings)
    inst.enable("qmgr", "local", "smtp-out")
    for user in users:
        inst.pochta("user", "add", user, "--password-stdin",
                    input=PASSWORD + "\n")
    return inst


def start(inst):
    inst.start()
    for name in ("qmgr", "local", "smtp-out"):
        path = os.path.join(inst.spool, "private", name)
        wait_for(lambda: os.path.exists(path), 15, what=f"{name} socket")


class Handler(socketserver.StreamRequestHandler):
    """One SMTP session, driven by the server's script (FakeSMTP)."""

    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def readline(self):
        line = self.rfile.readline(65536)
        if not line:
            raise EOFError
        return line.decode("utf-8", "replace").rstrip("\r\n")

    def handle(self):
        srv = self.server.fake
        with srv.lock:
            srv.connections += 1
            conn_no = srv.connections
        try:
            if srv.greeting(self, conn_no) is False:
                return
            self.session(srv, conn_no)
        except (EOFError, OSError, ssl.SSLError):
            pass

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.close()

    def session(self, srv, conn_no):
        tls = False
        authed = False
        env = None
        while True:
            line = self.readline()
            verb = line[:4].upper()
            srv.commands.append(line)
            if verb == "EHLO" and not srv.esmtp:
                self.reply("502 5.5.1 what is EHLO?")
            elif verb in ("EHLO", "HELO"):
                caps = ["fake.test"] + list(srv.caps)
                if srv.tls_ctx is not None and not tls:
                    caps.append("STARTTLS")
                if srv.auth and tls:
                    caps.append("AUTH PLAIN LOGIN")
                if verb == "HELO":
                    self.reply("250 fake.test")
                    continue
                for c in caps[:-1]:
                    self.reply("250-" + c)
                self.reply("250 " + caps[-1])
            elif verb == "STAR":
                self.reply("220 go ahead")
                if srv.broken_tls:
                    self.wfile.write(b"this is not a TLS record\r\n" * 8)
                    self.wfile.flush()
                    return
                sock = srv.tls_ctx.wrap_socket(self.connection,
                                               server_side=True)
                self.connection = sock
                self.rfile = sock.makefile("rb")
                self.wfile = sock.makefile("wb")
                tls = True
            elif verb == "AUTH":
                authed = self.auth(srv, line)
            elif verb == "MAIL":
                if srv.auth and not authed:
                    self.reply("530 5.7.0 authentication required")
                    continue
                env = {"from": line, "rcpts": [], "tls": tls}
                self.reply("250 2.1.0 ok")
            elif verb == "RCPT":
                r = srv.rcpt(env, line, conn_no)
                if r.startswith("250"):
                    env["rcpts"].append(line)
                self.reply(r)
            elif verb == "DATA":
                if not env or not env["rcpts"]:
                    self.reply("503 5.5.1 no recipients")
                    continue
                self.reply("354 go")
                data = []
                while True:
                    l = self.readline()
                    if l == ".":
                        break
                    data.append(l)
                    if srv.close_mid_data:
                        return
                env["data"] = "\r\n".join(data)
                r = srv.data_reply(env, conn_no)
                if r.startswith("250"):
                    with srv.lock:
                        srv.messages.append(env)
                self.reply(r)
                env = None
            elif verb == "RSET":
                env = None
                self.reply("250 2.0.0 ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 bye")
                return
            else:
                self.reply("250 2.0.0 ok")

    def auth(self, srv, line):
        import base64
        parts = line.split()
        if parts[1].upper() == "PLAIN":
            creds = base64.b64decode(parts[2]).split(b"\0")
            user, pw = creds[1].decode(), creds[2].decode()
        else:
            user = base64.b64decode(parts[2]).decode()
            self.reply("334 UGFzc3dvcmQ6")
            pw = base64.b64decode(self.readline()).decode()
        srv.auth_tries.append((parts[1].upper(), user, pw))
        if (user, pw) == srv.auth:
            self.reply("235 2.7.0 ok")
            return True
        self.reply("535 5.7.8 bad credentials")
        return False


class Server6(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6


class FakeSMTP:
    """A scriptable SMTP server on addr:port (port 0: a free one).
    Override greeting/rcpt/data_reply by passing callables."""

    def __init__(self, addr, port=0, caps=("PIPELINING", "8BITMIME",
                 "ENHANCEDSTATUSCODES"), tls_files=None, auth=None,
                 rcpt=None, data=None, greeting=None, close_mid_data=False,
                 broken_tls=False, esmtp=True):
        self.addr = addr
        self.caps = list(caps)
        self.lock = threading.Lock()
        self.connections = 0
        self.messages = []
        self.commands = []
        self.auth_tries = []
        self.auth = auth
        self.close_mid_data = close_mid_data
        self.broken_tls = broken_tls
        self.esmtp = esmtp
        self.tls_ctx = None
        if tls_files:
            self.tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_ctx.load_cert_chain(*tls_files)
        self._rcpt = rcpt
        self._data = data
        self._greeting = greeting
        cls = (Server6 if ":" in addr else socketserver.ThreadingTCPServer)
        cls.allow_reuse_address = True
        self.server = cls((addr, port), Handler)
        self.server.daemon_threads = True
        self.server.fake = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def greeting(self, h, conn_no):
        if self._greeting is not None:
            return self._greeting(h, conn_no)
        h.reply("220 fake.test ESMTP")
        return True

    def rcpt(self, env, line, conn_no):
        if self._rcpt is not None:
            return self._rcpt(env, line, conn_no)
        return "250 2.1.5 ok"

    def data_reply(self, env, conn_no):
        if self._data is not None:
            return self._data(env, conn_no)
        return "250 2.0.0 queued as FAKE%d" % len(self.messages)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def fake(testcase, *args, **kw):
    f = FakeSMTP(*args, **kw)
    testcase.addCleanup(f.stop)
    return f


def submit(inst, sender, rcpts, subject, body="hello\r\n", extra="",
           args=()):
    """Queue a message on inst with its sendmail command (and args)."""
    import subprocess
    msg = (f"From: <{sender}>\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject}@test>\r\n{extra}\r\n{body}")
    p = subprocess.run([inst.bin("sendmail"), "-C", inst.confdir, "-f",
                        sender] + list(args) + list(rcpts),
                       input=msg.encode(),
                       capture_output=True, timeout=timeout(30))
    assert p.returncode == 0, p.stderr


def mailbox(inst, user, domain):
    """The messages (bytes) in user@domain's Maildir new/."""
    d = os.path.join(inst.dir, "mail", domain, user, "new")
    out = []
    if os.path.isdir(d):
        for f in sorted(os.listdir(d)):
            with open(os.path.join(d, f), "rb") as fh:
                out.append(fh.read())
    return out


def wait_mail(inst, user, domain, n=1, secs=30):
    return wait_for(lambda: len(mailbox(inst, user, domain)) >= n and
                    mailbox(inst, user, domain), secs,
                    what=f"{n} message(s) for {user}@{domain}")


def queue_files(inst, queue):
    d = os.path.join(inst.spool, queue)
    return [os.path.join(d, f) for f in os.listdir(d)] \
        if os.path.isdir(d) else []


def dsn_report(data):
    """(action, status, diagnostic, remote MTA) from a DSN's
    message/delivery-status part, parsed with the email package."""
    import email
    import email.policy
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            rcpt = blocks[-1]
            return (rcpt.get("Action"), rcpt.get("Status"),
                    rcpt.get("Diagnostic-Code"), rcpt.get("Remote-MTA"))
    return None
