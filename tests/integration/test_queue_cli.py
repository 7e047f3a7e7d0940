"""`pochta queue` and mailq(1) (pochta-queue(8)): listings and `show` read
the spool directly, so they are checked against mail smtpd accepted (no
queue manager runs, the files stay in incoming/) and against queue files
written here by hand (pochta-queue(5)) for the other queues, deferral
reasons, hostile envelope values and corrupt files. The control commands
talk to a fake queue manager listening on spool/private/qmgr."""
import errno
import json
import os
import re
import smtplib
import socket
import subprocess
import threading
import unittest

from pochta_instance import BIN, Instance, timeout
from smtp_util import parse_queue_file, queued, smtp_instance

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def b32(n, width):
    out = ""
    for _ in range(width):
        out = ALPHABET[n % 32] + out
        n //= 32
    return out


def make_id(time_us, pid=4242, counter=1):
    """A well-formed queue ID (pochta-queue(5))."""
    return b32(time_us, 11) + b32(pid, 5) + b32(counter, 4)


def esc(value):
    """Percent-escape an envelope value as the queue file format wants."""
    out = b""
    for byte in value.encode():
        if byte == 0x25 or byte <= 0x20 or byte == 0x7F:
            out += b"%%%02X" % byte
        else:
            out += bytes([byte])
    return out


def queue_file(qid, arrival, sender, rcpts, msg, defers=(),
               helo=b"client.example.org"):
    """The bytes of a queue file. rcpts: [(status, address)]; defers:
    [(index, time, next, reason)]; helo as it is in the file."""
    head = [f"id {qid}".encode(), b"arrival %d.%06d" % (arrival, 123456),
            b"sender " + esc(sender), b"client_addr 127.0.0.1",
            b"helo " + helo, b"protocol ESMTP"]
    body = b"".join(line + b"\n" for line in head) + b"\n"
    off = 47 + len(body)
    first = b"pochta-queue 1 %010d %020d\n" % (off, len(msg))
    tail = b""
    for status, addr in rcpts:
        tail += status.encode() + b" to=" + esc(addr) + b"\n"
    tail += b"end %d\n" % len(rcpts)
    for index, when, nxt, reason in defers:
        tail += b"defer %d %d %d %s\n" % (index, when, nxt, esc(reason))
    return first + body + msg + tail


def run(cmd, env=None, input=None):
    return subprocess.run(cmd, capture_output=True, env=env, input=input,
                          timeout=timeout(60))


