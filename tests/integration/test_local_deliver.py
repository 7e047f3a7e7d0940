"""local-deliver against a running instance: mail accepted by smtpd lands in
spool/incoming/, and the test plays qmgr, sending delivery requests with the
queue file attached to spool/private/local (pochta-local-deliver(8))."""
import glob
import os
import signal
import smtplib
import socket
import time
import unittest

from pochta_instance import timeout, wait_for, pid_alive
from smtp_util import smtp_instance, wait_queued, parse_queue_file, PASSWORD

DOMAIN = "example.test"


class Agent:
    """A qmgr-side connection to local-deliver."""

    def __init__(self, inst):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout(20))
        self.sock.connect(os.path.join(inst.spool, "private", "local"))
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, attrs, path=None, raw=None):
        data = raw if raw is not None else "".join(
            f"{k}={v}\n" for k, v in attrs).encode() + b"\n"
        if path is None:
            self.sock.sendall(data)
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            n = socket.send_fds(self.sock, [data[:1]], [fd])
            assert n == 1
            self.sock.sendall(data[1:])
        finally:
            os.close(fd)

    def reply(self):
        """One reply as a list of (name, value), or None at EOF."""
        while b"\n\n" not in self.buf and not self.buf.startswith(b"\n"):
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\n\n")
        out = []
        for line in msg.decode().split("\n"):
            k, _, v = line.partition("=")
            out.append((k, v))
        return out


def groups(reply):
    """Per-recipient dicts of a reply."""
    out = []
    for k, v in reply:
        if k == "rcpt_index":
            out.append({})
        out[-1][k] = v
    return out


