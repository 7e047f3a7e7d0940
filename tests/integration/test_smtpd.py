"""smtpd against a running instance, with real clients (smtplib, swaks,
openssl s_client) and a raw socket for what they will not send.

No queue manager runs here, so accepted mail stays in spool/incoming/ where
the tests read it (pochta-queue(5)).
"""
import base64
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import unittest

import fakedns
import in_netns
from pochta_instance import timeout, wait_for
from smtp_util import (PASSWORD, RawSMTP, client_tls, parse_queue_file,
                       queued, smtp_instance, wait_queued)

MSG = b"From: a@example.org\r\nSubject: test\r\n\r\nhello\r\n"


class ProtocolTest(unittest.TestCase):
    """One instance, many sessions: commands, extensions, pipelining."""

    @classmethod
    def setUpClass(cls):
        cls.holder = unittest.TestCase()
        # Many sessions from 127.0.0.1, some of them lingering.
        cls.inst = smtp_instance(cls.holder,
                                 smtpd_client_connection_limit="1000")

    @classmethod
    def tearDownClass(cls):
        cls.holder.doCleanups()

    def smtp(self):
        s = smtplib.SMTP("127.0.0.1", self.inst.port("smtp"),
                         timeout=timeout(10))
        self.addCleanup(s.close)
        return s

    def raw(self):
        r = RawSMTP(self.inst.port("smtp"))
        self.addCleanup(r.close)
        self.assertEqual(r.reply()[0], 220)
        return r

    def test_greeting_and_ehlo_extensions(self):
        s = self.smtp()
        code, text = s.ehlo("client.example.org")
        self.assertEqual(code, 250)
        lines = text.decode().split("\n")
        self.assertEqual(lines[0], "mail.example.test")
        for ext in ("PIPELINING", "SIZE 52428800", "8BITMIME", "SMTPUTF8",
                    "ENHANCEDSTATUSCODES", "CHUNKING", "DSN", "STARTTLS",
                    "AUTH PLAIN LOGIN"):
            self.assertIn(ext, lines)
        self.assertNotIn("VRFY", lines)

    def test_helo_then_simple_commands(self):
        r = self.raw()
        code, text = r.cmd("HELO client.example.org")
        self.assertEqual((code, text), (250, ["mail.example.test"]))
        self.assertEqual(r.cmd("NOOP")[0], 250)
        self.assertEqual(r.cmd("RSET")[0], 250)
        code, text = r.cmd("HELP")
        self.assertEqual(code, 214)
        code, text = r.cmd("VRFY alice@example.test")
        self.assertEqual(code, 252)
        self.assertEqual(r.cmd("EXPN staff")[0], 502)
        self.assertEqual(r.cmd("FROBNICATE")[0], 502)
        self.assertEqual(r.cmd("HELO")[0], 501)
        self.assertEqual(r.cmd("RSET now")[0], 501)
        code, text = r.cmd("QUIT")
        self.assertEqual(code, 221)
        self.assertTrue(r.closed())

    def test_command_order_enforced(self):
        r = self.raw()
        code, text = r.cmd("MAIL FROM:<a@example.org>")
        self.assertEqual(code, 503)
        self.assertIn("5.5.1", text[0])
        r.cmd("EHLO client.example.org")
        self.assertEqual(r.cmd("RCPT TO:<alice@example.test>")[0], 503)
        self.assertEqual(r.cmd("DATA")[0], 503)
        self.assertEqual(r.cmd("MAIL FROM:<a@example.org>")[0], 250)
        self.assertEqual(r.cmd("MAIL FROM:<a@example.org>")[0], 503)
        # MAIL without an accepted RCPT: DATA is refused.
        self.assertEqual(r.cmd("RCPT TO:<nobody@example.test>")[0], 550)
        self.assertEqual(r.cmd("DATA")[0], 503)
        self.assertEqual(r.cmd("RSET")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<alice@example.test>")[0], 503)

    def test_message_queued_durably_with_received_header(self):
        before = set(queued(self.inst))
        s = self.smtp()
        s.ehlo("client.example.org")
        s.mail("sender@example.org", ["SIZE=100", "BODY=8BITMIME",
                                      "RET=HDRS", "ENVID=abc+2Bdef"])
        s.rcpt("alice@example.test", ["NOTIFY=SUCCESS,FAILURE",
                                      "ORCPT=rfc822;alice@example.test"])
        code, text = s.data(MSG)
        self.assertEqual(code, 250)
        self.assertRegex(text.decode(), r"^2\.0\.0 Ok: queued as [0-9A-Z]{20}$")
        qid = text.decode().rsplit(" ", 1)[1]
        new = set(queued(self.inst)) - before
        self.assertEqual(len(new), 1)
        path = new.pop()
        self.assertTrue(path.endswith(qid))
        env, msg, rcpts = parse_queue_file(path)
        self.assertEqual(env["sender"], ["sender@example.org"])
        self.assertEqual(env["helo"], ["client.example.org"])
        self.assertEqual(env["protocol"], ["ESMTP"])
        self.assertEqual(env["ret"], ["HDRS"])
        self.assertEqual(env["envid"], ["abc+def"])
        self.assertEqual(env["body"], ["8BITMIME"])
        self.assertEqual(rcpts, [("R", "alice@example.test")])
        self.assertTrue(msg.endswith(MSG))
        received = msg[:len(msg) - len(MSG)].decode()
        self.assertTrue(received.startswith(
            "Received: from client.example.org (unknown [127.0.0.1])\r\n"))
        self.assertIn(f"by mail.example.test (pochta) with ESMTP id {qid}",
                      received)
        self.assertIn("for <alice@example.test>;", received)
        self.assertIn(f"{qid}: from=<sender@example.org>, size=",
                      self.inst.log())

    def test_null_sender_and_postmaster(self):
        s = self.smtp()
        s.ehlo("client.example.org")
        self.assertEqual(s.mail("<>")[0], 250)
        self.assertEqual(s.rcpt("<Postmaster>")[0], 250)
        self.assertEqual(s.rcpt("postmaster@example.test")[0], 250)
        self.assertEqual(s.data(MSG)[0], 250)

    def test_unknown_parameters_and_bad_values(self):
        r = self.raw()
        r.cmd("EHLO c.example.org")
        code, text = r.cmd("MAIL FROM:<a@example.org> FOO=BAR")
        self.assertEqual(code, 555)
        self.assertIn("5.5.4", text[0])
        self.assertEqual(r.cmd("MAIL FROM:<a@example.org> BODY=BINARY")[0],
                         501)
        self.assertEqual(r.cmd("MAIL FROM:<a@example.org> SIZE=1 SIZE=2")[0],
                         555)
        self.assertEqual(r.cmd("MAIL FROM:<a@example.org>")[0], 250)
        self.assertEqual(
            r.cmd("RCPT TO:<alice@example.test> NOTIFY=NEVER,SUCCESS")[0],
            501)
        self.assertEqual(r.cmd("RCPT TO:<alice@example.test> XYZ")[0], 555)
        self.assertEqual(r.cmd("MAIL FROM:a@example.org")[0], 503)
        r.cmd("RSET")
        self.assertEqual(r.cmd("MAIL FROM:a@example.org")[0], 501)
        self.assertEqual(r.cmd("MAIL FROM:<a@@example.org>")[0], 501)

    def test_smtputf8(self):
        s = self.smtp()
        s.ehlo("client.example.org")
        r = RawSMTP(self.inst.port("smtp"))
        self.addCleanup(r.close)
        r.reply()
        r.cmd("EHLO c.example.org")
        # A UTF-8 address needs the SMTPUTF8 parameter.
        code, _ = r.cmd("MAIL FROM:<j\u00f6rg@example.org>")
        self.assertEqual(code, 553)
        code, _ = r.cmd("MAIL FROM:<j\u00f6rg@example.org> SMTPUTF8")
        self.assertEqual(code, 250)
        self.assertEqual(r.cmd("RCPT TO:<alice@example.test>")[0], 250)

    def test_pipelined_transaction_in_one_write(self):
        r = self.raw()
        before = len(queued(self.inst))
        r.send(b"EHLO pipe.example.org\r\n"
               b"MAIL FROM:<a@example.org>\r\n"
               b"RCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<nobody@example.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\n"
               b"DATA\r\n")
        codes = [r.reply()[0] for _ in range(6)]
        self.assertEqual(codes, [250, 250, 250, 550, 250, 354])
        r.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n"
               b"MAIL FROM:<b@example.org>\r\n"
               b"RCPT TO:<bob@example.test>\r\n"
               b"DATA\r\n")
        codes = [r.reply()[0] for _ in range(4)]
        self.assertEqual(codes, [250, 250, 250, 354])
        r.send(b"second\r\n.\r\nQUIT\r\n")
        self.assertEqual(r.reply()[0], 250)
        self.assertEqual(r.reply()[0], 221)
        self.assertEqual(len(wait_queued(self.inst, before + 2)), before + 2)

    def test_bdat_chunking(self):
        r = self.raw()
        before = set(queued(self.inst))
        r.cmd("EHLO c.example.org")
        r.cmd("MAIL FROM:<a@example.org>")
        r.cmd("RCPT TO:<alice@example.test>")
        part1 = b"Subject: chunks\r\n\r\n.leading dot\r\n"
        part2 = b"end\r\n"
        r.send(b"BDAT %d\r\n" % len(part1) + part1)
        code, text = r.reply()
        self.assertEqual(code, 250)
        self.assertIn(f"{len(part1)} octets", text[0])
        r.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        code, text = r.reply()
        self.assertEqual(code, 250, text)
        self.assertIn("queued as", text[0])
        new = set(wait_queued(self.inst, len(before) + 1)) - before
        _, msg, _ = parse_queue_file(new.pop())
        # No dot-unstuffing in BDAT.
        self.assertTrue(msg.endswith(part1 + part2))

    def test_bdat_without_transaction_reads_the_chunk(self):
        r = self.raw()
        r.cmd("EHLO c.example.org")
        # The chunk looks like commands; it must be read as data.
        chunk = b"RSET\r\nQUIT\r\n"
        r.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        self.assertEqual(r.reply()[0], 503)
        self.assertEqual(r.cmd("NOOP")[0], 250)
        # A BDAT without a size cannot be followed: the session ends.
        r.send(b"BDAT\r\n")
        self.assertEqual(r.reply()[0], 501)
        self.assertEqual(r.reply()[0], 421)
        self.assertTrue(r.closed())

    def test_data_after_bdat_refused(self):
        r = self.raw()
        r.cmd("EHLO c.example.org")
        r.cmd("MAIL FROM:<a@example.org>")
        r.cmd("RCPT TO:<alice@example.test>")
        r.send(b"BDAT 3\r\nabc")
        self.assertEqual(r.reply()[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 503)

    def test_unknown_user_refused_at_rcpt(self):
        s = self.smtp()
        s.ehlo("client.example.org")
        s.mail("a@example.org")
        code, text = s.rcpt("nosuchuser@example.test")
        self.assertEqual(code, 550)
        self.assertIn(b"5.1.1", text)
        # One log line per refused command, with the reason.
        self.inst.wait_for_log(r": reject: RCPT from unknown\[127\.0\.0\.1\]: "
                               r"550 5\.1\.1 <nosuchuser@example\.test>")
        # With an extension, the base user is what counts.
        self.assertEqual(s.rcpt("alice+lists@example.test")[0], 250)
        self.assertEqual(s.rcpt("ALICE@Example.TEST")[0], 250)

    def test_command_line_limit(self):
        r = self.raw()
        r.cmd("EHLO c.example.org")
        code, text = r.cmd("NOOP " + "x" * 600)
        self.assertEqual(code, 500)
        self.assertIn("5.5.2", text[0])
        # A line far over any limit, with no LF for a long time.
        r.send(b"y" * 100000)
        r.send(b"\r\n")
        self.assertEqual(r.reply()[0], 500)
        self.assertEqual(r.cmd("NOOP")[0], 250)

    def test_nul_and_garbage_in_commands(self):
        r = self.raw()
        r.send(b"EHLO c\x00.example.org\r\n")
        self.assertEqual(r.reply()[0], 500)
        r.send(bytes(range(1, 10)) + b"\xff\xfe\r\n")
        self.assertEqual(r.reply()[0], 502)
        self.assertEqual(r.cmd("NOOP")[0], 250)

    def test_http_request_disconnected(self):
        r = self.raw()
        r.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(r.reply()[0], 521)
        self.assertTrue(r.closed())

    def test_text_line_limit(self):
        s = self.smtp()
        s.ehlo("client.example.org")
        s.mail("a@example.org")
        s.rcpt("alice@example.test")
        code, text = s.data(b"Subject: long\r\n\r\n" + b"x" * 999 + b"\r\n")
        self.assertEqual(code, 550)
        self.assertIn(b"5.5.2", text)
        s.rset()
        s.mail("a@example.org")
        s.rcpt("alice@example.test")
        self.assertEqual(s.data(b"Subject: ok\r\n\r\n" + b"x" * 998 +
                                b"\r\n")[0], 250)

    def test_nul_in_message_refused(self):
        s = self.smtp()
        s.ehlo("client.example.org")
        s.mail("a@example.org")
        s.rcpt("alice@example.test")
        code, _ = s.data(b"Subject: nul\r\n\r\na\x00b\r\n")
        self.assertEqual(code, 550)

    def smuggle(self, payload):
        """Send payload inside DATA, then the real end; returns the
        replies and whether the smuggled RCPT of bob was ever executed."""
        r = self.raw()
        before = len(queued(self.inst))
        r.cmd("EHLO c.example.org")
        r.cmd("MAIL FROM:<a@example.org>")
        r.cmd("RCPT TO:<alice@example.test>")
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: x\r\n\r\nbody" + payload +
               b"MAIL FROM:<evil@example.org>\r\n"
               b"RCPT TO:<bob@example.test>\r\nDATA\r\nsmuggled\r\n"
               b"\r\n.\r\n")
        code, text = r.reply()
        # Nothing else arrives: the smuggled commands were data.
        self.assertEqual(r.cmd("NOOP")[0], 250)
        return code, text, len(queued(self.inst)) - before

    def test_smuggling_variants_refused(self):
        for payload in (b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n",
                        b"\r\n.\r", b"\r.\r\n", b"\n\r.\r\n"):
            with self.subTest(payload=payload):
                code, text, new = self.smuggle(payload)
                self.assertEqual(code, 550, text)
                self.assertIn("5.5.2", text[0])
                self.assertEqual(new, 0)

    def test_size_limit_announced_and_enforced(self):
        s = self.smtp()
        s.ehlo("client.example.org")
        code, text = s.mail("a@example.org", ["SIZE=999999999"])
        self.assertEqual(code, 552)
        self.assertIn(b"5.3.4", text)

    def test_recipient_limit(self):
        # The limit is per message; covered with a low limit elsewhere.
        s = self.smtp()
        s.ehlo("client.example.org")
        s.mail("a@example.org")
        for _ in range(5):
            self.assertEqual(s.rcpt("alice@example.test")[0], 250)

    def test_starttls_with_smtplib(self):
        s = self.smtp()
        s.ehlo("client.example.org")
        code, _ = s.starttls(context=client_tls())
        self.assertEqual(code, 220)
        code, text = s.ehlo("client.example.org")
        self.assertNotIn(b"STARTTLS", text)
        before = set(queued(self.inst))
        s.sendmail("a@example.org", ["alice@example.test"], MSG)
        new = set(wait_queued(self.inst, len(before) + 1)) - before
        env, msg, _ = parse_queue_file(new.pop())
        self.assertEqual(env["protocol"], ["ESMTPS"])
        self.assertRegex(msg.decode(), r"\(using TLSv1\.[23] with cipher "
                                       r"\S+ \(\d+ bits\)\)")
        self.assertIn("with ESMTPS id", msg.decode())

    def test_starttls_state_reset_and_twice_refused(self):
        r = self.raw()
        r.cmd("EHLO c.example.org")
        r.cmd("MAIL FROM:<a@example.org>")
        # Not in a transaction.
        self.assertEqual(r.cmd("STARTTLS")[0], 503)
        r.cmd("RSET")
        self.assertEqual(r.cmd("STARTTLS")[0], 220)
        r.starttls()
        # RFC 3207 4.2: EHLO again before anything else.
        self.assertEqual(r.cmd("MAIL FROM:<a@example.org>")[0], 503)
        code, text = r.cmd("EHLO c.example.org")
        self.assertEqual(code, 250)
        self.assertNotIn("STARTTLS", text)
        self.assertEqual(r.cmd("STARTTLS")[0], 554)

    def test_plaintext_after_starttls_not_executed(self):
        """CVE-2011-0411: commands pipelined with STARTTLS are dropped."""
        r = self.raw()
        r.cmd("EHLO c.example.org")
        r.send(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n"
               b"RCPT TO:<alice@example.test>\r\n")
        self.assertEqual(r.reply()[0], 220)
        r.starttls()
        # Had the injected commands run, this RCPT would be accepted (or
        # answered twice); instead the session is new: EHLO first.
        r.send(b"RCPT TO:<bob@example.test>\r\nEHLO c.example.org\r\n")
        self.assertEqual(r.reply()[0], 503)
        self.assertEqual(r.reply()[0], 250)
        self.assertEqual(r.cmd("NOOP")[0], 250)

    def test_openssl_s_client_starttls(self):
        p = subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-connect",
             f"127.0.0.1:{self.inst.port('smtp')}", "-brief", "-ign_eof"],
            input="EHLO s.example.org\nQUIT\n", capture_output=True,
            text=True, timeout=timeout(30))
        out = p.stdout + p.stderr
        self.assertRegex(out, r"Protocol version: TLSv1\.[23]")
        self.assertIn("250-mail.example.test", out)
        self.assertIn("221 2.0.0", out)

    def test_swaks_delivery(self):
        before = set(queued(self.inst))
        p = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{self.inst.port('smtp')}",
             "--to", "bob@example.test", "--from", "swaks@example.org",
             "--pipeline", "--tls", "--body", "from swaks"],
            capture_output=True, text=True, timeout=timeout(60))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        new = set(wait_queued(self.inst, len(before) + 1)) - before
        env, msg, rcpts = parse_queue_file(new.pop())
        self.assertEqual(rcpts, [("R", "bob@example.test")])
        self.assertIn(b"from swaks", msg)

    def test_many_concurrent_sessions(self):
        socks = []
        try:
            for _ in range(200):
                socks.append(RawSMTP(self.inst.port("smtp")))
            for r in socks:
                self.assertEqual(r.reply()[0], 220)
            for r in socks:
                r.send(b"EHLO many.example.org\r\n")
            for r in socks:
                self.assertEqual(r.reply()[0], 250)
            before = len(queued(self.inst))
            for r in socks[:50]:
                r.send(b"MAIL FROM:<a@example.org>\r\n"
                       b"RCPT TO:<alice@example.test>\r\nDATA\r\n")
            for r in socks[:50]:
                self.assertEqual([r.reply()[0] for _ in range(3)],
                                 [250, 250, 354])
                r.send(b"Subject: c\r\n\r\nx\r\n.\r\n")
            for r in socks[:50]:
                self.assertEqual(r.reply()[0], 250)
            self.assertEqual(len(wait_queued(self.inst, before + 50)),
                             before + 50)
        finally:
            for r in socks:
                r.close()

    def test_submit_socket_local_user(self):
        sock = os.path.join(self.inst.spool, "public", "submit")
        r = RawSMTP(0, unix=sock)
        self.addCleanup(r.close)
        self.assertEqual(r.reply()[0], 220)
        before = set(queued(self.inst))
        r.cmd("EHLO localhost")
        # Local users may send anywhere.
        self.assertEqual(r.cmd("MAIL FROM:<me@example.test>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<someone@remote.example>")[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: local\r\n\r\nx\r\n.\r\n")
        self.assertEqual(r.reply()[0], 250)
        new = set(wait_queued(self.inst, len(before) + 1)) - before
        env, msg, _ = parse_queue_file(new.pop())
        self.assertEqual(env["protocol"], ["local"])
        self.assertIn(f"(pochta, from userid {os.getuid()})".encode(), msg)


class AuthTest(unittest.TestCase):
    """Submission (587) and SMTPS (465): TLS, then AUTH, then MAIL."""

    @classmethod
    def setUpClass(cls):
        cls.holder = unittest.TestCase()
        cls.inst = smtp_instance(cls.holder)
        cls.inst.write("senders", "shared@example.test alice@example.test,"
                                  " bob@example.test\n")
        cls.inst.pochta("map", "build", cls.inst.conf_path("senders"))
        cls.inst.set_conf(smtpd_sender_login_maps="lmdb:$config_directory/"
                                                  "senders")
        cls.inst.reload()
        # Every smtpd worker (smtp, submission, smtps, submit) reloads.
        wait_for(lambda: len(set(re.findall(
            r"smtpd\[(\d+)\]: configuration reloaded",
            cls.inst.log()))) >= 4, 10, what="smtpd workers to reload")

    @classmethod
    def tearDownClass(cls):
        cls.holder.doCleanups()

    def submission(self):
        s = smtplib.SMTP("127.0.0.1", self.inst.port("submission"),
                         timeout=timeout(10))
        self.addCleanup(s.close)
        s.ehlo("client.example.org")
        return s

    def test_submission_requires_tls_then_auth(self):
        s = self.submission()
        code, text = s.mail("alice@example.test")
        self.assertEqual(code, 530)
        self.assertIn(b"STARTTLS", text)
        s.rset()
        s.starttls(context=client_tls())
        s.ehlo("client.example.org")
        code, text = s.mail("alice@example.test")
        self.assertEqual(code, 530)
        self.assertIn(b"Authentication required", text)
        s.rset()
        s.login("alice@example.test", PASSWORD)
        self.assertEqual(s.mail("alice@example.test")[0], 250)
        # Authenticated users may relay.
        self.assertEqual(s.rcpt("friend@remote.example")[0], 250)
        before = set(queued(self.inst))
        self.assertEqual(s.data(MSG)[0], 250)
        new = set(wait_queued(self.inst, len(before) + 1)) - before
        env, msg, _ = parse_queue_file(new.pop())
        self.assertEqual(env["protocol"], ["ESMTPSA"])
        self.assertEqual(env["auth_user"], ["alice@example.test"])

    def test_auth_not_offered_before_tls_on_submission(self):
        s = self.submission()
        self.assertFalse(s.has_extn("auth"))
        self.assertTrue(s.has_extn("starttls"))
        # Loopback may AUTH in the clear, but submission wants TLS first.
        code, _ = s.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==")
        self.assertEqual(code, 530)

    def test_wrong_password_is_delayed_and_refused(self):
        s = smtplib.SMTP("127.0.0.1", self.inst.port("submission"),
                         timeout=timeout(30))
        self.addCleanup(s.close)
        s.ehlo("client.example.org")
        s.starttls(context=client_tls())
        s.ehlo("client.example.org")

        def plain(user, password):
            token = base64.b64encode(f"\0{user}\0{password}".encode())
            start = time.monotonic()
            code, text = s.docmd("AUTH", "PLAIN " + token.decode())
            return code, text, time.monotonic() - start

        code, text, _ = plain("bob@example.test", "wrong")
        self.assertEqual(code, 535)
        self.assertIn(b"5.7.8", text)
        # The second failure from this address is delayed.
        code, _, secs = plain("bob@example.test", "wrong again")
        self.assertEqual(code, 535)
        self.assertGreater(secs, 0.9)
        # An unknown user fails the same way, and no faster.
        code, _, secs = plain("nobody@example.test", PASSWORD)
        self.assertEqual(code, 535)
        self.assertGreater(secs, 0.9)
        self.assertIn("authentication failed for nobody@example.test",
                      self.inst.log())

    def test_auth_login_mechanism_and_cancel(self):
        s = self.submission()
        s.starttls(context=client_tls())
        s.ehlo("client.example.org")
        code, text = s.docmd("AUTH", "LOGIN")
        self.assertEqual((code, text), (334, b"VXNlcm5hbWU6"))
        code, _ = s.docmd("*")
        self.assertEqual(code, 501)
        self.assertEqual(s.docmd("AUTH", "CRAM-MD5")[0], 504)
        self.assertEqual(s.docmd("AUTH", "PLAIN not-base64!")[0], 501)
        s.user, s.password = "bob@example.test", PASSWORD
        code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        self.assertEqual(code, 235)
        self.assertEqual(s.docmd("AUTH", "PLAIN")[0], 503)

    def test_sender_login_mismatch(self):
        s = self.submission()
        s.starttls(context=client_tls())
        s.ehlo("client.example.org")
        s.login("bob@example.test", PASSWORD)
        code, text = s.mail("alice@example.test")
        self.assertEqual(code, 553)
        self.assertIn(b"5.7.1", text)
        s.rset()
        self.assertEqual(s.mail("bob@example.test")[0], 250)
        s.rset()
        # Listed in smtpd_sender_login_maps for bob.
        self.assertEqual(s.mail("shared@example.test")[0], 250)
        s.rset()
        self.assertEqual(s.mail("<>")[0], 250)

    def test_smtps_implicit_tls(self):
        s = smtplib.SMTP_SSL("127.0.0.1", self.inst.port("smtps"),
                             context=client_tls(), timeout=timeout(10))
        self.addCleanup(s.close)
        code, text = s.ehlo("client.example.org")
        self.assertEqual(code, 250)
        self.assertNotIn(b"STARTTLS", text)
        self.assertIn(b"AUTH PLAIN LOGIN", text)
        self.assertEqual(s.mail("alice@example.test")[0], 530)
        s.rset()
        s.login("alice@example.test", PASSWORD)
        self.assertEqual(s.mail("alice@example.test")[0], 250)
        self.assertEqual(s.rcpt("bob@example.test")[0], 250)
        self.assertEqual(s.data(MSG)[0], 250)

    def test_smtps_garbage_instead_of_tls(self):
        r = socket.create_connection(("127.0.0.1", self.inst.port("smtps")),
                                     timeout=timeout(10))
        self.addCleanup(r.close)
        r.sendall(b"EHLO plain.example.org\r\n" * 10)
        # The server drops the connection; it does not crash.
        data = b""
        try:
            while True:
                chunk = r.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        self.assertNotIn(b"250", data)
        # Still serving.
        s = smtplib.SMTP_SSL("127.0.0.1", self.inst.port("smtps"),
                             context=client_tls(), timeout=timeout(10))
        self.assertEqual(s.noop()[0], 250)
        s.close()


class RelayTest(unittest.TestCase):
    """No open relay: with nobody trusted, every disguise is refused."""

    @classmethod
    def setUpClass(cls):
        cls.holder = unittest.TestCase()
        cls.inst = smtp_instance(cls.holder, mynetworks="")

    @classmethod
    def tearDownClass(cls):
        cls.holder.doCleanups()

    def test_relay_disguises_refused(self):
        r = RawSMTP(self.inst.port("smtp"))
        self.addCleanup(r.close)
        r.reply()
        r.cmd("EHLO c.example.org")
        r.cmd("MAIL FROM:<a@example.org>")
        for rcpt in ("<victim@remote.example>",
                     "<victim%remote.example@example.test>",
                     "<remote.example!victim@example.test>",
                     "<\"victim@remote.example\"@example.test>",
                     "<@example.test,@relay.example:victim@remote.example>",
                     "<victim@remote.example.>",
                     "<victim@[192.0.2.1]>",
                     "<victim@[127.0.0.1]>",
                     "<victim@[IPv6:2001:db8::1]>",
                     "<victim@example.test.remote.example>"):
            with self.subTest(rcpt=rcpt):
                code, text = r.cmd(f"RCPT TO:{rcpt}")
                self.assertIn(code, (501, 550, 554), text)
                if code == 554:
                    self.assertIn("Relay access denied", text[0])
        # Our own users are still welcome.
        self.assertEqual(r.cmd("RCPT TO:<alice@example.test>")[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        self.assertEqual(r.reply()[0], 250)
        for path in queued(self.inst):
            _, _, rcpts = parse_queue_file(path)
            self.assertEqual(rcpts, [("R", "alice@example.test")])


class LimitsTest(unittest.TestCase):
    """Per-instance settings: limits, timeouts, catch-all, disk space."""

    def test_catchall_accepts_unknown_users(self):
        inst = smtp_instance(self, start=False)
        inst.write("virtual", "@example.test catchall@example.test\n")
        inst.pochta("map", "build", inst.conf_path("virtual"))
        inst.set_conf(virtual_alias_maps="lmdb:$config_directory/virtual")
        inst.start()
        s = smtplib.SMTP("127.0.0.1", inst.port("smtp"), timeout=timeout(10))
        self.addCleanup(s.close)
        s.ehlo("c.example.org")
        s.mail("a@example.org")
        self.assertEqual(s.rcpt("whoever@example.test")[0], 250)

    def test_size_limit_enforced_while_reading(self):
        inst = smtp_instance(self, message_size_limit="20k")
        s = smtplib.SMTP("127.0.0.1", inst.port("smtp"), timeout=timeout(10))
        self.addCleanup(s.close)
        s.ehlo("c.example.org")
        self.assertIn("20480", s.esmtp_features["size"])
        s.mail("a@example.org")
        s.rcpt("alice@example.test")
        code, text = s.data(b"Subject: big\r\n\r\n" +
                            (b"x" * 70 + b"\r\n") * 1000)
        self.assertEqual(code, 552)
        self.assertIn(b"5.3.4", text)
        self.assertEqual(queued(inst), [])
        self.assertEqual(os.listdir(os.path.join(inst.spool, "tmp")), [])

    def test_recipient_limit(self):
        inst = smtp_instance(self, smtpd_recipient_limit="3")
        s = smtplib.SMTP("127.0.0.1", inst.port("smtp"), timeout=timeout(10))
        self.addCleanup(s.close)
        s.ehlo("c.example.org")
        s.mail("a@example.org")
        for _ in range(3):
            self.assertEqual(s.rcpt("alice@example.test")[0], 250)
        code, text = s.rcpt("bob@example.test")
        self.assertEqual(code, 452)
        self.assertIn(b"4.5.3", text)

    def test_disk_space_below_minfree(self):
        inst = smtp_instance(self, queue_minfree="1000000g")
        s = smtplib.SMTP("127.0.0.1", inst.port("smtp"), timeout=timeout(10))
        self.addCleanup(s.close)
        s.ehlo("c.example.org")
        code, text = s.mail("a@example.org")
        self.assertEqual(code, 452)
        self.assertIn(b"4.3.1", text)
        self.assertEqual(queued(inst), [])

    def test_error_limit_disconnects(self):
        inst = smtp_instance(self, smtpd_hard_error_limit="3")
        r = RawSMTP(inst.port("smtp"))
        self.addCleanup(r.close)
        r.reply()
        for _ in range(2):
            self.assertEqual(r.cmd("BOGUS")[0], 502)
        r.send(b"BOGUS\r\n")
        self.assertEqual(r.reply()[0], 502)
        self.assertEqual(r.reply()[0], 421)
        self.assertTrue(r.closed())

    def test_idle_timeout(self):
        inst = smtp_instance(self, smtpd_timeout="1s")
        r = RawSMTP(inst.port("smtp"))
        self.addCleanup(r.close)
        r.reply()
        r.cmd("EHLO c.example.org")
        code, text = r.reply()
        self.assertEqual(code, 421)
        self.assertIn("4.4.2", text[0])
        self.assertTrue(r.closed())

    def test_total_connection_limit(self):
        inst = smtp_instance(self, smtpd_connection_limit="2")
        conns = [RawSMTP(inst.port("smtp")) for _ in range(2)]
        for c in conns:
            self.addCleanup(c.close)
            self.assertEqual(c.reply()[0], 220)
        extra = RawSMTP(inst.port("smtp"))
        self.addCleanup(extra.close)
        code, text = extra.reply()
        self.assertEqual(code, 421)
        self.assertIn("too many connections", text[0])
        self.assertTrue(extra.closed())

    def test_table_rebuilt_while_running(self):
        inst = smtp_instance(self)

        def rcpt(addr):
            with smtplib.SMTP("127.0.0.1", inst.port("smtp"),
                              timeout=timeout(10)) as s:
                s.ehlo("c.example.org")
                s.mail("a@example.org")
                return s.rcpt(addr)[0]

        self.assertEqual(rcpt("carol@example.test"), 550)
        # The user table is rebuilt under the running smtpd: no reload.
        inst.pochta("user", "add", "carol@example.test", "--password-stdin",
                    input=PASSWORD + "\n")
        wait_for(lambda: rcpt("carol@example.test") == 250, 10,
                 interval=0.2, what="smtpd to see the rebuilt user table")
        self.assertEqual(rcpt("nobody@example.test"), 550)

    def test_qmgr_is_told_about_new_mail(self):
        inst = smtp_instance(self)
        path = os.path.join(inst.spool, "private", "qmgr")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen(5)
        listener.settimeout(timeout(10))
        self.addCleanup(listener.close)
        s = smtplib.SMTP("127.0.0.1", inst.port("smtp"), timeout=timeout(10))
        self.addCleanup(s.close)
        s.ehlo("c.example.org")
        s.mail("a@example.org")
        s.rcpt("alice@example.test")
        code, text = s.data(MSG)
        self.assertEqual(code, 250)
        qid = text.decode().rsplit(" ", 1)[1]
        conn, _ = listener.accept()
        conn.settimeout(timeout(10))
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        conn.close()
        self.assertEqual(data.decode(),
                         f"request=queue_new\nqueue_id={qid}\n\n")

    def test_connection_limit_per_client(self):
        inst = smtp_instance(self, smtpd_client_connection_limit="3")
        conns = [RawSMTP(inst.port("smtp")) for _ in range(3)]
        for c in conns:
            self.addCleanup(c.close)
            self.assertEqual(c.reply()[0], 220)
        extra = RawSMTP(inst.port("smtp"))
        self.addCleanup(extra.close)
        code, text = extra.reply()
        self.assertEqual(code, 421)
        self.assertIn("4.7.0", text[0])
        conns[0].cmd("QUIT")
        conns[0].closed()
        # A slot is free again.
        again = wait_for(lambda: RawSMTP(inst.port("smtp")), 5)
        self.addCleanup(again.close)
        code = again.reply()[0]
        if code == 421:   # the first QUIT may not have been counted yet
            time.sleep(0.5)
            again = RawSMTP(inst.port("smtp"))
            self.addCleanup(again.close)
            code = again.reply()[0]
        self.assertEqual(code, 220)

    def test_early_talker_refused(self):
        inst = smtp_instance(self, smtpd_greet_pause="1s")
        r = RawSMTP(inst.port("smtp"))
        self.addCleanup(r.close)
        r.send(b"EHLO impatient.example.org\r\n")
        code, text = r.reply()
        self.assertEqual(code, 554)
        self.assertTrue(r.closed())
        # A patient client is greeted.
        p = RawSMTP(inst.port("smtp"))
        self.addCleanup(p.close)
        self.assertEqual(p.reply()[0], 220)


class HostileTest(unittest.TestCase):
    """Random and malformed sessions: answers or a closed connection,
    never a crash (the worker's pid stays the same)."""

    WORDS = [b"EHLO x", b"HELO", b"MAIL FROM:<a@example.org>",
             b"MAIL FROM:<>", b"RCPT TO:<alice@example.test>",
             b"RCPT TO:<\"a\\\"b\"@example.test>", b"DATA", b"BDAT 5",
             b"BDAT 0 LAST", b"BDAT 99999999999999999999", b"BDAT 3 LAST",
             b"AUTH PLAIN", b"AUTH LOGIN", b"AUTH PLAIN AAAA", b"*",
             b"STARTTLS", b"RSET", b"NOOP", b"VRFY", b"HELP", b".",
             b"RCPT TO:<@a,@b:c@d>", b"MAIL FROM:<a@[IPv6:::1]> SIZE=1",
             b"RCPT TO:<x@y> NOTIFY=SUCCESS ORCPT=rfc822;+41",
             b"MAIL FROM:<" + b"a" * 300 + b"@b>"]

    def session(self, rng, port):
        try:
            sock = socket.create_connection(("127.0.0.1", port),
                                            timeout=timeout(5))
        except OSError:
            return
        try:
            sock.settimeout(0.2)
            for _ in range(rng.randrange(1, 30)):
                kind = rng.random()
                if kind < 0.6:
                    data = rng.choice(self.WORDS)
                elif kind < 0.8:
                    data = bytes(rng.randrange(256)
                                 for _ in range(rng.randrange(1, 200)))
                else:
                    data = rng.choice(self.WORDS) + bytes(
                        rng.randrange(256) for _ in range(rng.randrange(8)))
                end = rng.choice([b"\r\n", b"\n", b"\r", b"", b"\r\n"])
                sock.sendall(data + end)
                try:
                    sock.recv(65536)
                except (socket.timeout, OSError):
                    pass
        except OSError:
            pass
        finally:
            sock.close()

    def test_random_sessions(self):
        import random
        inst = smtp_instance(self, smtpd_client_connection_limit="1000",
                             smtpd_timeout="5s")
        pid = inst.service("smtp")["pids"][0]
        threads = [threading.Thread(target=lambda seed=i: [
            self.session(random.Random(seed * 7919 + n),
                         inst.port("smtp")) for n in range(15)])
            for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(inst.service("smtp")["pids"], [pid])
        self.assertEqual(inst.service("smtp")["restarts"], 0)
        s = smtplib.SMTP("127.0.0.1", inst.port("smtp"), timeout=timeout(10))
        self.assertEqual(s.ehlo("after.example.org")[0], 250)
        s.quit()


class ClientNameTest(unittest.TestCase):
    """The client's name comes from DNS (through the fake DNS server),
    forward-confirmed, without holding up the session."""

    def test_confirmed_name_in_received_header(self):
        zone = fakedns.Zone()
        zone.ptr("127.0.0.2", "client.example.org")
        zone.a("client.example.org", "127.0.0.2")
        # 127.0.0.3 claims a name whose address is not 127.0.0.3.
        zone.ptr("127.0.0.3", "forged.example.org")
        zone.a("forged.example.org", "127.0.0.9")
        dns = fakedns.start(self, zone)
        inst = smtp_instance(self, smtpd_peername_lookup="yes",
                             dns_servers=dns.servers)
        for source, name in (("127.0.0.2", "client.example.org"),
                             ("127.0.0.3", "unknown")):
            sock = socket.create_connection(("127.0.0.1", inst.port("smtp")),
                                            timeout=timeout(10),
                                            source_address=(source, 0))
            s = smtplib.SMTP(timeout=timeout(10))
            s.sock = sock
            s.file = None
            self.assertEqual(s.getreply()[0], 220)
            s.ehlo("helo.example.org")
            # The lookup runs while the session goes on.
            inst.wait_for_log(rf"connect from \S+\[{source}\]")
            time.sleep(0.3)
            before = set(queued(inst))
            s.sendmail("a@example.org", ["alice@example.test"], MSG)
            s.quit()
            new = set(wait_queued(inst, len(before) + 1)) - before
            _, msg, _ = parse_queue_file(new.pop())
            self.assertIn(f"Received: from helo.example.org ({name} "
                          f"[{source}])".encode(), msg)


class NonLoopbackTest(unittest.TestCase):
    """A client that is not on loopback (in a network namespace of the
    test's own, see in_netns.py): no AUTH in the clear, no relaying."""

    def test_in_network_namespace(self):
        p = subprocess.run(in_netns.command("netns_smtpd"),
                           cwd=os.path.dirname(os.path.abspath(__file__)),
                           capture_output=True, text=True,
                           timeout=timeout(300))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stderr, r"Ran [1-9]\d* tests?")
        self.assertRegex(p.stderr, r"\nOK\s*$")


class CrashTest(unittest.TestCase):
    """kill -9 of smtpd around the 250: acknowledged means queued."""

    def smtpd_pid(self, inst):
        return inst.service("smtp")["pids"][0]

    def test_kill_after_250_keeps_message(self):
        inst = smtp_instance(self)
        s = smtplib.SMTP("127.0.0.1", inst.port("smtp"), timeout=timeout(10))
        s.ehlo("c.example.org")
        s.mail("a@example.org")
        s.rcpt("alice@example.test")
        code, text = s.data(MSG)
        self.assertEqual(code, 250)
        pid = self.smtpd_pid(inst)
        os.kill(pid, signal.SIGKILL)
        s.close()
        files = queued(inst)
        self.assertEqual(len(files), 1)
        _, msg, rcpts = parse_queue_file(files[0])
        self.assertTrue(msg.endswith(MSG))
        self.assertEqual(rcpts, [("R", "alice@example.test")])
        # master restarts it and it serves again.
        wait_for(lambda: inst.service("smtp")["pids"] not in ([], [pid]),
                 5, what="smtpd to be restarted")
        s = wait_for(lambda: smtplib.SMTP("127.0.0.1", inst.port("smtp"),
                                          timeout=timeout(10)), 5)
        self.assertEqual(s.noop()[0], 250)
        s.close()

    def test_kill_before_250_leaves_nothing_queued(self):
        inst = smtp_instance(self)
        r = RawSMTP(inst.port("smtp"))
        self.addCleanup(r.close)
        r.reply()
        r.cmd("EHLO c.example.org")
        r.cmd("MAIL FROM:<a@example.org>")
        r.cmd("RCPT TO:<alice@example.test>")
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: unfinished\r\n\r\n" + b"x" * 100000)
        time.sleep(0.3)
        os.kill(self.smtpd_pid(inst), signal.SIGKILL)
        self.assertTrue(r.closed())
        self.assertEqual(queued(inst), [])


if __name__ == "__main__":
    unittest.main()