class FakeQmgr:
    """A queue manager stand-in on spool/private/qmgr: reads one request
    per connection, keeps it, and sends the canned answer."""

    def __init__(self, spool, answer):
        os.makedirs(os.path.join(spool, "private"), exist_ok=True)
        self.path = os.path.join(spool, "private", "qmgr")
        self.answer = answer
        self.requests = []
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(self.path)
        self.sock.listen(5)
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(timeout(30))
                data = b""
                while b"\n\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                conn.sendall(self.answer)

    def close(self):
        self.stop.set()
        self.thread.join(timeout(30))
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class AcceptedMailTest(unittest.TestCase):
    """Mail accepted by smtpd, listed and shown."""

    @classmethod
    def setUpClass(cls):
        cls.holder = unittest.TestCase()
        cls.inst = smtp_instance(cls.holder)
        cls.sent = {}      # queue ID -> (sender, [rcpts], message bytes)
        big = b"From: c@example.org\r\nSubject: big\r\n\r\n" + \
            b"".join(b"line %06d of a big message\r\n" % i
                     for i in range(12000))
        try:
            for sender, rcpts, msg in [
                    ("alice@example.org", ["bob@example.test"],
                     b"From: alice@example.org\r\nSubject: one\r\n\r\n"
                     b"hi\r\n"),
                    ("", ["alice@example.test", "bob@example.test"],
                     b"From: daemon\r\nSubject: two\r\n\r\nbounce\r\n"),
                    ("carol@example.org", ["bob@example.test"], big)]:
                qid = cls.send(sender, rcpts, msg)
                cls.sent[qid] = (sender, rcpts, msg)
        except BaseException:
            cls.holder.doCleanups()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.holder.doCleanups()

    @classmethod
    def send(cls, sender, rcpts, msg):
        with smtplib.SMTP("127.0.0.1", cls.inst.port("smtp"),
                          timeout=timeout(10)) as s:
            s.ehlo("client.example.org")
            assert s.mail(sender)[0] == 250
            for r in rcpts:
                assert s.rcpt(r)[0] == 250
            code, text = s.data(msg)
            assert code == 250, text
            return re.search(rb"queued as (\S+)", text).group(1).decode()

    def files(self):
        return {os.path.basename(p): p for p in queued(self.inst)}

    def test_ids_are_in_incoming(self):
        self.assertEqual(set(self.files()), set(self.sent))

    def test_list_text(self):
        p = self.inst.pochta("queue", "list")
        lines = p.stdout.splitlines()
        self.assertTrue(lines[0].startswith("-Queue ID-"), lines[0])
        total = 0
        for qid, (sender, rcpts, msg) in self.sent.items():
            _, stored, _ = parse_queue_file(self.files()[qid])
            total += len(stored)
            i = next(i for i, l in enumerate(lines) if l.startswith(qid))
            fields = lines[i].split()
            self.assertEqual(fields[1], "incoming")
            self.assertEqual(int(fields[2]), len(stored))
            self.assertEqual(fields[-1], sender or "MAILER-DAEMON")
            listed = []
            for l in lines[i + 1:]:
                if not l:
                    break
                self.assertTrue(l.startswith(" " * 60), l)
                listed.append(l.strip())
            self.assertEqual(listed, rcpts)
        self.assertEqual(lines[-1], "-- %d Kbytes in 3 Requests."
                         % ((total + 1023) // 1024))
        self.assertEqual(p.stderr, "")

    def test_list_json(self):
        doc = json.loads(self.inst.pochta("queue", "list", "--json").stdout)
        self.assertEqual(doc["count"], 3)
        self.assertEqual({m["queue_id"] for m in doc["messages"]},
                         set(self.files()))
        total = 0
        for m in doc["messages"]:
            sender, rcpts, msg = self.sent[m["queue_id"]]
            env, stored, _ = parse_queue_file(self.files()[m["queue_id"]])
            total += len(stored)
            self.assertEqual(m["queue_name"], "incoming")
            self.assertEqual(m["sender"], sender)
            self.assertEqual(m["message_size"], len(stored))
            self.assertEqual(m["arrival_time"],
                             int(env["arrival"][0].split(".")[0]))
            self.assertFalse(m["corrupt"])
            self.assertIsNone(m["error"])
            self.assertEqual([r["address"] for r in m["recipients"]], rcpts)
            self.assertEqual([r["index"] for r in m["recipients"]],
                             list(range(len(rcpts))))
            self.assertTrue(all(r["delay_reason"] is None and
                                r["deferrals"] == 0
                                for r in m["recipients"]))
        self.assertEqual(doc["bytes"], total)

    def test_mailq_symlink(self):
        listing = self.inst.pochta("queue", "list").stdout
        env = dict(os.environ, POCHTA_CONF=self.inst.confdir)
        p = run([os.path.join(BIN, "mailq")], env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.decode(), listing)
        p = run([os.path.join(BIN, "mailq"), "-C", self.inst.confdir])
        self.assertEqual(p.stdout.decode(), listing)
        p = run([os.path.join(BIN, "mailq"), "-x"], env=env)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"usage:", p.stderr)
        # sendmail -bp is mailq too.
        p = run([os.path.join(BIN, "sendmail"), "-bp", "-C",
                 self.inst.confdir])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.decode(), listing)
        p = run([os.path.join(BIN, "sendmail"), "-bp"], env=env)
        self.assertEqual(p.stdout.decode(), listing)

    def show(self, qid):
        return run([self.inst.bin("pochta"), "-c", self.inst.confdir,
                    "queue", "show", qid])

    def test_show_envelope_and_exact_message(self):
        for qid, (sender, rcpts, msg) in self.sent.items():
            p = self.show(qid)
            self.assertEqual(p.returncode, 0, p.stderr)
            head, shown = p.stdout.split(b"\n\n", 1)
            _, stored, _ = parse_queue_file(self.files()[qid])
            self.assertEqual(shown, stored)
            # The stored message is our Received field, then the bytes
            # exactly as sent.
            self.assertTrue(shown.startswith(b"Received: "))
            rest = shown.split(b"\r\n", 1)[1]
            while rest[:1] in (b" ", b"\t"):
                rest = rest.split(b"\r\n", 1)[1]
            self.assertEqual(rest, msg)
            lines = head.decode().splitlines()
            self.assertIn(f"id: {qid}", lines)
            self.assertIn("queue: incoming", lines)
            self.assertIn(f"sender: {sender or '<>'}", lines)
            self.assertIn(f"size: {len(stored)}", lines)
            self.assertIn("client_addr: 127.0.0.1", lines)
            self.assertIn("helo: client.example.org", lines)
            for i, r in enumerate(rcpts):
                self.assertIn(f"rcpt: {i} pending {r}", lines)

    def test_show_bad_and_unknown_ids(self):
        for bad in ["nonsense", "../../etc/passwd", "", "ALL",
                    next(iter(self.sent)).lower()]:
            p = self.show(bad)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn(b"is not a queue ID", p.stderr)
            self.assertEqual(p.stdout, b"")
        unknown = make_id(1, 1, 1)
        p = self.show(unknown)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr.decode(), f"pochta: {unknown}: no such "
                         "message in the queue\n")
        self.assertEqual(self.inst.pochta("queue", "show", check=False)
                         .returncode, 2)

    def test_control_without_qmgr(self):
        qid = next(iter(self.sent))
        for args in (["flush"], ["hold", qid], ["release", "ALL"],
                     ["delete", qid], ["requeue", "ALL"]):
            p = self.inst.pochta("queue", *args, check=False)
            self.assertEqual(p.returncode, 1, args)
            self.assertEqual(p.stderr, "pochta: the queue manager is not "
                             "running\n")
        # Nothing was touched behind qmgr's back.
        self.assertEqual(set(self.files()), set(self.sent))


