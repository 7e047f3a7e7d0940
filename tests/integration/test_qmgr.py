"""qmgr: scheduling, deferral, bounces (RFC 3464), aliases, routing,
recovery and control requests, against a real smtpd and fake delivery
agents that answer as each test dictates."""
import email
import email.policy
import os
import re
import signal
import smtplib
import socket
import threading
import time
import unittest

from pochta_instance import wait_for
from smtp_util import PASSWORD, smtp_instance, queued


def decode(v):
    out = bytearray()
    i = 0
    b = v.encode("latin-1") if isinstance(v, str) else v
    while i < len(b):
        if b[i:i + 1] == b"%" and i + 2 < len(b) + 1:
            out.append(int(b[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(b[i])
            i += 1
    return out.decode("utf-8", "replace")


def encode(s):
    return "".join(f"%{ord(c):02X}" if ord(c) < 0x20 or c in "%\x7f"
                   else c for c in s)


def read_queue_fd(fd):
    data = b""
    while True:
        chunk = os.pread(fd, 65536, len(data))
        if not chunk:
            break
        data += chunk
    head = data.split(b"\n", 1)[0].split()
    off, size = int(head[2]), int(head[3])
    env = {}
    for line in data[:off].decode("utf-8", "replace").splitlines()[1:]:
        k, _, v = line.partition(" ")
        env.setdefault(k, []).append(v)
    return env, data[off:off + size]


class FakeAgent:
    """A delivery agent on spool/private/NAME: policy(rcpt) gives
    (status, text), (status, text, relay) or None to not answer at all.
    raw(request, rcpts), when given, replaces the policy: it returns the
    reply bytes to send, or None to close the connection unanswered."""

    def __init__(self, inst, name, policy=None, raw=None):
        self.raw = raw
        self.path = os.path.join(inst.spool, "private", name)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.policy = policy or (lambda rcpt: ("2.0.0", "delivered"))
        self.delivered = []     # (queue_id, rcpt, nexthop, message bytes)
        self.requests = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(64)
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def close(self):
        self.stop = True
        self.sock.close()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,),
                             daemon=True).start()

    def serve(self, c):
        buf = b""
        fds = []
        try:
            while True:
                while b"\n\n" not in buf and not buf.startswith(b"\n"):
                    data, newfds, _, _ = socket.recv_fds(c, 65536, 4)
                    fds += newfds
                    if not data:
                        return
                    buf += data
                raw, buf = buf.split(b"\n\n", 1)
                attrs = [tuple(l.split(b"=", 1)) for l in raw.split(b"\n")]
                attrs = [(k.decode(), decode(v)) for k, v in attrs]
                fd = fds.pop(0)
                env, msg = read_queue_fd(fd)
                os.close(fd)
                req = dict(attrs)
                reply = ""
                rcpts = []
                for k, v in attrs:
                    if k == "rcpt_index":
                        idx = v
                    elif k == "rcpt":
                        rcpts.append((idx, v))
                with self.lock:
                    self.requests.append((req.get("nexthop"), rcpts))
                if self.raw is not None:
                    out = self.raw(req, rcpts)
                    if out is None:
                        return
                    c.sendall(out)
                    continue
                for idx, rcpt in rcpts:
                    ans = self.policy(rcpt)
                    if ans is None:
                        continue
                    if ans[0].startswith("2"):
                        with self.lock:
                            self.delivered.append(
                                (req["queue_id"], rcpt, req["nexthop"], msg,
                                 env))
                    reply += (f"rcpt_index={idx}\nrcpt={encode(rcpt)}\n"
                              f"status={ans[0]}\ntext={encode(ans[1])}\n")
                    if len(ans) > 2:
                        reply += f"relay={encode(ans[2])}\n"
                if not reply and any(self.policy(r) is None
                                     for _, r in rcpts):
                    time.sleep(30)
                c.sendall(reply.encode() + b"\n")
        except OSError:
            pass
        finally:
            c.close()

    def to(self, rcpt):
        with self.lock:
            return [d for d in self.delivered if d[1] == rcpt]


FAST = dict(qmgr_scan_interval="1s", queue_run_delay="1s",
            minimal_backoff_time="1s", maximal_backoff_time="2s",
            qmgr_delivery_timeout="3s")


class QmgrTest(unittest.TestCase):
    def setUp(self):
        self.inst = None

    def start(self, users=("alice@example.test", "bob@example.test"),
              agents=True, **conf):
        settings = dict(FAST)
        settings.update(conf)
        self.inst = smtp_instance(self, users=users, start=False,
                                  **settings)
        self.inst.enable("qmgr")
        self.local = self.smtp_out = None
        if agents:
            self.local = FakeAgent(self.inst, "local", self.policy)
            self.smtp_out = FakeAgent(self.inst, "smtp-out",
                                      self.remote_policy)
            self.addCleanup(self.local.close)
            self.addCleanup(self.smtp_out.close)
        self.inst.start()
        return self.inst

    answers = {}

    def policy(self, rcpt):
        return self.answers.get(rcpt, ("2.0.0", "delivered to maildir"))

    remote_answers = {}

    def remote_policy(self, rcpt):
        return self.remote_answers.get(rcpt, ("2.0.0", "250 ok"))

    def send(self, sender, rcpts, body="Subject: test\r\n\r\nhello\r\n",
             mail_options=(), rcpt_options=(), auth=False):
        """Send one message; auth logs in as bob so that remote
        recipients are relayed."""
        with smtplib.SMTP("127.0.0.1", self.inst.port("smtp"),
                          timeout=10) as s:
            s.ehlo("client.test")
            if auth:
                s.login("bob@example.test", PASSWORD)
            s.mail(sender, list(mail_options))
            for r in rcpts:
                code, text = s.rcpt(r, list(rcpt_options))
                self.assertEqual(code, 250, text)
            code, text = s.data(body.encode() if isinstance(body, str)
                                else body)
            self.assertEqual(code, 250, text)
            return text.decode().split()[-1]

    def empty(self):
        return all(not queued(self.inst, d) for d in
                   ("incoming", "active", "deferred"))

    def test_delivered_file_removed(self):
        self.start()
        self.send("bob@example.test", ["alice@example.test"])
        wait_for(lambda: self.local.to("alice@example.test"), 10,
                 what="delivery")
        wait_for(self.empty, 10, what="empty queue")
        qid, rcpt, hop, msg, env = self.local.to("alice@example.test")[0]
        self.assertEqual(hop, "local")
        self.assertIn(b"hello", msg)
        self.inst.wait_for_log(r"to=<alice@example\.test>, relay=local, "
                               r"delay=[0-9.]+, .*status=sent")
        self.inst.wait_for_log(qid + ": removed")

    def test_deferred_then_retried(self):
        calls = []

        def pol(rcpt):
            calls.append(rcpt)
            if len(calls) == 1:
                return ("4.2.2", "mailbox busy, try later")
            return ("2.0.0", "delivered to maildir")
        self.policy = pol
        self.start(minimal_backoff_time="2s", maximal_backoff_time="4s")
        self.send("bob@example.test", ["alice@example.test"])
        wait_for(lambda: queued(self.inst, "deferred"), 10,
                 what="deferred file")
        with open(queued(self.inst, "deferred")[0], "rb") as f:
            self.assertIn(b"4.2.2%20mailbox%20busy,%20try%20later",
                          f.read())
        wait_for(lambda: self.local.to("alice@example.test"), 15,
                 what="retry")
        wait_for(self.empty, 10, what="empty queue")
        self.inst.wait_for_log("status=deferred \\(mailbox busy")

    def dsn_to(self, rcpt):
        got = self.local.to(rcpt) + self.smtp_out.to(rcpt)
        self.assertTrue(got)
        _, _, _, raw, env = got[0]
        self.assertEqual(env.get("sender", [""])[0].strip("<>"), "")
        return email.message_from_bytes(raw, policy=email.policy.compat32)

    def test_bounce_dsn(self):
        self.answers = {"alice@example.test":
                        ("5.1.1", "no such user here, sorry")}
        self.start()
        qid = self.send("bob@example.test", ["alice@example.test"],
                        mail_options=["RET=FULL", "ENVID=env42"],
                        rcpt_options=["ORCPT=rfc822;Alice@example.test"])
        wait_for(lambda: self.local.to("bob@example.test"), 10,
                 what="bounce delivered")
        m = self.dsn_to("bob@example.test")
        self.assertEqual(m.get_content_type(), "multipart/report")
        self.assertEqual(m.get_param("report-type"), "delivery-status")
        self.assertIn("MAILER-DAEMON@", m["From"])
        parts = m.get_payload()
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status",
                          "message/rfc822"])
        st = parts[1].get_payload()
        self.assertIn("dns;", st[0]["Reporting-MTA"])
        self.assertEqual(st[0]["Original-Envelope-Id"].strip(), "env42")
        self.assertIsNotNone(st[0]["Arrival-Date"])
        r = st[1]
        self.assertEqual(r["Final-Recipient"].strip(),
                         "rfc822; alice@example.test")
        self.assertIn("Alice@example.test", r["Original-Recipient"])
        self.assertEqual(r["Action"].strip(), "failed")
        self.assertEqual(r["Status"].strip(), "5.1.1")
        self.assertIn("no such user here, sorry",
                      " ".join(r["Diagnostic-Code"].split()))
        orig = parts[2].get_payload()[0]
        self.assertIn("hello", orig.get_payload())
        wait_for(self.empty, 10, what="empty queue")
        self.inst.wait_for_log(qid + r": to=<alice@example\.test>.*"
                               "status=bounced")

    def test_lifetime_expiry_bounces(self):
        self.answers = {"alice@example.test": ("4.2.1", "try again")}
        self.start(maximal_queue_lifetime="3s")
        self.send("bob@example.test", ["alice@example.test"])
        wait_for(lambda: self.local.to("bob@example.test"), 20,
                 what="expiry bounce")
        st = self.dsn_to("bob@example.test").get_payload()[1].get_payload()
        self.assertEqual(st[1]["Status"].strip(), "4.4.7")
        self.assertIn("delivery time expired",
                      " ".join(st[1]["Diagnostic-Code"].split()))
        wait_for(self.empty, 10, what="empty queue")

    def test_notify_success(self):
        self.start()
        self.send("bob@example.test", ["alice@example.test"],
                  rcpt_options=["NOTIFY=SUCCESS"])
        wait_for(lambda: self.local.to("bob@example.test"), 10,
                 what="success notice")
        st = self.dsn_to("bob@example.test").get_payload()[1].get_payload()
        self.assertEqual(st[1]["Action"].strip(), "delivered")
        self.assertEqual(st[1]["Status"].strip(), "2.0.0")

    def test_notify_never_no_bounce(self):
        self.answers = {"alice@example.test": ("5.1.1", "unknown")}
        self.start()
        qid = self.send("bob@example.test", ["alice@example.test"],
                        rcpt_options=["NOTIFY=NEVER"])
        self.inst.wait_for_log(qid + ": removed")
        time.sleep(1.5)
        self.assertEqual(self.local.to("bob@example.test"), [])
        self.assertTrue(self.empty())

    def test_corrupt_file_quarantined(self):
        self.start()
        bad = "1K19Z0W1RQN00SWT0009"
        with open(os.path.join(self.inst.spool, "incoming", bad), "wb") as f:
            f.write(b"pochta-queue 1 garbage\n\x00\xff")
        self.inst.wait_for_log(bad + ": unreadable queue file")
        wait_for(lambda: os.path.exists(os.path.join(
            self.inst.spool, "corrupt", bad)), 10, what="corrupt/")
        # The queue goes on.
        self.send("bob@example.test", ["alice@example.test"])
        wait_for(lambda: self.local.to("alice@example.test"), 10,
                 what="delivery")

    def test_null_sender_never_bounced(self):
        self.answers = {"alice@example.test": ("5.1.1", "unknown")}
        self.start()
        qid = self.send("<>", ["alice@example.test"])
        self.inst.wait_for_log(qid + ": sender is <>")
        wait_for(self.empty, 10, what="empty queue")
        time.sleep(1)
        with self.local.lock:
            self.assertEqual(len(self.local.delivered), 0)

    def test_double_bounce_to_postmaster(self):
        self.answers = {"alice@example.test": ("5.1.1", "unknown user")}
        self.remote_answers = {"carol@remote.test": ("5.7.1", "go away")}
        self.start(myhostname="mx.example.test",
                   mydestination="example.test, mx.example.test")
        self.send("carol@remote.test", ["alice@example.test"])
        # postmaster may itself be an alias (pochta init makes one).
        def double():
            with self.local.lock:
                return [d for d in self.local.delivered if
                        b"To: <postmaster@mx.example.test>" in d[3]]
        wait_for(double, 15, what="double bounce")
        wait_for(self.empty, 10, what="empty queue")
        time.sleep(1)
        self.assertEqual(len(double()), 1)
        self.assertEqual(len(self.smtp_out.requests), 1)

    def build_map(self, name, text, param):
        self.inst.write(name, text)
        self.inst.pochta("map", "build", os.path.join(self.inst.confdir,
                                                      name))
        self.inst.set_conf(**{param: "lmdb:" + os.path.join(
            self.inst.confdir, name)})

    def test_alias_three_targets_and_catchall(self):
        self.start()
        self.build_map("aliases", "team alice, bob@example.test, "
                       "dave@far.test\n", "alias_maps")
        self.build_map("virtual", "@catch.test alice@example.test\n",
                       "virtual_alias_maps")
        self.inst.set_conf(virtual_mailbox_domains="catch.test")
        self.inst.reload()
        time.sleep(1)
        self.send("bob@example.test", ["team@example.test"])
        wait_for(lambda: self.smtp_out.to("dave@far.test"), 10,
                 what="remote target")
        wait_for(lambda: self.local.to("alice@example.test") and
                 self.local.to("bob@example.test"), 10, what="local targets")
        self.assertEqual(self.smtp_out.to("dave@far.test")[0][2], "far.test")
        wait_for(self.empty, 10, what="empty queue")
        # The catch-all: any address in catch.test goes to alice.
        self.send("bob@example.test", ["whoever@catch.test"])
        wait_for(lambda: len(self.local.to("alice@example.test")) == 2, 10,
                 what="catch-all delivery")
        self.assertEqual(self.local.to("whoever@catch.test"), [])
        wait_for(self.empty, 10, what="empty queue")

    def test_agent_missing_deferred(self):
        self.start(agents=False)
        self.send("bob@example.test", ["alice@example.test"])
        wait_for(lambda: queued(self.inst, "deferred"), 10,
                 what="deferred")
        self.inst.wait_for_log("status=deferred.*unavailable")
        # The agent appears: the message goes out on the next retry.
        self.local = FakeAgent(self.inst, "local")
        self.addCleanup(self.local.close)
        wait_for(lambda: self.local.to("alice@example.test"), 15,
                 what="delivery after agent came up")
        wait_for(self.empty, 10, what="empty queue")

    def test_many_messages_exactly_once(self):
        users = [f"u{i}@example.test" for i in range(10)]
        self.start(users=users)
        for n in range(20):
            with smtplib.SMTP("127.0.0.1", self.inst.port("smtp"),
                              timeout=10) as s:
                for k in range(10):
                    s.sendmail("bob@example.test", [users[k]],
                               f"Subject: {n}-{k}\r\n\r\nx\r\n")
        wait_for(lambda: len(self.local.delivered) >= 200, 60,
                 what="200 deliveries")
        wait_for(self.empty, 20, what="empty queue")
        time.sleep(1)
        self.assertEqual(len(self.local.delivered), 200)
        self.assertEqual(len({d[0] for d in self.local.delivered}), 200)
        for u in users:
            self.assertEqual(len(self.local.to(u)), 20)

    def test_destination_concurrency_limit(self):
        state = {"now": 0, "max": 0}
        lock = threading.Lock()

        def pol(rcpt):
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            time.sleep(0.3)
            with lock:
                state["now"] -= 1
            return ("2.0.0", "delivered")
        self.policy = pol
        self.start(local_destination_concurrency_limit="2")
        with smtplib.SMTP("127.0.0.1", self.inst.port("smtp"),
                          timeout=10) as s:
            for n in range(8):
                s.sendmail("bob@example.test", ["alice@example.test"],
                           f"Subject: {n}\r\n\r\nx\r\n")
        wait_for(lambda: len(self.local.delivered) == 8, 20,
                 what="8 deliveries")
        self.assertEqual(state["max"], 2)

    def test_transport_process_and_destination_limits(self):
        lock = threading.Lock()
        state = {"now": 0, "max": 0, "hop": {}, "hopmax": {}}

        def pol(rcpt):
            hop = rcpt.split("@")[1]
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
                state["hop"][hop] = state["hop"].get(hop, 0) + 1
                state["hopmax"][hop] = max(state["hopmax"].get(hop, 0),
                                           state["hop"][hop])
            time.sleep(0.4)
            with lock:
                state["now"] -= 1
                state["hop"][hop] -= 1
            return ("2.0.0", "250 ok")
        self.remote_policy = pol
        self.start(smtp_process_limit="3",
                   smtp_destination_concurrency_limit="1")
        domains = ["a.test", "b.test", "c.test", "d.test", "e.test"]
        with smtplib.SMTP("127.0.0.1", self.inst.port("smtp"),
                          timeout=10) as s:
            s.login("bob@example.test", PASSWORD)
            for n in range(3):
                for d in domains:
                    s.sendmail("bob@example.test", [f"u{n}@{d}"],
                               f"Subject: {n}\r\n\r\nx\r\n")
        wait_for(lambda: len(self.smtp_out.delivered) == 15, 30,
                 what="15 deliveries")
        # smtp_process_limit caps the transport, the destination limit
        # each next hop, and both are reached.
        self.assertEqual(state["max"], 3)
        self.assertEqual(set(state["hopmax"].values()), {1})
        wait_for(self.empty, 10, what="empty queue")

    def test_kill_mid_delivery_recovers(self):
        hang = {"on": True}

        def pol(rcpt):
            return None if hang["on"] else ("2.0.0", "delivered")
        self.policy = pol
        self.start(qmgr_delivery_timeout="60s")
        ids = [self.send("bob@example.test", ["alice@example.test"])
               for _ in range(5)]
        wait_for(lambda: len(queued(self.inst, "active")) == 5, 10,
                 what="all active")
        m = re.search(r"pochta/qmgr\[(\d+)\]", self.inst.log())
        pid = int(m.group(1))
        hang["on"] = False
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len({d[0] for d in self.local.delivered}) == 5, 30,
                 what="all delivered after restart")
        self.assertEqual({d[0] for d in self.local.delivered}, set(ids))
        wait_for(self.empty, 10, what="empty queue")

    def ctl(self, **attrs):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(os.path.join(self.inst.spool, "private", "qmgr"))
        s.sendall("".join(f"{k}={v}\n" for k, v in attrs.items()).encode()
                  + b"\n")
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        return dict(l.split("=", 1) for l in data.decode().split("\n") if l)

    def test_control_requests(self):
        self.answers = {"alice@example.test": ("4.2.1", "later")}
        self.start(minimal_backoff_time="1h", maximal_backoff_time="2h")
        qid = self.send("bob@example.test", ["alice@example.test"])
        wait_for(lambda: queued(self.inst, "deferred"), 10, what="deferred")
        r = self.ctl(request="hold", queue_id=qid)
        self.assertEqual(r["status"], "2.0.0")
        self.assertEqual(len(queued(self.inst, "hold")), 1)
        r = self.ctl(request="release", queue_id=qid)
        self.assertEqual(r["status"], "2.0.0")
        wait_for(lambda: queued(self.inst, "deferred"), 10,
                 what="deferred again")
        self.answers = {}
        r = self.ctl(request="flush")
        self.assertEqual(r["status"], "2.0.0")
        wait_for(lambda: self.local.to("alice@example.test"), 10,
                 what="flushed delivery")
        wait_for(self.empty, 10, what="empty queue")
        # delete and requeue
        self.answers = {"alice@example.test": ("4.2.1", "later")}
        qid = self.send("bob@example.test", ["alice@example.test"])
        wait_for(lambda: queued(self.inst, "deferred"), 10, what="deferred")
        r = self.ctl(request="requeue", queue_id=qid)
        self.assertEqual(r["status"], "2.0.0")
        wait_for(lambda: len(self.local.requests) >= 3, 10, what="requeued")
        wait_for(lambda: queued(self.inst, "deferred"), 10, what="deferred")
        r = self.ctl(request="delete", queue_id=qid)
        self.assertEqual(r["status"], "2.0.0")
        wait_for(self.empty, 5, what="deleted")
        r = self.ctl(request="delete", queue_id="ZZZZ")
        self.assertTrue(r["status"].startswith("5"))
        r = self.ctl(request="bogus")
        self.assertTrue(r["status"].startswith("5"))

    # -- relay= in agent replies, delay warnings --------------------------
    def statuses(self, rcpt):
        """The per-recipient groups of the DSN delivered to rcpt, by
        Final-Recipient address."""
        st = self.dsn_to(rcpt).get_payload()[1].get_payload()
        return {g["Final-Recipient"].split(";")[1].strip(): g
                for g in st[1:]}

    def test_relay_attribute_in_log_and_dsn(self):
        mx = "mx1.remote.test[127.0.0.5]:25"
        self.remote_answers = {
            "carol@remote.test": ("5.7.1", "550 5.7.1 go away", mx),
            "dave@remote.test": ("2.0.0", "250 ok", mx),
            "erin@other.test": ("5.1.1", "550 no such user")}
        self.start()
        qid = self.send("bob@example.test", ["carol@remote.test",
                        "dave@remote.test", "erin@other.test"], auth=True)
        wait_for(lambda: self.local.to("bob@example.test"), 10,
                 what="bounce")
        self.inst.wait_for_log(
            qid + r": to=<dave@remote\.test>, relay=mx1\.remote\.test"
            r"\[127\.0\.0\.5\]:25, delay=[0-9.]+, dsn=2\.0\.0, "
            r"status=sent \(250 ok\)$")
        self.inst.wait_for_log(
            qid + r": to=<erin@other\.test>, relay=other\.test, "
            r"delay=[0-9.]+, dsn=5\.1\.1, status=bounced")
        groups = self.statuses("bob@example.test")
        self.assertEqual(set(groups), {"carol@remote.test",
                                       "erin@other.test"})
        self.assertEqual(groups["carol@remote.test"]["Remote-MTA"].strip(),
                         "dns; mx1.remote.test")
        # Without relay= the next hop is the remote MTA.
        self.assertEqual(groups["erin@other.test"]["Remote-MTA"].strip(),
                         "dns; other.test")
        wait_for(self.empty, 10, what="empty queue")

    def delay_notices(self):
        with self.local.lock:
            return [d for d in self.local.delivered
                    if d[1] == "bob@example.test" and
                    b"Action: delayed" in d[3]]

    def test_delay_warning_once(self):
        self.answers = {"alice@example.test": ("4.2.1", "mailbox busy")}
        self.start(delay_warning_time="2s")
        q1 = self.send("bob@example.test", ["alice@example.test"],
                       body="Subject: m1\r\n\r\nx\r\n")
        # No DELAY in the NOTIFY list, NOTIFY=NEVER, and the null sender:
        # no warning for these.
        self.send("bob@example.test", ["alice@example.test"],
                  body="Subject: m2\r\n\r\nx\r\n",
                  rcpt_options=["NOTIFY=FAILURE"])
        self.send("bob@example.test", ["alice@example.test"],
                  body="Subject: m3\r\n\r\nx\r\n",
                  rcpt_options=["NOTIFY=NEVER"])
        self.send("<>", ["alice@example.test"],
                  body="Subject: m4\r\n\r\nx\r\n")
        wait_for(self.delay_notices, 15, what="delay warning")
        self.inst.wait_for_log(q1 + ": sender delay notification: ")
        # Several more retries, and a restart of qmgr: still one warning.
        time.sleep(4)
        pid = int(re.findall(r"pochta/qmgr\[(\d+)\]", self.inst.log())[-1])
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(set(re.findall(r"pochta/qmgr\[(\d+)\]",
                                            self.inst.log()))) > 1, 20,
                 what="qmgr restarted")
        time.sleep(5)
        notices = self.delay_notices()
        self.assertEqual(len(notices), 1)
        m = email.message_from_bytes(notices[0][3],
                                     policy=email.policy.compat32)
        self.assertTrue(m["Subject"].startswith("Delayed Mail"))
        st = m.get_payload()[1].get_payload()
        self.assertEqual(st[0]["X-Pochta-Queue-ID"].strip(), q1)
        self.assertEqual(len(st), 2)
        g = st[1]
        self.assertEqual(g["Final-Recipient"].strip(),
                         "rfc822; alice@example.test")
        self.assertEqual(g["Action"].strip(), "delayed")
        self.assertEqual(g["Status"].strip(), "4.2.1")
        self.assertIn("mailbox busy", g["Diagnostic-Code"])
        self.assertIsNotNone(g["Will-Retry-Until"])
        # The messages are still queued, being retried.
        self.assertEqual(len(queued(self.inst, "deferred")) +
                         len(queued(self.inst, "active")), 4)

    # -- routing ----------------------------------------------------------
    def test_route_relayhost(self):
        self.start(relayhost="[relay.test]:2525")
        self.send("bob@example.test", ["dave@far.test",
                                       "alice@example.test"], auth=True)
        wait_for(lambda: self.smtp_out.to("dave@far.test") and
                 self.local.to("alice@example.test"), 10, what="delivery")
        self.assertEqual(self.smtp_out.to("dave@far.test")[0][2],
                         "[relay.test]:2525")
        # Our own domains ignore the relayhost.
        self.assertEqual(self.local.to("alice@example.test")[0][2], "local")
        self.assertEqual(self.smtp_out.to("alice@example.test"), [])
        self.inst.wait_for_log(r"to=<dave@far\.test>, relay=\[relay\.test\]"
                               r":2525, delay=")
        wait_for(self.empty, 10, what="empty queue")

    def test_route_transport_maps(self):
        self.start(relayhost="relay.test")
        self.build_map("transport", "far.test smtp:[127.0.0.9]:2526\n"
                       "localish.test local\n"
                       "special@far.test smtp:[special.test]\n",
                       "transport_maps")
        self.inst.reload()
        time.sleep(1)
        self.send("bob@example.test", ["x@far.test", "special@far.test",
                                       "y@localish.test", "z@else.test"],
                  auth=True)
        wait_for(lambda: self.smtp_out.to("x@far.test") and
                 self.smtp_out.to("special@far.test") and
                 self.smtp_out.to("z@else.test") and
                 self.local.to("y@localish.test"), 10, what="deliveries")
        self.assertEqual(self.smtp_out.to("x@far.test")[0][2],
                         "[127.0.0.9]:2526")
        # A per-address entry wins over its domain's.
        self.assertEqual(self.smtp_out.to("special@far.test")[0][2],
                         "[special.test]")
        self.assertEqual(self.local.to("y@localish.test")[0][2], "local")
        # No entry: the relayhost.
        self.assertEqual(self.smtp_out.to("z@else.test")[0][2],
                         "relay.test")
        # One request per (transport, next hop).
        self.assertEqual(sorted(h for h, _ in self.smtp_out.requests),
                         ["[127.0.0.9]:2526", "[special.test]",
                          "relay.test"])
        wait_for(self.empty, 10, what="empty queue")

    # -- agents that misbehave --------------------------------------------
    def raw_local(self, raw):
        """Replace the local agent by one answering through raw."""
        self.local.close()
        self.local = FakeAgent(self.inst, "local", self.policy, raw=raw)
        self.addCleanup(self.local.close)

    def ok_reply(self, rcpts):
        return "".join(f"rcpt_index={i}\nrcpt={encode(r)}\nstatus=2.0.0\n"
                       f"text=delivered\n" for i, r in rcpts).encode() + \
            b"\n"

    def test_hung_agent_deferred_then_delivered(self):
        calls = []

        def raw(req, rcpts):
            calls.append(req["queue_id"])
            if len(calls) == 1:
                time.sleep(15)      # accepts, never answers in time
                return None
            return self.ok_reply(rcpts)
        self.start(qmgr_delivery_timeout="2s")
        self.raw_local(raw)
        qid = self.send("bob@example.test", ["alice@example.test"])
        self.inst.wait_for_log(
            qid + r": to=<alice@example\.test>, relay=local, delay=[0-9.]+, "
            r"dsn=4\.4\.0, status=deferred \(delivery agent did not answer "
            r"in time\)", 10)
        self.inst.wait_for_log(qid + r": to=<alice@example\.test>, "
                               r"relay=local, .*status=sent", 15)
        wait_for(self.empty, 10, what="empty queue")
        self.assertEqual(len(calls), 2)

    def test_agent_closes_mid_request(self):
        calls = []

        def raw(req, rcpts):
            calls.append(req["queue_id"])
            return None if len(calls) == 1 else self.ok_reply(rcpts)
        self.start()
        self.raw_local(raw)
        qid = self.send("bob@example.test", ["alice@example.test"])
        self.inst.wait_for_log(
            qid + r": to=<alice@example\.test>, relay=local, .*dsn=4\.4\.0, "
            r"status=deferred \(delivery agent local failed", 10)
        self.inst.wait_for_log(qid + r": to=<alice@example\.test>, "
                               r"relay=local, .*status=sent", 15)
        wait_for(self.empty, 10, what="empty queue")

    def test_agent_garbage_replies(self):
        garbage = [
            # Unknown status class, a status that is no status, an index
            # nobody asked for.
            lambda r: (f"rcpt_index={r[0][0]}\nstatus=9.9.9\ntext=x\n"
                       f"rcpt_index={r[1][0]}\nstatus=delivered\n"
                       f"rcpt_index=77\nstatus=2.0.0\n\n").encode(),
            # The same index twice (with different answers).
            lambda r: "".join(f"rcpt_index={i}\nstatus=2.0.0\ntext=a\n"
                              f"rcpt_index={i}\nstatus=5.0.0\ntext=b\n"
                              for i, _ in r).encode() + b"\n",
            # Not the protocol at all.
            lambda r: b"\x00\xff garbage without equals sign\n\n",
        ]
        calls = []

        def raw(req, rcpts):
            calls.append(req["queue_id"])
            if len(calls) <= len(garbage):
                return garbage[len(calls) - 1](rcpts)
            return self.ok_reply(rcpts)
        self.start()
        self.raw_local(raw)
        qid = self.send("bob@example.test", ["alice@example.test",
                                             "bob@example.test"])
        wait_for(lambda: len(calls) > len(garbage), 20,
                 what="retries past the garbage")
        wait_for(self.empty, 10, what="empty queue")
        log = self.inst.log()
        for rcpt in ("alice", "bob"):
            deferred = re.findall(qid + rf": to=<{rcpt}@example\.test>, "
                                  r"relay=local, .*status=deferred", log)
            self.assertEqual(len(deferred), len(garbage))
            sent = re.findall(qid + rf": to=<{rcpt}@example\.test>, "
                              r"relay=local, .*status=sent", log)
            self.assertEqual(len(sent), 1)
        self.assertNotRegex(log, qid + ".*status=bounced")
        self.assertIn("gave no valid answer", log)
        self.assertTrue(self.inst.status_ok())