class LocalDeliverTest(unittest.TestCase):

    def instance(self, users=("alice@" + DOMAIN, "bob@" + DOMAIN),
                 **conf):
        inst = smtp_instance(self, users=users, start=False, **conf)
        inst.pochta("user", "add", "small@" + DOMAIN, "--quota", "1k",
                    "--password-stdin", input=PASSWORD + "\n")
        inst.enable("local")
        inst.start()
        sock = os.path.join(inst.spool, "private", "local")
        wait_for(lambda: os.path.exists(sock), 15, what="local socket")
        self.inst = inst
        self.addCleanup(self.check_clean_exit)
        return inst

    def check_clean_exit(self):
        """Stop the instance and check that local-deliver never crashed
        (under sanitizers a leak or an error is an exit status 1)."""
        self.inst.stop(check=False)
        bad = [l for l in self.inst.log().splitlines()
               if "service local:" in l and
               ("exited with status" in l or "killed by signal" in l)
               and "signal 9" not in l and "status 0" not in l]
        self.assertIn("service local: worker", self.inst.log())
        self.assertEqual(bad, [])

    def maildir(self, user, folder=""):
        base = os.path.join(self.inst.dir, "mail", DOMAIN, user)
        conf = self.inst.read("pochta.conf")
        for line in conf.splitlines():
            if line.replace(" ", "").startswith("mail_directory="):
                base = os.path.join(line.split("=", 1)[1].strip(), DOMAIN,
                                    user)
        return os.path.join(base, folder) if folder else base

    def new_files(self, user, folder=""):
        return sorted(glob.glob(os.path.join(self.maildir(user, folder),
                                             "new", "*")))

    def queue(self, rcpts, body="Subject: test\r\n\r\nhello\r\n",
              sender="sender@remote.test"):
        before = len(glob.glob(os.path.join(self.inst.spool, "incoming",
                                            "*")))
        s = smtplib.SMTP("127.0.0.1", self.inst.port("smtp"),
                         timeout=timeout(10))
        try:
            s.sendmail(sender, rcpts, body.encode())
        finally:
            s.close()
        files = wait_queued(self.inst, before + 1)
        self.assertEqual(len(files), before + 1)
        newest = max(files, key=os.path.getmtime)
        return newest

    def agent(self):
        a = Agent(self.inst)
        self.addCleanup(a.close)
        return a

    def request(self, path, rcpts=None, extra=()):
        env, msg, recs = parse_queue_file(path)
        qid = os.path.basename(path)
        attrs = [("request", "deliver"), ("queue_id", qid),
                 ("nexthop", "local")]
        for i, (_, addr) in enumerate(recs):
            if rcpts is None or addr in rcpts:
                attrs += [("rcpt_index", i), ("rcpt", addr)]
        return attrs + list(extra), msg, env

    def deliver(self, path, rcpts=None):
        attrs, msg, env = self.request(path, rcpts)
        a = self.agent()
        a.send(attrs, path)
        reply = a.reply()
        self.assertIsNotNone(reply, "connection closed without reply")
        return groups(reply), msg, env

    def expected(self, msg, sender, rcpt):
        return (f"Return-Path: <{sender}>\r\nDelivered-To: {rcpt}\r\n"
                .encode() + msg)

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    # -- tests -------------------------------------------------------------
    def test_delivery_exact_message(self):
        self.instance()
        path = self.queue(["alice@" + DOMAIN])
        res, msg, env = self.deliver(path)
        self.assertEqual(len(res), 1)
        self.assertEqual(res[0]["status"], "2.0.0")
        self.assertEqual(res[0]["rcpt"], "alice@" + DOMAIN)
        self.assertEqual(res[0]["rcpt_index"], "0")
        files = self.new_files("alice")
        self.assertEqual(len(files), 1)
        self.assertEqual(self.read(files[0]),
                         self.expected(msg, "sender@remote.test",
                                       "alice@" + DOMAIN))
        self.assertIn(b"hello", self.read(files[0]))
        self.assertEqual(os.listdir(os.path.join(self.maildir("alice"),
                                                 "tmp")), [])
        self.inst.wait_for_log(
            rf"{os.path.basename(path)}: to=<alice@{DOMAIN}>, "
            r"relay=local, delay=[0-9.]+, .*status=sent "
            r"\(delivered to maildir\)")

    def test_two_recipients_and_pipelined_requests(self):
        self.instance()
        path = self.queue(["alice@" + DOMAIN, "bob@" + DOMAIN])
        res, msg, env = self.deliver(path)
        self.assertEqual([r["status"] for r in res], ["2.0.0", "2.0.0"])
        self.assertEqual([r["rcpt"] for r in res],
                         ["alice@" + DOMAIN, "bob@" + DOMAIN])
        for user in ("alice", "bob"):
            files = self.new_files(user)
            self.assertEqual(len(files), 1)
            self.assertEqual(self.read(files[0]), self.expected(
                msg, "sender@remote.test", f"{user}@{DOMAIN}"))
        # Two requests on one connection are answered in order.
        a = self.agent()
        for who in ("bob@" + DOMAIN, "alice@" + DOMAIN):
            attrs, _, _ = self.request(path, [who])
            a.send(attrs, path)
        got = [groups(a.reply())[0]["rcpt"] for _ in range(2)]
        self.assertEqual(got, ["bob@" + DOMAIN, "alice@" + DOMAIN])
        self.assertEqual(len(self.new_files("alice")), 2)

    def test_many_concurrent_requests(self):
        self.instance()
        path = self.queue(["alice@" + DOMAIN, "bob@" + DOMAIN])
        attrs, msg, _ = self.request(path)
        agents = [self.agent() for _ in range(20)]
        for a in agents:
            a.send(attrs, path)
        for a in agents:
            res = groups(a.reply())
            self.assertEqual([r["status"] for r in res], ["2.0.0", "2.0.0"])
        for user in ("alice", "bob"):
            files = self.new_files(user)
            self.assertEqual(len(files), 20)
            want = self.expected(msg, "sender@remote.test",
                                 f"{user}@{DOMAIN}")
            for f in files:
                self.assertEqual(self.read(f), want)

    def test_unknown_user_bounces_5_1_1(self):
        self.instance()
        path = self.queue(["alice@" + DOMAIN, "bob@" + DOMAIN])
        # bob disappears between acceptance and delivery.
        self.inst.pochta("user", "del", "bob@" + DOMAIN)
        # Readers notice a rebuilt table within a second (pochta-maps(5)).
        time.sleep(1.5)
        res, _, _ = self.deliver(path)
        self.assertEqual([r["status"] for r in res], ["2.0.0", "5.1.1"])
        self.assertEqual(self.new_files("bob"), [])
        self.inst.wait_for_log(rf"to=<bob@{DOMAIN}>, relay=local, .*"
                               r"status=bounced \(no such user\)")

    def test_plus_address_without_folders_goes_to_inbox(self):
        self.instance()
        path = self.queue(["alice+lists@" + DOMAIN])
        res, msg, _ = self.deliver(path)
        self.assertEqual(res[0]["status"], "2.0.0")
        files = self.new_files("alice")
        self.assertEqual(len(files), 1)
        self.assertEqual(self.read(files[0]), self.expected(
            msg, "sender@remote.test", "alice+lists@" + DOMAIN))

    def test_plus_address_into_existing_folder(self):
        self.instance(local_plus_folders="yes")
        # No folder yet: INBOX, and no folder is created.
        path = self.queue(["alice+lists@" + DOMAIN])
        res, _, _ = self.deliver(path)
        self.assertEqual(res[0]["status"], "2.0.0")
        self.assertEqual(len(self.new_files("alice")), 1)
        self.assertFalse(os.path.exists(self.maildir("alice", ".lists")))
        folder = self.maildir("alice", ".lists")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(folder, sub))
        open(os.path.join(folder, "maildirfolder"), "w").close()
        path = self.queue(["alice+lists@" + DOMAIN])
        res, msg, _ = self.deliver(path)
        self.assertEqual(res[0]["status"], "2.0.0")
        self.assertIn("lists", res[0]["text"])
        files = self.new_files("alice", ".lists")
        self.assertEqual(len(files), 1)
        self.assertEqual(self.read(files[0]), self.expected(
            msg, "sender@remote.test", "alice+lists@" + DOMAIN))
        self.assertEqual(len(self.new_files("alice")), 1)

    def big(self):
        return "Subject: big\r\n\r\n" + ("x" * 70 + "\r\n") * 40

    def test_quota_defers_4_2_2(self):
        self.instance()
        path = self.queue(["small@" + DOMAIN], body=self.big())
        res, _, _ = self.deliver(path)
        self.assertEqual(res[0]["status"], "4.2.2")
        self.assertEqual(self.new_files("small"), [])
        self.inst.wait_for_log(rf"to=<small@{DOMAIN}>, .*"
                               r"status=deferred \(mailbox full\)")
        # A reload switches to bouncing without a restart.
        self.inst.set_conf(local_quota_bounce="yes")
        self.inst.reload()
        self.inst.wait_for_log(r"local-deliver\[\d+\]: .*reload", 10)
        res, _, _ = self.deliver(path)
        self.assertEqual(res[0]["status"], "5.2.2")

    def test_quota_bounce_5_2_2(self):
        self.instance(local_quota_bounce="yes")
        path = self.queue(["small@" + DOMAIN], body=self.big())
        res, _, _ = self.deliver(path)
        self.assertEqual(res[0]["status"], "5.2.2")
        self.assertEqual(self.new_files("small"), [])

    def test_delivered_to_loop_5_4_6(self):
        self.instance()
        body = ("Delivered-To: other@" + DOMAIN + "\r\n"
                "Delivered-To:\r\n <ALICE@Example.Test>\r\n"
                "Subject: loop\r\n\r\nDelivered-To: bob@" + DOMAIN + "\r\n")
        path = self.queue(["alice@" + DOMAIN, "bob@" + DOMAIN], body=body)
        res, _, _ = self.deliver(path)
        # The header names alice; bob only appears in the body.
        self.assertEqual([r["status"] for r in res], ["5.4.6", "2.0.0"])
        self.assertIn("loop", res[0]["text"])
        self.assertEqual(self.new_files("alice"), [])
        self.assertEqual(len(self.new_files("bob")), 1)

    def test_unwritable_mailbox_defers(self):
        self.instance()
        path = self.queue(["alice@" + DOMAIN])
        mbox = self.maildir("alice")
        if os.geteuid() == 0:
            # root ignores modes: make the mailbox a regular file.
            if os.path.isdir(mbox):
                import shutil
                shutil.rmtree(mbox)
            os.makedirs(os.path.dirname(mbox), exist_ok=True)
            with open(mbox, "w") as f:
                f.write("not a directory")
        else:
            res, _, _ = self.deliver(path)   # creates the Maildir
            self.assertEqual(res[0]["status"], "2.0.0")
            for f in self.new_files("alice"):
                os.unlink(f)
            os.chmod(os.path.join(mbox, "new"), 0o500)
            self.addCleanup(os.chmod, os.path.join(mbox, "new"), 0o700)
        res, _, _ = self.deliver(path)
        self.assertEqual(res[0]["status"][:2], "4.")
        if os.path.isdir(mbox):
            self.assertEqual(self.new_files("alice"), [])
            self.assertEqual(os.listdir(os.path.join(mbox, "tmp")), [])
        # The agent is still serving.
        bob = self.queue(["bob@" + DOMAIN])
        res, _, _ = self.deliver(bob)
        self.assertEqual(res[0]["status"], "2.0.0")

    def test_bad_requests_get_clean_errors(self):
        self.instance()
        path = self.queue(["alice@" + DOMAIN])
        qid = os.path.basename(path)
        a = self.agent()
        # No descriptor.
        a.send([("request", "deliver"), ("queue_id", qid),
                ("rcpt_index", 0), ("rcpt", "alice@" + DOMAIN)])
        r = dict(a.reply())
        self.assertEqual(r["status"][0], "5")
        self.assertIn("no queue file", r["text"])
        # Unknown request, bad queue id, malformed index.
        for attrs in ([("request", "frobnicate")],
                      [("request", "deliver"), ("queue_id", "../../x"),
                       ("rcpt_index", 0), ("rcpt", "a@b")],
                      [("request", "deliver"), ("queue_id", qid),
                       ("rcpt_index", "-1"), ("rcpt", "a@b")],
                      [("request", "deliver"), ("queue_id", qid)]):
            a.send(attrs, path)
            r = dict(a.reply())
            self.assertEqual(r["status"][0], "5", attrs)
        # Index past the file, and an index naming someone else.
        a.send([("request", "deliver"), ("queue_id", qid),
                ("rcpt_index", 7), ("rcpt", "alice@" + DOMAIN),
                ("rcpt_index", 0), ("rcpt", "bob@" + DOMAIN)], path)
        res = groups(a.reply())
        self.assertEqual([x["status"] for x in res], ["5.5.4", "5.5.4"])
        # The wrong queue id for the file passed.
        a.send([("request", "deliver"), ("queue_id", "0" * len(qid)),
                ("rcpt_index", 0), ("rcpt", "alice@" + DOMAIN)], path)
        r = a.reply()
        self.assertIsNotNone(r)
        self.assertEqual(dict(r)["status"][0], "5")
        # A descriptor that is not a queue file defers.
        devnull = os.path.join(self.inst.dir, "junk")
        with open(devnull, "w") as f:
            f.write("garbage\n")
        a.send([("request", "deliver"), ("queue_id", qid),
                ("rcpt_index", 0), ("rcpt", "alice@" + DOMAIN)], devnull)
        self.assertEqual(groups(a.reply())[0]["status"][:2], "4.")
        self.assertEqual(self.new_files("alice"), [])
        # Garbage framing closes the connection.
        b = self.agent()
        b.send(None, raw=b"no equals sign here\n\n")
        self.assertIsNone(b.reply())
        # Still serving.
        res, _, _ = self.deliver(path)
        self.assertEqual(res[0]["status"], "2.0.0")

    def local_pid(self):
        for s in self.inst.status()["services"]:
            if s["name"] == "local":
                for key in ("pids", "workers"):
                    v = s.get(key)
                    if v:
                        p = v[0]
                        return p["pid"] if isinstance(p, dict) else p
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        argv = f.read().split(b"\0")
                except OSError:
                    continue
                if argv and argv[0].endswith(b"local-deliver") and \
                        self.inst.confdir.encode() in b" ".join(argv):
                    return int(entry)
        return None

    def test_kill_mid_write_leaves_nothing_in_new(self):
        self.instance()
        body = "Subject: huge\r\n\r\n" + ("y" * 998 + "\r\n") * 30000
        path = self.queue(["alice@" + DOMAIN], body=body)
        pid = wait_for(self.local_pid, 10, what="local-deliver pid")
        attrs, _, _ = self.request(path)
        a = self.agent()
        a.send(attrs, path)
        tmp = os.path.join(self.maildir("alice"), "tmp")
        wait_for(lambda: os.path.isdir(tmp) and os.listdir(tmp), 20,
                 interval=0.001, what="a file in tmp/")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), 10, what="local-deliver gone")
        self.assertIsNone(a.reply())
        new = self.new_files("alice")
        for f in new:   # only a whole message may have made it
            self.assertEqual(os.path.getsize(f),
                             len(self.expected(parse_queue_file(path)[1],
                                               "sender@remote.test",
                                               "alice@" + DOMAIN)))


if __name__ == "__main__":
    unittest.main()