class HandMadeQueueTest(unittest.TestCase):
    """Queue files written by the test into an instance that is not
    running: every queue, deferrals, hostile values, corrupt files."""

    def setUp(self):
        self.inst = Instance(self)
        self.spool = self.inst.spool

    def put(self, queue, qid, data):
        d = os.path.join(self.spool, queue)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, qid), "wb") as f:
            f.write(data)
        return os.path.join(d, qid)

    def listing(self):
        return self.inst.pochta("queue", "list").stdout

    def list_json(self):
        return json.loads(self.inst.pochta("queue", "list", "--json").stdout)

    def test_empty_queue(self):
        self.assertEqual(self.listing(), "Mail queue is empty\n")
        self.assertEqual(self.list_json(),
                         {"messages": [], "count": 0, "bytes": 0})
        for q in ("incoming", "active", "deferred", "hold", "corrupt"):
            os.makedirs(os.path.join(self.spool, q), exist_ok=True)
        # Other names in a queue directory are not queue files.
        self.put("incoming", "not-an-id", b"junk")
        self.assertEqual(self.listing(), "Mail queue is empty\n")
        p = run([os.path.join(BIN, "mailq"), "-C", self.inst.confdir])
        self.assertEqual(p.stdout, b"Mail queue is empty\n")

    def test_missing_spool_is_an_error(self):
        os.rmdir(self.spool)
        p = self.inst.pochta("queue", "list", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(self.spool, p.stderr)

    def test_queues_deferrals_and_corrupt_files(self):
        t = 1764300000
        msg = b"Subject: x\r\n\r\nbody\r\n"
        ids = [make_id(t * 1000000 + i) for i in range(5)]
        self.put("deferred", ids[0], queue_file(
            ids[0], t, "alice@example.org",
            [("D", "done@example.org"), ("R", "slow@example.org"),
             ("R", "slow2@example.org"), ("R", "other@example.net")],
            msg, defers=[(1, t + 60, t + 360, "451 4.7.1 greylisted"),
                         (2, t + 60, t + 360, "451 4.7.1 greylisted"),
                         (3, t + 70, t + 370, "connect refused"),
                         (1, t + 400, t + 1000, "451 4.7.1 try later")]))
        self.put("hold", ids[1], queue_file(
            ids[1], t, "", [("R", "bob@example.test")], msg))
        corrupt = b"pochta-queue 1 garbage\n"
        self.put("incoming", ids[2], corrupt)
        self.put("corrupt", ids[3], queue_file(
            ids[3], t, "x@example.org", [("R", "y@example.org")], msg))
        self.put("active", ids[4], queue_file(
            ids[4], t, "evil\x1b[2J@example.org",
            [("R", "a\x7fb\x1b]0;x\x07@example.org")], msg,
            helo=b"bad%0Aline%1B"))

        doc = self.list_json()
        by_id = {m["queue_id"]: m for m in doc["messages"]}
        self.assertEqual(doc["count"], 5)
        self.assertEqual(
            [m["queue_id"] for m in doc["messages"]],
            [ids[2], ids[4], ids[0], ids[1], ids[3]])
        d = by_id[ids[0]]
        self.assertEqual(d["queue_name"], "deferred")
        self.assertEqual(d["next_retry"], t + 1000)
        self.assertEqual(
            [(r["index"], r["address"], r["delay_reason"], r["deferrals"])
             for r in d["recipients"]],
            [(1, "slow@example.org", "451 4.7.1 try later", 2),
             (2, "slow2@example.org", "451 4.7.1 greylisted", 1),
             (3, "other@example.net", "connect refused", 1)])
        self.assertEqual(by_id[ids[1]]["queue_name"], "hold")
        self.assertEqual(by_id[ids[1]]["sender"], "")
        c = by_id[ids[2]]
        self.assertEqual((c["queue_name"], c["corrupt"]),
                         ("incoming", True))
        self.assertTrue(c["error"])
        self.assertIsNone(c["sender"])
        self.assertEqual(c["message_size"], len(corrupt))
        self.assertEqual(c["arrival_time"], t)
        self.assertEqual((by_id[ids[3]]["queue_name"],
                          by_id[ids[3]]["corrupt"]), ("corrupt", True))
        self.assertEqual(by_id[ids[4]]["sender"],
                         "evil\x1b[2J@example.org")
        self.assertEqual(by_id[ids[4]]["recipients"][0]["address"],
                         "a\x7fb\x1b]0;x\x07@example.org")

        text = self.listing()
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\x07", text)
        self.assertIn("evil%1B[2J@example.org", text)
        self.assertIn(" " * 60 + "a%7Fb%1B]0;x%07@example.org\n", text)
        self.assertRegex(text, rf"(?m)^{ids[2]} incoming .*\(corrupt: .+\)$")
        # One reason line above the recipients that share it, as Postfix.
        self.assertIn("(451 4.7.1 try later)\n" + " " * 60 +
                      "slow@example.org\n(451 4.7.1 greylisted)\n" +
                      " " * 60 + "slow2@example.org\n(connect refused)\n" +
                      " " * 60 + "other@example.net\n", text)
        self.assertNotIn("done@example.org", text)
        self.assertTrue(text.endswith("in 5 Requests.\n"))

        p = run([self.inst.bin("pochta"), "-c", self.inst.confdir, "queue",
                 "show", ids[0]])
        self.assertEqual(p.returncode, 0)
        head, shown = p.stdout.split(b"\n\n", 1)
        self.assertEqual(shown, msg)
        lines = head.decode().splitlines()
        self.assertIn("queue: deferred", lines)
        self.assertIn("rcpt: 0 delivered done@example.org", lines)
        self.assertIn("rcpt: 1 pending slow@example.org", lines)
        self.assertTrue(any(l.startswith("defer: 1 2 times, last ") and
                            l.endswith(": 451 4.7.1 try later")
                            for l in lines), lines)
        p = run([self.inst.bin("pochta"), "-c", self.inst.confdir, "queue",
                 "show", ids[4]])
        head = p.stdout.split(b"\n\n", 1)[0]
        self.assertNotIn(b"\x1b", head)
        self.assertIn(b"helo: bad%0Aline%1B\n", head)
        p = run([self.inst.bin("pochta"), "-c", self.inst.confdir, "queue",
                 "show", ids[2]])
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith(
            f"pochta: {ids[2]}: corrupt in incoming/: ".encode()))
        self.assertEqual(p.stdout, b"")

    def test_duplicate_across_queues_listed_once(self):
        # A file seen in incoming/ and again in active/ (qmgr moved it while
        # we listed) is one message.
        qid = make_id(1764300000 * 1000000)
        data = queue_file(qid, 1764300000, "a@example.org",
                          [("R", "b@example.org")], b"x\r\n")
        self.put("incoming", qid, data)
        self.put("active", qid, data)
        doc = self.list_json()
        self.assertEqual([(m["queue_id"], m["queue_name"])
                          for m in doc["messages"]], [(qid, "incoming")])

    def test_files_moved_while_listing_are_listed_once(self):
        # As qmgr takes files from incoming/ into active/ while the listing
        # runs, some vanish between the scan and the open: they are skipped
        # without a word there and found in active/, so every message is
        # listed exactly once, and no error is reported.
        t = 1764300000
        inc = os.path.join(self.spool, "incoming")
        act = os.path.join(self.spool, "active")
        os.makedirs(act)
        for rnd in range(3):
            ids = [make_id(t * 1000000 + i, counter=rnd)
                   for i in range(1500)]
            for qid in ids:
                self.put("incoming", qid, queue_file(
                    qid, t, "a@example.org", [("R", "b@example.org")],
                    b"x\r\n"))

            def mover():
                for qid in ids:
                    os.rename(os.path.join(inc, qid), os.path.join(act, qid))

            p = subprocess.Popen([self.inst.bin("pochta"), "-c",
                                  self.inst.confdir, "queue", "list",
                                  "--json"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            th = threading.Thread(target=mover)
            th.start()
            out, err = p.communicate(timeout=timeout(60))
            th.join()
            self.assertEqual((p.returncode, err), (0, b""))
            doc = json.loads(out)
            listed = [m["queue_id"] for m in doc["messages"]]
            self.assertEqual(len(listed), len(set(listed)))
            self.assertEqual(sorted(set(listed) & set(ids)), ids)
            self.assertTrue(all(m["error"] is None
                                for m in doc["messages"]))

    def test_odd_files_are_listed_not_followed_or_waited_on(self):
        # A FIFO would hang a plain open(2); a symbolic link could point
        # out of the spool. Both, and a directory, are unreadable entries.
        t = 1764300000
        ids = [make_id(t * 1000000 + i) for i in range(4)]
        d = os.path.join(self.spool, "incoming")
        os.makedirs(d)
        os.mkfifo(os.path.join(d, ids[0]))
        os.mkdir(os.path.join(d, ids[1]))
        good = self.put("deferred", ids[3], queue_file(
            ids[3], t, "a@example.org", [("R", "b@example.org")], b"x\r\n"))
        os.symlink(good, os.path.join(d, ids[2]))
        p = self.inst.pochta("queue", "list", "--json", check=False, secs=20)
        self.assertEqual(p.returncode, 1)
        doc = json.loads(p.stdout)
        self.assertEqual(
            [(m["queue_id"], m["queue_name"], m["corrupt"], m["error"])
             for m in doc["messages"]],
            [(ids[0], "incoming", False, "not a regular file"),
             (ids[1], "incoming", False, "not a regular file"),
             (ids[2], "incoming", False, os.strerror(errno.ELOOP)),
             (ids[3], "deferred", False, None)])
        p = self.inst.pochta("queue", "list", check=False, secs=20)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stdout, rf"(?m)^{ids[0]} incoming .*"
                         r"\(unreadable: not a regular file\)$")
        for qid in ids[:3]:
            p = self.inst.pochta("queue", "show", qid, check=False, secs=20)
            self.assertEqual(p.returncode, 1)
            self.assertTrue(p.stderr.startswith(
                f"pochta: {qid}: unreadable in incoming/: "), p.stderr)
            self.assertEqual(p.stdout, "")

    def control(self, answer, *args):
        fake = FakeQmgr(self.spool, answer)
        try:
            p = self.inst.pochta("queue", *args, check=False)
        finally:
            fake.close()
        return p, fake.requests

    def test_control_requests_to_fake_qmgr(self):
        qid = make_id(1764300000 * 1000000)
        ok = b"status=2.0.0\ntext=held 1 message\n\n"
        for args, request in [
                (["hold", qid], f"request=hold\nqueue_id={qid}\n\n"),
                (["hold", "ALL"], "request=hold\nqueue_id=ALL\n\n"),
                (["release", qid], f"request=release\nqueue_id={qid}\n\n"),
                (["delete", qid], f"request=delete\nqueue_id={qid}\n\n"),
                (["requeue", "ALL"], "request=requeue\nqueue_id=ALL\n\n"),
                (["flush"], "request=flush\n\n")]:
            p, reqs = self.control(ok, *args)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(reqs, [request.encode()])
            self.assertEqual(p.stdout, "held 1 message\n")
            self.assertEqual(p.stderr, "")

    def test_control_refused_by_qmgr(self):
        qid = make_id(1764300000 * 1000000)
        p, reqs = self.control(
            b"status=5.1.1\ntext=no message " + qid.encode() + b"\n\n",
            "delete", qid)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, f"pochta: no message {qid}\n")
        self.assertEqual(p.stdout, "")
        self.assertEqual(reqs, [f"request=delete\nqueue_id={qid}\n\n"
                                .encode()])
        # Escapes in qmgr's text reach no terminal.
        p, _ = self.control(b"status=4.3.0\ntext=busy%1B[2J\n\n", "flush")
        self.assertEqual((p.returncode, p.stderr), (1, "pochta: busy%1B[2J\n"))

    def test_control_bad_answers(self):
        for answer in [b"text=no status\n\n", b"status=ok\n\n",
                       b"status=2.0.0\ntext=cut short", b"no equals\n\n"]:
            p, _ = self.control(answer, "flush")
            self.assertEqual(p.returncode, 1, answer)
            self.assertTrue(p.stderr.startswith("pochta: "), p.stderr)
            self.assertEqual(p.stdout, "")

    def test_control_usage_errors_send_nothing(self):
        for args in (["hold"], ["hold", "bogus"], ["delete", "all"],
                     ["flush", "now"], ["release", "../x"],
                     ["frobnicate"], ["list", "--xml"], []):
            p, reqs = self.control(b"status=2.0.0\ntext=x\n\n", *args)
            self.assertEqual(p.returncode, 2, args)
            self.assertEqual(reqs, [], args)

    def test_stale_qmgr_socket_means_not_running(self):
        os.makedirs(os.path.join(self.spool, "private"), exist_ok=True)
        path = os.path.join(self.spool, "private", "qmgr")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
        p = self.inst.pochta("queue", "hold", "ALL", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, "pochta: the queue manager is not "
                         "running\n")


if __name__ == "__main__":
    unittest.main()