class QmgrLocalDeliverTest(unittest.TestCase):
    """End to end with the real local-deliver: smtpd -> qmgr ->
    local-deliver -> the user's mail store; unknown users bounce."""

    def test_end_to_end(self):
        inst = smtp_instance(self, start=False, **FAST)
        if not os.path.exists(inst.bin("local-deliver")):
            self.fail("local-deliver not built")
        inst.enable("qmgr", "local")
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.port("smtp"), timeout=10) as s:
            s.sendmail("bob@example.test", ["alice@example.test"],
                       b"Subject: e2e\r\n\r\nend to end body\r\n")
        store = os.path.join(inst.dir, "mail")

        def found(word):
            for root, _, files in os.walk(store):
                for f in files:
                    with open(os.path.join(root, f), "rb") as fh:
                        if word in fh.read():
                            return os.path.join(root, f)
            return None
        wait_for(lambda: found(b"end to end body"), 15, what="maildir")
        self.assertIn("alice", found(b"end to end body"))
        wait_for(lambda: all(not queued(inst, d) for d in
                             ("incoming", "active", "deferred")), 10,
                 what="empty queue")
        inst.wait_for_log(r"to=<alice@example\.test>, relay=local, "
                          r"delay=[0-9.]+, dsn=2\.\d\.\d, status=sent")


if __name__ == "__main__":
    unittest.main()
