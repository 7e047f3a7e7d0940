"""sendmail(1) local submission: the `sendmail` name and `pochta sendmail`
against a running instance, whose smtpd stores queue files in
spool/incoming/ (no queue manager runs in these tests)."""
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from pochta_instance import BIN, timeout
from smtp_util import parse_queue_file, queued, smtp_instance

LOGIN = pwd.getpwuid(os.getuid()).pw_name
HOST = "mail.example.test"     # myhostname as pochta init writes it

EX_USAGE, EX_DATAERR, EX_NOUSER = 64, 65, 67
EX_UNAVAILABLE, EX_TEMPFAIL, EX_CONFIG = 69, 75, 78


def headers(msg):
    """The header section of stored message bytes, unfolded, as a list of
    (name, value); the Received field smtpd adds is included."""
    head = msg.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    head = re.sub(r"\r\n[ \t]", " ", head)
    out = []
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        out.append((name.lower(), value.strip()))
    return out


def header(msg, name):
    values = [v for n, v in headers(msg) if n == name.lower()]
    return values


def body(msg):
    return msg.split(b"\r\n\r\n", 1)[1]


class SendmailTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # One instance for the tests that do not change its configuration;
        # each test looks only at the queue files it made.
        cls.inst = smtp_instance(_ClassCleanup(cls))

    def setUp(self):
        self.before = set(queued(self.inst))

    # -- running sendmail, reading what it queued ---------------------------
    def run_sendmail(self, args, data, name="sendmail", inst=None,
                     confdir=True):
        inst = inst or self.inst
        if name == "sendmail":
            cmd = [os.path.join(BIN, "sendmail")]
            if confdir:
                cmd += ["-C", inst.confdir]
        else:
            cmd = [os.path.join(BIN, "pochta")]
            if confdir:
                cmd += ["-c", inst.confdir]
            cmd += ["sendmail"]
        if isinstance(data, str):
            data = data.encode()
        return subprocess.run(cmd + list(args), input=data,
                              capture_output=True, timeout=timeout(30))

    def new_files(self, inst=None):
        inst = inst or self.inst
        before = self.before if inst is self.inst else set()
        return [q for q in queued(inst) if q not in before]

    def one_message(self, p, inst=None):
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        files = self.new_files(inst)
        self.assertEqual(len(files), 1, files)
        return parse_queue_file(files[0])

    # -- envelope ----------------------------------------------------------
    def test_recipients_as_arguments(self):
        p = self.run_sendmail(["alice@example.test", "bob@example.test"],
                              "Subject: args\n\nhello\n")
        env, msg, rcpts = self.one_message(p)
        self.assertEqual(sorted(a for _, a in rcpts),
                         ["alice@example.test", "bob@example.test"])
        self.assertEqual(env["sender"], [f"{LOGIN}@{HOST}"])
        self.assertEqual(header(msg, "From"), [f"{LOGIN}@{HOST}"])
        self.assertEqual(body(msg), b"hello\r\n")

    def test_pochta_sendmail_subcommand(self):
        p = self.run_sendmail(["alice@example.test"], "Subject: sub\n\nx\n",
                              name="pochta")
        env, msg, rcpts = self.one_message(p)
        self.assertEqual(rcpts, [("R", "alice@example.test")])
        self.assertEqual(header(msg, "Subject"), ["sub"])

    def test_bp_lists_the_queue(self):
        p = self.run_sendmail(["alice@example.test"], "Subject: bp\n\nx\n")
        self.one_message(p)
        qid = os.path.basename(self.new_files()[0])
        p = self.run_sendmail(["-bp"], b"")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(qid.encode(), p.stdout)
        self.assertIn(b"alice@example.test", p.stdout)

    def test_pochta_conf_env(self):
        env = dict(os.environ, POCHTA_CONF=self.inst.confdir)
        p = subprocess.run([os.path.join(BIN, "sendmail"),
                            "alice@example.test"], input=b"x\n",
                           capture_output=True, env=env,
                           timeout=timeout(30))
        self.one_message(p)

    def test_argument_address_list(self):
        p = self.run_sendmail(["Alice <alice@example.test>, "
                               "bob@example.test (Bob)"], "x\n")
        _, _, rcpts = self.one_message(p)
        self.assertEqual([a for _, a in rcpts],
                         ["alice@example.test", "bob@example.test"])

    def test_t_to_cc_bcc(self):
        msg = ("To: Alice <alice@example.test>\n"
               "Cc: \"Smith, Bob\" <bob@example.test>\n"
               "Bcc: carol@remote.test\n"
               "Subject: -t\n\nbody\n")
        p = self.run_sendmail(["-t"], msg)
        _, stored, rcpts = self.one_message(p)
        self.assertEqual(sorted(a for _, a in rcpts),
                         ["alice@example.test", "bob@example.test",
                          "carol@remote.test"])
        self.assertEqual(header(stored, "Bcc"), [])
        self.assertNotIn(b"carol", stored)
        self.assertEqual(header(stored, "Cc"),
                         ['"Smith, Bob" <bob@example.test>'])

    def test_t_hard_address_lists(self):
        msg = ("To: \"Doe, John (not a comment)\" <alice@example.test>,\n"
               "\t(a comment, with comma) bob@example.test (Bob),\n"
               "  friends: dave@remote.test, Eve <eve@remote.test>;\n"
               "To: undisclosed-recipients:;\n"
               "cc: <@route.test,@other.test:frank@remote.test>\n"
               "CC: alice@example.test\n"
               "Subject: lists\n\nx\n")
        p = self.run_sendmail(["-t", "grace@remote.test"], msg)
        _, _, rcpts = self.one_message(p)
        self.assertEqual(sorted(a for _, a in rcpts),
                         ["alice@example.test", "bob@example.test",
                          "dave@remote.test", "eve@remote.test",
                          "frank@remote.test", "grace@remote.test"])

    def test_t_without_recipients(self):
        for msg in ("Subject: none\n\nx\n",
                    "To: undisclosed-recipients:;\n\nx\n"):
            p = self.run_sendmail(["-t"], msg)
            self.assertEqual(p.returncode, EX_USAGE, p.stderr)
            self.assertIn(b"no recipients", p.stderr)
        self.assertEqual(self.new_files(), [])

    def test_t_bad_address_list(self):
        for bad in ("To: <alice@example.test\n\nx\n",
                    "To: \"unterminated <alice@example.test>\n\nx\n",
                    "To: John Doe alice@example.test\n\nx\n",
                    "To: alice@@example.test\n\nx\n"):
            p = self.run_sendmail(["-t"], bad)
            self.assertEqual(p.returncode, EX_DATAERR, (bad, p.stderr))
        self.assertEqual(self.new_files(), [])

    def test_f_sets_sender(self):
        p = self.run_sendmail(["-f", "robot@example.test",
                               "alice@example.test"], "x\n")
        env, msg, _ = self.one_message(p)
        self.assertEqual(env["sender"], ["robot@example.test"])
        self.assertEqual(header(msg, "From"), ["robot@example.test"])

    def test_r_and_attached_argument(self):
        p = self.run_sendmail(["-rrobot@example.test",
                               "alice@example.test"], "x\n")
        env, _, _ = self.one_message(p)
        self.assertEqual(env["sender"], ["robot@example.test"])

    def test_null_sender(self):
        for arg in ("<>", ""):
            self.before = set(queued(self.inst))
            p = self.run_sendmail(["-f", arg, "alice@example.test"],
                                  "x\n")
            env, msg, _ = self.one_message(p)
            self.assertEqual(env.get("sender"), [""], arg)
            # The From field still names the user.
            self.assertEqual(header(msg, "From"), [f"{LOGIN}@{HOST}"])

    def test_unqualified_sender_and_recipient(self):
        p = self.run_sendmail(["-f", "robot", "alice@example.test"], "x\n")
        env, _, _ = self.one_message(p)
        self.assertEqual(env["sender"], [f"robot@{HOST}"])
        # A bare name is a user at myhostname (not one of this instance's
        # users, so refused, which shows what was sent).
        p = self.run_sendmail(["-v", "nobody"], "x\n")
        self.assertEqual(p.returncode, EX_NOUSER, p.stderr)
        self.assertIn(f">>> RCPT TO:<nobody@{HOST}>".encode(), p.stderr)

    def test_dsn_options(self):
        p = self.run_sendmail(["-N", "success,failure", "-R", "hdrs",
                               "-V", "id 42=x", "alice@example.test"],
                              "x\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(self.new_files()[0], "rb") as f:
            data = f.read().decode()
        self.assertIn("\nret HDRS\n", data)
        # pochta-queue(5) stores the decoded ENVID, %-encoded.
        self.assertIn("\nenvid id%2042=x\n", data)
        self.assertIn("notify=SUCCESS,FAILURE", data)
        self.before = set(queued(self.inst))
        p = self.run_sendmail(["-N", "never", "alice@example.test"], "x\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(self.new_files()[0], "rb") as f:
            self.assertIn("notify=NEVER", f.read().decode())

    def test_smtputf8_sender(self):
        p = self.run_sendmail(["-f", "jos\u00e9@example.test",
                               "alice@example.test"], "x\n")
        env, _, _ = self.one_message(p)
        self.assertEqual(env["smtputf8"], ["yes"])
        self.assertEqual(env["sender"], ["jos\u00e9@example.test"])

    # -- header fields -------------------------------------------------------
    def test_F_adds_from(self):
        p = self.run_sendmail(["-F", "Cron Daemon", "alice@example.test"],
                              "Subject: cron\n\nx\n")
        _, msg, _ = self.one_message(p)
        self.assertEqual(header(msg, "From"),
                         [f"Cron Daemon <{LOGIN}@{HOST}>"])

    def test_F_quotes_specials_and_encodes_utf8(self):
        p = self.run_sendmail(["-F", 'Doe, "J."', "alice@example.test"],
                              "x\n")
        _, msg, _ = self.one_message(p)
        self.assertEqual(header(msg, "From"),
                         [f'"Doe, \\"J.\\"" <{LOGIN}@{HOST}>'])
        self.before = set(queued(self.inst))
        p = self.run_sendmail(["-F", "J\u00fcrgen", "alice@example.test"],
                              "x\n")
        _, msg, _ = self.one_message(p)
        self.assertEqual(header(msg, "From"),
                         [f"=?UTF-8?B?SsO8cmdlbg==?= <{LOGIN}@{HOST}>"])

    def test_F_refuses_header_injection(self):
        p = self.run_sendmail(["-F", "x\nBcc: evil@remote.test",
                               "alice@example.test"], "x\n")
        self.assertEqual(p.returncode, EX_USAGE)
        self.assertEqual(self.new_files(), [])

    def test_existing_fields_kept(self):
        msg = ("From: Someone <someone@example.test>\n"
               "Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
               "Message-ID: <fixed@example.test>\n\nx\n")
        p = self.run_sendmail(["-F", "Ignored", "alice@example.test"], msg)
        _, stored, _ = self.one_message(p)
        self.assertEqual(header(stored, "From"),
                         ["Someone <someone@example.test>"])
        self.assertEqual(header(stored, "Date"),
                         ["Mon, 1 Jan 2024 00:00:00 +0000"])
        self.assertEqual(header(stored, "Message-ID"),
                         ["<fixed@example.test>"])

    def test_date_and_message_id_added(self):
        p = self.run_sendmail(["alice@example.test"], "Subject: d\n\nx\n")
        _, msg, _ = self.one_message(p)
        (date,) = header(msg, "Date")
        self.assertRegex(date, r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} "
                               r"[A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d "
                               r"[+-]\d{4}$")
        (mid,) = header(msg, "Message-ID")
        self.assertRegex(mid, rf"^<[^<>@\s]+@{re.escape(HOST)}>$")
        self.before = set(queued(self.inst))
        p = self.run_sendmail(["alice@example.test"], "Subject: d\n\nx\n")
        _, msg2, _ = self.one_message(p)
        self.assertNotEqual(header(msg2, "Message-ID"), [mid])

    def test_folded_header_and_no_separator(self):
        # A folded field stays one field; the first line that is not a
        # field starts the body, and an empty line is put before it.
        msg = "Subject: a\n  folded\nX-Dot.Name: y\nnot a header line\nz\n"
        p = self.run_sendmail(["alice@example.test"], msg)
        _, stored, _ = self.one_message(p)
        self.assertEqual(header(stored, "Subject"), ["a  folded"])
        self.assertIn(b"Subject: a\r\n  folded\r\n", stored)
        self.assertEqual(body(stored), b"not a header line\r\nz\r\n")

    def test_empty_message(self):
        p = self.run_sendmail(["alice@example.test"], b"")
        _, stored, _ = self.one_message(p)
        names = [n for n, _ in headers(stored)]
        for name in ("received", "from", "date", "message-id"):
            self.assertIn(name, names)

    # -- the body ------------------------------------------------------------
    def test_lf_to_crlf_and_dot_ends_message(self):
        msg = "Subject: dot\n\nline 1\r\nline 2\n.\nafter the dot\n"
        p = self.run_sendmail(["alice@example.test"], msg)
        _, stored, _ = self.one_message(p)
        self.assertEqual(body(stored), b"line 1\r\nline 2\r\n")
        self.assertNotIn(b"\n", stored.replace(b"\r\n", b""))

    def test_i_keeps_dot_lines(self):
        text = "Subject: dot\n\n.\n..\n.x\nend\n.\n"
        for opt in ("-i", "-oi"):
            self.before = set(queued(self.inst))
            p = self.run_sendmail([opt, "alice@example.test"], text)
            _, stored, _ = self.one_message(p)
            self.assertEqual(body(stored), b".\r\n..\r\n.x\r\nend\r\n.\r\n",
                             opt)

    def test_last_line_without_newline(self):
        p = self.run_sendmail(["alice@example.test"], "Subject: n\n\nno eol")
        _, stored, _ = self.one_message(p)
        self.assertEqual(body(stored), b"no eol\r\n")

    def test_8bit_body(self):
        text = "Subject: 8bit\n\nGr\u00fc\u00dfe, \u043c\u0438\u0440\n"
        p = self.run_sendmail(["alice@example.test"], text.encode())
        env, stored, _ = self.one_message(p)
        self.assertEqual(env["body"], ["8BITMIME"])
        self.assertEqual(body(stored),
                         "Gr\u00fc\u00dfe, \u043c\u0438\u0440\r\n".encode())

    def test_7bit_body(self):
        p = self.run_sendmail(["alice@example.test"], "plain\n")
        env, _, _ = self.one_message(p)
        self.assertEqual(env["body"], ["7BIT"])

    def test_bad_input_refused_before_sending(self):
        for data, line in ((b"Subject: x\n\nbare\rcr\n", b"line 3"),
                           (b"nul\0byte\n", b"line 1"),
                           (b"ok\n" + b"x" * 2000 + b"\n", b"line 2"),
                           (b"x" * 200000, b"line 1")):
            p = self.run_sendmail(["alice@example.test"], data)
            self.assertEqual(p.returncode, EX_DATAERR, p.stderr)
            self.assertIn(b"sendmail: " + line + b": ", p.stderr)
        self.assertEqual(self.new_files(), [])

    def test_longest_line_with_leading_dot(self):
        # 998 octets is the limit (RFC 5322 2.1.1); the stuffed dot on
        # the wire does not count against it.
        line = "." + "x" * 997
        p = self.run_sendmail(["-i", "alice@example.test"],
                              f"Subject: long\n\n{line}\n")
        _, stored, _ = self.one_message(p)
        self.assertEqual(body(stored), line.encode() + b"\r\n")

    def test_unreadable_input(self):
        fd = os.open(tempfile.gettempdir(), os.O_RDONLY)
        try:
            p = subprocess.run([os.path.join(BIN, "sendmail"), "-C",
                                self.inst.confdir, "alice@example.test"],
                               stdin=fd, capture_output=True,
                               timeout=timeout(30))
        finally:
            os.close(fd)
        self.assertEqual(p.returncode, 66, p.stderr)
        self.assertIn(b"cannot read the message", p.stderr)
        self.assertEqual(self.new_files(), [])

    def test_large_message_identical(self):
        lines = [f"{i:07d} {'.' if i % 50 == 0 else ''}"
                 f"{'abcdefghij' * 7}" for i in range(28000)]
        text = "Subject: big\n\n" + "\n".join(lines) + "\n"
        self.assertGreater(len(text), 2 * 1024 * 1024)
        # Lines starting with a dot must survive dot-stuffing, too.
        text += ".leading dot\n"
        p = self.run_sendmail(["-i", "alice@example.test"], text)
        _, stored, _ = self.one_message(p)
        self.assertEqual(body(stored),
                         text.split("\n\n", 1)[1].replace("\n", "\r\n")
                         .encode())

    def test_received_from_userid(self):
        p = self.run_sendmail(["alice@example.test"], "x\n")
        _, msg, _ = self.one_message(p)
        (received,) = header(msg, "Received")
        self.assertIn(f"(pochta, from userid {os.getuid()})", received)

    # -- exit statuses -------------------------------------------------------
    def test_unknown_recipient(self):
        p = self.run_sendmail(["alice@example.test", "nobody@example.test",
                               "bob@example.test"], "x\n")
        self.assertEqual(p.returncode, EX_NOUSER, p.stderr)
        self.assertIn(b"<nobody@example.test>: 550", p.stderr)
        files = self.new_files()
        self.assertEqual(len(files), 1)
        _, _, rcpts = parse_queue_file(files[0])
        self.assertEqual(sorted(a for _, a in rcpts),
                         ["alice@example.test", "bob@example.test"])

    def test_all_recipients_unknown(self):
        p = self.run_sendmail(["nobody@example.test"], "x\n")
        self.assertEqual(p.returncode, EX_NOUSER, p.stderr)
        self.assertEqual(self.new_files(), [])

    def test_usage_errors(self):
        for args in (["-X", "alice@example.test"], [], ["-f"],
                     ["-N", "sometimes", "alice@example.test"],
                     ["-R", "body", "alice@example.test"],
                     ["-B", "binary", "alice@example.test"],
                     ["-bs"], ["-bv", "alice@example.test"], ["-V", "x" * 101, "alice@example.test"],
                     ["not an address"], ["-f", "a@@b", "alice@example.test"]):
            p = self.run_sendmail(args, "x\n")
            self.assertEqual(p.returncode, EX_USAGE, (args, p.stderr))
            self.assertTrue(p.stderr.startswith(b"sendmail: ") or
                            p.stderr.startswith(b"usage:"), p.stderr)
        self.assertEqual(self.new_files(), [])

    def test_compat_options_accepted(self):
        p = self.run_sendmail(["-bm", "-oem", "-odi", "-B8BITMIME",
                               "-FCronDaemon", "-i", "--",
                               "alice@example.test"], "x\n")
        env, _, _ = self.one_message(p)
        self.assertEqual(env["body"], ["8BITMIME"])

    def test_verbose_shows_dialogue(self):
        p = self.run_sendmail(["-v", "alice@example.test"], "x\n")
        self.assertEqual(p.returncode, 0)
        err = p.stderr.decode()
        self.assertIn(">>> MAIL FROM:<", err)
        self.assertIn(">>> RCPT TO:<alice@example.test>", err)
        self.assertRegex(err, r"<<< 250 2\.0\.0 Ok: queued as ")

    def test_config_error(self):
        with tempfile.TemporaryDirectory() as d:
            p = subprocess.run([os.path.join(BIN, "sendmail"), "-C", d,
                                "alice@example.test"], input=b"x\n",
                               capture_output=True, timeout=timeout(30))
            self.assertEqual(p.returncode, EX_CONFIG, p.stderr)
            with open(os.path.join(d, "pochta.conf"), "w") as f:
                f.write("no_such_parameter = 1\n")
            p = subprocess.run([os.path.join(BIN, "sendmail"), "-C", d,
                                "alice@example.test"], input=b"x\n",
                               capture_output=True, timeout=timeout(30))
            self.assertEqual(p.returncode, EX_CONFIG, p.stderr)
            self.assertIn(b"no_such_parameter", p.stderr)


class _ClassCleanup:
    """Lets a class-wide instance register its cleanup like a test's."""

    def __init__(self, cls):
        self.addCleanup = cls.addClassCleanup


class SendmailInstanceTest(unittest.TestCase):
    """Tests that need an instance of their own."""

    def test_not_running(self):
        inst = smtp_instance(self, start=False)
        p = subprocess.run([os.path.join(BIN, "sendmail"), "-C",
                            inst.confdir, "alice@example.test"],
                           input=b"Subject: x\n\nx\n", capture_output=True,
                           timeout=timeout(30))
        self.assertEqual(p.returncode, EX_TEMPFAIL, p.stderr)
        self.assertIn(b"try again later", p.stderr)
        self.assertEqual(queued(inst), [])

    def test_recipient_limit_batches(self):
        inst = smtp_instance(self, smtpd_recipient_limit="2")
        p = subprocess.run([os.path.join(BIN, "sendmail"), "-C",
                            inst.confdir, "alice@example.test",
                            "bob@example.test", "carol@remote.test"],
                           input=b"Subject: x\n\nx\n", capture_output=True,
                           timeout=timeout(30))
        self.assertEqual(p.returncode, 0, p.stderr)
        files = queued(inst)
        self.assertEqual(len(files), 2)
        rcpts = [a for f in files for _, a in parse_queue_file(f)[2]]
        self.assertEqual(sorted(rcpts), ["alice@example.test",
                                         "bob@example.test",
                                         "carol@remote.test"])

    def fake_smtpd(self, script):
        """A fake server on queue_directory/public/submit of a config of
        its own: script(conn) talks to one client. Returns the confdir."""
        d = tempfile.mkdtemp(prefix="pochta-sendmail-")
        self.addCleanup(shutil.rmtree, d, True)
        os.makedirs(os.path.join(d, "public"))
        with open(os.path.join(d, "pochta.conf"), "w") as f:
            f.write(f"queue_directory = {d}\nmyhostname = fake.test\n")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(os.path.join(d, "public", "submit"))
        srv.listen(1)
        self.addCleanup(srv.close)

        def serve():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(timeout(10))
                try:
                    script(conn)
                except OSError:
                    pass
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        self.addCleanup(t.join, timeout(10))
        return d

    def run_fake(self, script, args=("alice@example.test",)):
        d = self.fake_smtpd(script)
        return subprocess.run([os.path.join(BIN, "sendmail"), "-C", d] +
                              list(args), input=b"x\n", capture_output=True,
                              timeout=timeout(90))

    def test_dropped_connection(self):
        def script(conn):
            conn.sendall(b"220 fake ESMTP\r\n")
            conn.recv(1024)         # EHLO, then hang up
        p = self.run_fake(script)
        self.assertEqual(p.returncode, EX_TEMPFAIL, p.stderr)
        self.assertIn(b"connection to smtpd lost", p.stderr)

    def test_silent_smtpd_times_out(self):
        # The one slow test: sendmail waits 60 s for a reply, then gives
        # up with "try again later" instead of hanging.
        gone = threading.Event()

        def script(conn):
            conn.sendall(b"220 fake ESMTP\r\n")
            conn.recv(1024)
            gone.wait(timeout(100))
        self.addCleanup(gone.set)
        start = time.monotonic()
        p = self.run_fake(script)
        elapsed = time.monotonic() - start
        gone.set()
        self.assertEqual(p.returncode, EX_TEMPFAIL, p.stderr)
        self.assertIn(b"no reply from smtpd in 60 s", p.stderr)
        self.assertGreater(elapsed, 55)

    def test_malformed_reply(self):
        def script(conn):
            conn.sendall(b"220 fake ESMTP\r\n")
            conn.recv(1024)
            conn.sendall(b"HELLO THERE\r\n")
            conn.recv(1024)
        p = self.run_fake(script)
        self.assertEqual(p.returncode, EX_TEMPFAIL, p.stderr)
        self.assertIn(b"malformed reply", p.stderr)

    def smtp_script(self, mail_reply=b"250 ok", rcpt_reply=b"250 ok",
                    data_reply=b"250 queued"):
        def script(conn):
            f = conn.makefile("rb")
            conn.sendall(b"220 fake ESMTP\r\n")
            f.readline()
            conn.sendall(b"250-fake\r\n250 8BITMIME\r\n")
            f.readline()
            conn.sendall(mail_reply + b"\r\n")
            if not mail_reply.startswith(b"2"):
                f.readline()
                return
            f.readline()
            conn.sendall(rcpt_reply + b"\r\n")
            if not rcpt_reply.startswith(b"2"):
                f.readline()
                conn.sendall(b"250 ok\r\n")
                return
            f.readline()
            conn.sendall(b"354 go\r\n")
            while f.readline() not in (b".\r\n", b""):
                pass
            conn.sendall(data_reply + b"\r\n")
            f.readline()
            conn.sendall(b"221 bye\r\n")
        return script

    def test_reply_statuses(self):
        cases = [
            ({"mail_reply": b"451 4.3.0 later"}, EX_TEMPFAIL),
            ({"mail_reply": b"553 5.1.7 no"}, EX_UNAVAILABLE),
            ({"rcpt_reply": b"450 4.2.0 busy"}, EX_TEMPFAIL),
            ({"rcpt_reply": b"550"}, EX_NOUSER),
            ({"rcpt_reply": b"550 5.1.1 " + b"y" * 1500}, EX_NOUSER),
            ({"rcpt_reply": b"550 " + b"z" * 3000}, EX_TEMPFAIL),
            ({"data_reply": b"452 4.3.1 full"}, EX_TEMPFAIL),
            ({"data_reply": b"554 5.6.0 bad"}, EX_UNAVAILABLE),
            ({}, 0),
        ]
        for kwargs, status in cases:
            p = self.run_fake(self.smtp_script(**kwargs))
            self.assertEqual(p.returncode, status, (kwargs, p.stderr))

    def test_multiline_reply_and_8bitmime_detection(self):
        seen = {}

        def script(conn):
            f = conn.makefile("rb")
            conn.sendall(b"220-fake\r\n220 ESMTP\r\n")
            f.readline()
            conn.sendall(b"250-fake\r\n250-SIZE 1000\r\n250 8BITMIME\r\n")
            seen["mail"] = f.readline()
            conn.sendall(b"250 ok\r\n")
        d = self.fake_smtpd(script)
        subprocess.run([os.path.join(BIN, "sendmail"), "-C", d, "a@b.test"],
                       input="\u00e9\n".encode(), capture_output=True,
                       timeout=timeout(30))
        self.assertRegex(seen["mail"].decode(),
                         r"^MAIL FROM:<[^>]+@fake\.test> SIZE=\d+ "
                         r"BODY=8BITMIME\r\n$")


if __name__ == "__main__":
    unittest.main()
