"""Whole-instance mail flow: smtpd, qmgr and local-deliver of one running
instance, mail sent with smtplib over real sockets, and the outcome read
from the Maildirs on disk, from `pochta queue`, and from delivery status
notifications parsed with the email package (RFC 3464)."""
import os
import re
import signal
import smtplib
import threading
import time
import unittest

from pochta_instance import pid_alive, timeout, wait_for
from smtp_util import queued
from mailflow_util import (DOMAIN, all_delivered, count_ids, dsn_parts,
                           flow_instance, mail_files, maildir, message,
                           message_id, parse, queue_empty, queue_files,
                           queue_json, read, send, service_pid, Senders,
                           start_flow, wait_empty, wait_files)

ALICE, BOB = "alice@" + DOMAIN, "bob@" + DOMAIN
SMALL = "small@" + DOMAIN


def big(subject, msgid, lines=40):
    """A message of about lines * 72 bytes (over a 1k quota)."""
    return message(subject, msgid, body="".join(
        f"{subject} line {i:04d} " + "x" * 50 + "\r\n" for i in range(lines)))


def strip_delivery_header(data, sender, rcpt):
    """data without the Return-Path and Delivered-To local-deliver puts in
    front and the Received field smtpd added; asserts they are there."""
    head = f"Return-Path: <{sender}>\r\nDelivered-To: {rcpt}\r\n".encode()
    assert data.startswith(head), data[:200]
    rest = data[len(head):]
    assert rest.startswith(b"Received: "), rest[:200]
    rest = rest.split(b"\r\n", 1)[1]
    while rest[:1] in (b" ", b"\t"):
        rest = rest.split(b"\r\n", 1)[1]
    return rest


def edit_users(inst, old, new):
    """Replace text in the user table source and rebuild it."""
    path = inst.conf_path("users")
    with open(path) as f:
        text = f.read()
    assert old in text, text
    with open(path, "w") as f:
        f.write(text.replace(old, new))
    inst.pochta("map", "build", path)


def append_table(inst, name, text):
    with open(inst.conf_path(name), "a") as f:
        f.write(text)
    inst.pochta("map", "build", inst.conf_path(name))


def queued_msg(inst, qid):
    """The `pochta queue list --json` entry of qid, or None."""
    for m in queue_json(inst)["messages"]:
        if m["queue_id"] == qid:
            return m
    return None


def deferred_with(inst, qid, pattern):
    """qid's entry once it is deferred with a reason matching pattern."""
    m = queued_msg(inst, qid)
    if m is None or m["queue_name"] != "deferred":
        return None
    if not all(r["delay_reason"] and re.search(pattern, r["delay_reason"])
               for r in m["recipients"]):
        return None
    return m


# Tables are re-read within about a second of a rebuild (pochta-maps(5)).
TABLE_DELAY = 1.2


class DeliveryTest(unittest.TestCase):
    """Where a message ends up."""

    def test_local_user_gets_exact_message(self):
        inst = flow_instance(self)
        body = ("Plain line\r\n.leading dot, stuffed on the wire\r\n"
                "..two dots\r\n\r\ntrailing blanks   \t\r\n"
                "Привет, 8-bit\r\n" + "z" * 990 + "\r\nlast line")
        msg = message("exact", "exact@client.test", body=body + "\r\n")
        qid = send(inst, BOB, [ALICE], msg, mail_options=["BODY=8BITMIME"])
        files = wait_files(inst, "alice", 1)
        wait_empty(inst)
        data = read(files[0])
        self.assertEqual(strip_delivery_header(data, BOB, ALICE), msg)
        # Maildir++ size in the name, which quotas rely on.
        m = re.search(r",S=(\d+)", os.path.basename(files[0]))
        self.assertIsNotNone(m, files[0])
        self.assertEqual(int(m.group(1)), len(data))
        self.assertEqual(mail_files(inst, "alice", subdirs=("cur", "tmp")),
                         [])
        self.assertEqual(len(all_delivered(inst)), 1)
        inst.wait_for_log(rf"qmgr\[\d+\]: {qid}: to=<{ALICE}>, relay=local,"
                          r" delay=[0-9.]+, dsn=2\.0\.0, status=sent")
        inst.wait_for_log(rf"{qid}: removed")

    def test_alias_with_three_targets_one_remote(self):
        inst = flow_instance(self, start=False)
        append_table(inst, "aliases",
                     "team alice, bob@example.test, dave@far.test\n")
        start_flow(inst)
        msg = message("team", "team@client.test")
        qid = send(inst, "carol@remote.test", ["team@" + DOMAIN], msg)
        for user in ("alice", "bob"):
            f = wait_files(inst, user, 1)
            self.assertEqual(strip_delivery_header(
                read(f[0]), "carol@remote.test", f"{user}@{DOMAIN}"), msg)
        # smtp-out is not running: the remote target waits in deferred/
        # for the smtp transport, and only it.
        m = wait_for(lambda: deferred_with(inst, qid, r"smtp"), 15,
                     what="remote target deferred")
        self.assertEqual([r["address"] for r in m["recipients"]],
                         ["dave@far.test"])
        self.assertRegex(m["recipients"][0]["delay_reason"],
                         r"delivery agent smtp(-out)? unavailable")
        self.assertEqual(m["sender"], "carol@remote.test")
        show = inst.pochta("queue", "show", qid).stdout
        head = show.split("\n\n", 1)[0].splitlines()
        self.assertIn("rcpt: 0 forwarded team@example.test", head)
        # "rcpt: index status address [orcpt=...] [notify=...]"
        rc = {l.split()[3]: l.split()[2] for l in head
              if l.startswith("rcpt: ")}
        self.assertEqual(rc, {"team@example.test": "forwarded",
                              ALICE: "delivered", BOB: "delivered",
                              "dave@far.test": "pending"})
        inst.wait_for_log(rf"{qid}: to=<dave@far\.test>, .*"
                          r"relay=far\.test, .*status=deferred")
        self.assertEqual(len(all_delivered(inst)), 2)

    def test_plus_addressing(self):
        inst = flow_instance(self, start=False)
        folder = maildir(inst, "alice", folder="lists")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(folder, sub))
        open(os.path.join(folder, "maildirfolder"), "w").close()
        start_flow(inst)
        # local_plus_folders is off: the folder is not used.
        m1 = message("plus1", "plus1@client.test")
        send(inst, BOB, ["alice+lists@" + DOMAIN], m1)
        f = wait_files(inst, "alice", 1)
        self.assertEqual(strip_delivery_header(read(f[0]), BOB,
                                               "alice+lists@" + DOMAIN), m1)
        self.assertEqual(mail_files(inst, "alice", folder="lists"), [])
        inst.set_conf(local_plus_folders="yes")
        inst.reload()
        inst.wait_for_log(r"local-deliver\[\d+\]: .*reload", 10)
        m2 = message("plus2", "plus2@client.test")
        send(inst, BOB, ["alice+lists@" + DOMAIN], m2)
        f = wait_files(inst, "alice", 1, folder="lists")
        self.assertEqual(strip_delivery_header(read(f[0]), BOB,
                                               "alice+lists@" + DOMAIN), m2)
        # A tag without a folder: INBOX, and no folder is made.
        m3 = message("plus3", "plus3@client.test")
        send(inst, BOB, ["alice+nosuch@" + DOMAIN], m3)
        wait_files(inst, "alice", 2)
        self.assertFalse(os.path.exists(maildir(inst, "alice",
                                                folder="nosuch")))
        # A quoted local part smtpd accepted for alice is delivered to
        # alice, never bounced (that would be backscatter), and its
        # extension can name no path.
        m4 = message("plus4", "plus4@client.test")
        qid = send(inst, BOB, ['"alice+../../bob"@' + DOMAIN], m4)
        f = wait_files(inst, "alice", 3)
        wait_empty(inst)
        inst.wait_for_log(rf"{qid}: to=<\"alice\+\.\./\.\./bob\"@"
                          r"example\.test>, relay=local, .*status=sent")
        self.assertEqual(mail_files(inst, "bob"), [])
        self.assertEqual(count_ids(inst), {"plus1@client.test": 1,
                                           "plus2@client.test": 1,
                                           "plus3@client.test": 1,
                                           "plus4@client.test": 1})

    def test_catch_all_mailbox(self):
        inst = flow_instance(self, users=("catchall@" + DOMAIN,
                                          "real@catch.test"), start=False)
        inst.write("virtual", "@catch.test catchall@example.test\n"
                   "real@catch.test real@catch.test\n")
        inst.pochta("map", "build", inst.conf_path("virtual"))
        inst.set_conf(virtual_mailbox_domains="catch.test",
                      virtual_alias_maps="lmdb:" +
                      inst.conf_path("virtual"))
        start_flow(inst)
        with smtplib.SMTP("127.0.0.1", inst.port("smtp"),
                          timeout=timeout(10)) as s:
            s.ehlo("client.test")
            for n, rcpt in enumerate(("whoever@catch.test",
                                      "Other.Name@catch.test",
                                      "real@catch.test")):
                send(inst, BOB, [rcpt], message("c", f"c{n}@client.test"),
                     smtp=s)
            # Our own domain has no catch-all: unknown users are refused
            # at RCPT time, never bounced later.
            s.mail(BOB)
            self.assertEqual(s.rcpt("whoever@" + DOMAIN)[0], 550)
            s.rset()
        caught = wait_files(inst, "catchall", 2)
        got = wait_files(inst, "real", 1, domain="catch.test")
        wait_empty(inst)
        self.assertEqual(message_id(read(got[0])), "c2@client.test")
        self.assertEqual(sorted(message_id(read(f)) for f in caught),
                         ["c0@client.test", "c1@client.test"])
        self.assertEqual(len(all_delivered(inst)), 3)


    def test_one_message_many_recipients(self):
        users = [f"v{i}@{DOMAIN}" for i in range(10)]
        inst = flow_instance(self, users=users)
        rcpts = [f"v{i % 10}+t{i}@{DOMAIN}" for i in range(300)]
        msg = message("many", "many@client.test")
        send(inst, BOB, rcpts, msg)
        wait_for(lambda: len(all_delivered(inst)) >= 300, 60,
                 what="300 deliveries")
        wait_empty(inst)
        got = {}
        for i in range(10):
            for f in mail_files(inst, f"v{i}"):
                data = read(f)
                to = re.search(rb"^Delivered-To: (\S+)\r$", data,
                               re.M).group(1).decode()
                self.assertTrue(to.startswith(f"v{i}+"), to)
                got[to] = got.get(to, 0) + 1
                self.assertTrue(data.endswith(msg))
        self.assertEqual(got, {r: 1 for r in rcpts})


class RetryTest(unittest.TestCase):
    """Deferrals, retries and the operator's flush."""

    def test_over_quota_deferred_until_quota_raised(self):
        inst = flow_instance(self, quotas={SMALL: "1k"},
                             minimal_backoff_time="1h",
                             maximal_backoff_time="2h")
        qid = send(inst, BOB, [SMALL], big("quota", "quota@client.test"))
        m = wait_for(lambda: deferred_with(inst, qid, r"^4\.2\.2"), 15,
                     what="4.2.2 deferral")
        self.assertEqual(m["recipients"][0]["address"], SMALL)
        self.assertGreater(m["next_retry"], time.time() + 3000)
        inst.wait_for_log(rf"{qid}: to=<{SMALL}>, relay=local, .*"
                          r"dsn=4\.2\.2, status=deferred \(mailbox full\)")
        self.assertEqual(mail_files(inst, "small"), [])
        edit_users(inst, "quota=1k", "quota=1m")
        time.sleep(TABLE_DELAY)
        # Nothing retries by itself for an hour...
        self.assertIsNotNone(deferred_with(inst, qid, r"^4\.2\.2"))
        # ...but flush does, now.
        p = inst.pochta("queue", "flush")
        self.assertEqual(p.stderr, "")
        f = wait_files(inst, "small", 1, 15)
        self.assertEqual(message_id(read(f[0])), "quota@client.test")
        wait_empty(inst)
        inst.wait_for_log(rf"{qid}: to=<{SMALL}>, relay=local, .*"
                          r"status=sent")

    def test_unwritable_mailbox_deferred_then_retried(self):
        inst = flow_instance(self)
        send(inst, BOB, [ALICE], message("first", "first@client.test"))
        wait_files(inst, "alice", 1)
        # The Maildir's tmp/ replaced by a regular file: unlike chmod,
        # this stops root too (the tests may run as root).
        tmp = os.path.join(maildir(inst, "alice"), "tmp")
        os.rmdir(tmp)
        with open(tmp, "w") as f:
            f.write("in the way\n")
        qid = send(inst, BOB, [ALICE], message("second",
                                               "second@client.test"))
        wait_for(lambda: deferred_with(inst, qid, r"^4\."), 15,
                 what="temporary failure")
        inst.wait_for_log(rf"{qid}: to=<{ALICE}>, relay=local, .*"
                          r"dsn=4\.\d\.\d, status=deferred")
        self.assertEqual(len(mail_files(inst, "alice")), 1)
        os.unlink(tmp)
        os.mkdir(tmp)
        # Retried on its own after the backoff, no command needed.
        wait_files(inst, "alice", 2, 15)
        wait_empty(inst)
        self.assertEqual(count_ids(inst), {"first@client.test": 1,
                                           "second@client.test": 1})
        self.assertEqual(os.listdir(tmp), [])


class NotificationTest(unittest.TestCase):
    """Bounces and success notices (RFC 3464) as they reach a Maildir."""

    def check_report(self, path, rcpt):
        """Parse a DSN in a Maildir; checks the envelope and the
        multipart/report structure; returns (message, status groups,
        third part)."""
        data = read(path)
        self.assertTrue(data.startswith(
            f"Return-Path: <>\r\nDelivered-To: {rcpt}\r\n".encode()),
            data[:200])
        m = parse(path)
        self.assertEqual(m.get_content_type(), "multipart/report")
        self.assertEqual(m.get_param("report-type"), "delivery-status")
        self.assertIn("MAILER-DAEMON@mail.example.test", m["From"])
        self.assertIn(rcpt, m["To"])
        text, groups, third = dsn_parts(m)
        self.assertEqual(text.get_content_type(), "text/plain")
        self.assertEqual(m.get_payload()[1].get_content_type(),
                         "message/delivery-status")
        self.assertEqual(groups[0]["Reporting-MTA"].strip(),
                         "dns; mail.example.test")
        self.assertIsNotNone(groups[0]["Arrival-Date"])
        return m, groups, third

    def test_lifetime_expiry_bounce(self):
        inst = flow_instance(self, quotas={SMALL: "1k"},
                             maximal_queue_lifetime="3s")
        hdrs = big("expire-hdrs", "hdrs@client.test")
        full = big("expire-full", "full@client.test")
        send(inst, BOB, [SMALL], hdrs, mail_options=["RET=HDRS",
                                                     "ENVID=env-hdrs"])
        send(inst, BOB, [SMALL], full, mail_options=["RET=FULL"],
             rcpt_options=["ORCPT=rfc822;Small@Example.Test"])
        files = wait_files(inst, "bob", 2, 30)
        wait_empty(inst)
        self.assertEqual(mail_files(inst, "small"), [])
        seen = set()
        for path in files:
            m, groups, third = self.check_report(path, BOB)
            r = groups[1]
            self.assertEqual(r["Final-Recipient"].strip(),
                             "rfc822; " + SMALL)
            self.assertEqual(r["Action"].strip(), "failed")
            self.assertEqual(r["Status"].strip(), "4.4.7")
            # The last deferral's reason says why.
            self.assertIn("mailbox full", " ".join(
                r["Diagnostic-Code"].split()))
            self.assertIsNotNone(r["Last-Attempt-Date"])
            if third.get_content_type() == "text/rfc822-headers":
                seen.add("hdrs")
                self.assertEqual(groups[0]["Original-Envelope-Id"].strip(),
                                 "env-hdrs")
                shown = third.get_payload()
                self.assertIn("Subject: expire-hdrs", shown)
                self.assertIn("Message-ID: <hdrs@client.test>", shown)
                self.assertNotIn("line 0001", shown)
            else:
                seen.add("full")
                self.assertEqual(third.get_content_type(), "message/rfc822")
                self.assertIsNone(groups[0]["Original-Envelope-Id"])
                self.assertEqual("".join(r["Original-Recipient"].split()),
                                 "rfc822;Small@Example.Test")
                orig = third.get_payload()[0]
                self.assertEqual(orig["Message-ID"], "<full@client.test>")
                self.assertEqual(orig.get_payload().encode(),
                                 full.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(seen, {"hdrs", "full"})

    def test_bounce_of_huge_message_is_whole_or_headers(self):
        # Past the size a notice carries, the original cannot come back
        # whole: a cut message/rfc822 would be a broken message (an
        # unterminated MIME structure, a body that silently ends), so the
        # headers alone must come back.
        inst = flow_instance(self, quotas={SMALL: "1k"},
                             local_quota_bounce="yes")
        line = "h" * 998 + "\r\n"
        msg = message("huge bounce", "hb@client.test", body=line * 17500)
        send(inst, BOB, [SMALL], msg, mail_options=["RET=FULL"])
        f = wait_files(inst, "bob", 1, 30)
        wait_empty(inst)
        m, groups, third = self.check_report(f[0], BOB)
        self.assertEqual(groups[1]["Status"].strip(), "5.2.2")
        if third.get_content_type() == "message/rfc822":
            got = third.get_payload()[0].get_payload().encode()
            want = msg.split(b"\r\n\r\n", 1)[1]
            self.assertTrue(got == want, f"the returned message is cut: "
                            f"{len(got)} of {len(want)} body bytes")
        else:
            self.assertEqual(third.get_content_type(),
                             "text/rfc822-headers")
            self.assertIn("Message-ID: <hb@client.test>",
                          third.get_payload())
            self.assertLess(os.path.getsize(f[0]), 100000)

    def test_expired_bounce_goes_to_postmaster(self):
        # A bounce to a sender nobody can reach expires after
        # bounce_queue_lifetime and is reported to the postmaster; that
        # report is the end of it.
        inst = flow_instance(self, users=("admin@" + DOMAIN,),
                             quotas={SMALL: "1k"}, local_quota_bounce="yes",
                             bounce_queue_lifetime="3s")
        qid = send(inst, "carol@remote.test", [SMALL],
                   big("far", "far@client.test"))
        f = wait_files(inst, "admin", 1, 30)
        wait_empty(inst)
        m = parse(f[0])
        self.assertIn("postmaster@mail.example.test", m["To"])
        groups = m.get_payload()[1].get_payload()
        self.assertEqual(groups[1]["Final-Recipient"].strip(),
                         "rfc822; carol@remote.test")
        self.assertEqual(groups[1]["Action"].strip(), "failed")
        self.assertEqual(groups[1]["Status"].strip(), "4.4.7")
        self.assertEqual(m.get_payload()[2].get_content_type(),
                         "message/rfc822")
        inst.wait_for_log(rf"{qid}: sender non-delivery notification")
        time.sleep(1.5)
        self.assertEqual(len(all_delivered(inst)), 1)
        self.assertTrue(queue_empty(inst))

    def test_notify_success(self):
        inst = flow_instance(self)
        send(inst, BOB, [ALICE], message("n1", "n1@client.test"),
             rcpt_options=["NOTIFY=SUCCESS"])
        # Without NOTIFY: no notice for a delivery.
        send(inst, BOB, [ALICE], message("n2", "n2@client.test"))
        wait_files(inst, "alice", 2)
        notice = wait_files(inst, "bob", 1)
        wait_empty(inst)
        m, groups, third = self.check_report(notice[0], BOB)
        r = groups[1]
        self.assertEqual(r["Final-Recipient"].strip(), "rfc822; " + ALICE)
        self.assertEqual(r["Action"].strip(), "delivered")
        self.assertEqual(r["Status"].strip(), "2.0.0")
        time.sleep(1.5)     # a few queue runs: nothing else arrives
        self.assertEqual(len(mail_files(inst, "bob")), 1)
        self.assertEqual(len(all_delivered(inst)), 3)

    def test_notify_success_through_an_alias(self):
        # An ordinary alias passes NOTIFY and ORCPT on to every target
        # (RFC 3461 6.2.7.1): the sender hears of each delivery, under the
        # address it used.
        inst = flow_instance(self, users=(ALICE, BOB, "carol@" + DOMAIN),
                             start=False)
        append_table(inst, "aliases", "team alice, bob@example.test\n")
        start_flow(inst)
        send(inst, "carol@" + DOMAIN, ["team@" + DOMAIN],
             message("t", "t@client.test"),
             rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;Team@" + DOMAIN])
        wait_files(inst, "alice", 1)
        wait_files(inst, "bob", 1)
        wait_for(lambda: mail_files(inst, "carol"), 15, what="notice")
        wait_empty(inst)
        reported = {}
        for path in mail_files(inst, "carol"):
            _, groups, _ = self.check_report(path, "carol@" + DOMAIN)
            for r in groups[1:]:
                self.assertEqual(r["Action"].strip(), "delivered")
                self.assertEqual("".join(r["Original-Recipient"].split()),
                                 "rfc822;Team@" + DOMAIN)
                rcpt = r["Final-Recipient"].split(";", 1)[1].strip()
                reported[rcpt] = reported.get(rcpt, 0) + 1
        self.assertEqual(reported, {ALICE: 1, BOB: 1})

    def test_no_bounce_to_null_sender(self):
        inst = flow_instance(self, users=(ALICE, "admin@" + DOMAIN),
                             quotas={SMALL: "1k"}, local_quota_bounce="yes")
        qid = send(inst, "<>", [SMALL], big("null", "null@client.test"))
        inst.wait_for_log(rf"{qid}: to=<{SMALL}>, relay=local, .*"
                          r"dsn=5\.2\.2, status=bounced")
        inst.wait_for_log(rf"{qid}: sender is <>, notice not sent")
        # Mail from <> is otherwise delivered as any other.
        send(inst, "<>", [ALICE], message("ok", "nullok@client.test"))
        f = wait_files(inst, "alice", 1)
        self.assertTrue(read(f[0]).startswith(b"Return-Path: <>\r\n"))
        wait_empty(inst)
        time.sleep(1.5)
        self.assertEqual(count_ids(inst), {"nullok@client.test": 1})
        self.assertTrue(queue_empty(inst))

    def test_double_bounce_to_postmaster_and_no_further(self):
        # pochta init aliases postmaster to admin@DOMAIN.
        inst = flow_instance(self, users=("admin@" + DOMAIN,),
                             quotas={SMALL: "1k"}, local_quota_bounce="yes")
        ghost = "ghost@" + DOMAIN       # not a user: its bounce bounces
        send(inst, ghost, [SMALL], big("dbl", "dbl@client.test"))
        f = wait_files(inst, "admin", 1, 20)
        wait_empty(inst)
        m = parse(f[0])
        self.assertEqual(m.get_content_type(), "multipart/report")
        self.assertIn("postmaster@mail.example.test", m["To"])
        groups = m.get_payload()[1].get_payload()
        self.assertEqual(groups[1]["Final-Recipient"].strip(),
                         "rfc822; " + ghost)
        self.assertEqual(groups[1]["Status"].strip(), "5.1.1")
        # The double bounce holds the bounce that failed.
        inner = m.get_payload()[2].get_payload()[0]
        self.assertEqual(inner.get_content_type(), "multipart/report")
        # Postmaster's mailbox gone too: the double bounce fails and is
        # dropped; nothing loops.
        inst.pochta("user", "del", "admin@" + DOMAIN)
        time.sleep(TABLE_DELAY)
        qid = send(inst, ghost, [SMALL], big("dbl2", "dbl2@client.test"))
        inst.wait_for_log(rf"{qid}: sender non-delivery notification")
        wait_for(lambda: len(re.findall(r"non-delivery notification",
                                        inst.log())) == 4, 20,
                 what="the second chain's two notices")
        wait_empty(inst)
        time.sleep(2)
        self.assertTrue(queue_empty(inst))
        self.assertEqual(len(re.findall(r"non-delivery notification",
                                        inst.log())), 4)
        self.assertEqual(len(all_delivered(inst)), 1)
        self.assertEqual(queued(inst, "corrupt"), [])


class QueueCommandTest(unittest.TestCase):
    """Every `pochta queue` command against the running qmgr."""

    def test_every_command(self):
        inst = flow_instance(self, quotas={SMALL: "1k"},
                             minimal_backoff_time="1h",
                             maximal_backoff_time="2h")
        ids = [send(inst, BOB, [SMALL], big(f"cmd{i}", f"cmd{i}@client.test"))
               for i in range(4)]
        for qid in ids:
            wait_for(lambda: deferred_with(inst, qid, r"^4\.2\.2"), 15,
                     what=f"{qid} deferred")
        # list, text and JSON.
        doc = queue_json(inst)
        self.assertEqual(doc["count"], 4)
        self.assertEqual([m["queue_id"] for m in doc["messages"]], ids)
        text = inst.pochta("queue", "list").stdout
        for qid in ids:
            self.assertRegex(text, rf"(?m)^{qid} deferred +\d+ .* {BOB}$")
        self.assertIn("(4.2.2 mailbox full)\n" + " " * 60 + SMALL, text)
        self.assertTrue(text.endswith("in 4 Requests.\n"), text)
        # show
        out = inst.pochta("queue", "show", ids[0]).stdout
        head, body = out.split("\n\n", 1)
        lines = head.splitlines()
        self.assertIn(f"id: {ids[0]}", lines)
        self.assertIn("queue: deferred", lines)
        self.assertIn(f"sender: {BOB}", lines)
        self.assertIn(f"rcpt: 0 pending {SMALL}", lines)
        self.assertTrue(any(re.match(r"defer: 0 1 times?, last .*: "
                                     r"4\.2\.2 mailbox full$", l)
                            for l in lines), lines)
        self.assertIn("Message-ID: <cmd0@client.test>", body)
        # hold one, delete one.
        p = inst.pochta("queue", "hold", ids[0])
        self.assertEqual(p.stderr, "")
        self.assertEqual(queued_msg(inst, ids[0])["queue_name"], "hold")
        inst.pochta("queue", "delete", ids[1])
        self.assertIsNone(queued_msg(inst, ids[1]))
        p = inst.pochta("queue", "delete", ids[1], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith("pochta: "), p.stderr)
        # Room in the mailbox: requeue delivers one at once, the other
        # waits for its retry time.
        edit_users(inst, "quota=1k", "quota=1m")
        time.sleep(TABLE_DELAY)
        inst.pochta("queue", "requeue", ids[2])
        f = wait_files(inst, "small", 1)
        self.assertEqual(message_id(read(f[0])), "cmd2@client.test")
        self.assertEqual(queued_msg(inst, ids[3])["queue_name"], "deferred")
        # flush delivers the deferred one, never the held one.
        inst.pochta("queue", "flush")
        wait_files(inst, "small", 2)
        inst.pochta("queue", "flush")
        time.sleep(1.5)
        self.assertEqual(queued_msg(inst, ids[0])["queue_name"], "hold")
        self.assertEqual(len(mail_files(inst, "small")), 2)
        # release, and it goes on the next flush (or at once).
        inst.pochta("queue", "release", ids[0])
        m = queued_msg(inst, ids[0])
        self.assertNotEqual(m and m["queue_name"], "hold")
        inst.pochta("queue", "flush")
        wait_files(inst, "small", 3)
        wait_empty(inst)
        self.assertEqual(count_ids(inst), {"cmd0@client.test": 1,
                                           "cmd2@client.test": 1,
                                           "cmd3@client.test": 1})
        # ALL on an empty queue is fine.
        for cmd in ("hold", "release", "requeue", "delete"):
            inst.pochta("queue", cmd, "ALL")
        self.assertEqual(queue_json(inst)["count"], 0)

    def test_queue_state_survives_crash_and_restart(self):
        inst = flow_instance(self, quotas={SMALL: "1k"},
                             minimal_backoff_time="1h",
                             maximal_backoff_time="2h")
        held, waiting = [send(inst, BOB, [SMALL], big(f"s{i}",
                                                      f"s{i}@client.test"))
                         for i in range(2)]
        for qid in (held, waiting):
            wait_for(lambda: deferred_with(inst, qid, r"^4\.2\.2"), 15,
                     what=f"{qid} deferred")
        inst.pochta("queue", "hold", held)
        old = service_pid(inst, "qmgr")
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: (service_pid(inst, "qmgr") or old) != old, 20,
                 what="qmgr restarted")
        inst.stop()
        edit_users(inst, "quota=1k", "quota=1m")
        start_flow(inst)
        self.assertEqual(queued_msg(inst, held)["queue_name"], "hold")
        m = queued_msg(inst, waiting)
        self.assertEqual(m["queue_name"], "deferred")
        self.assertEqual(m["recipients"][0]["delay_reason"],
                         "4.2.2 mailbox full")
        self.assertGreater(m["next_retry"], time.time() + 3000)
        inst.pochta("queue", "flush")
        f = wait_files(inst, "small", 1)
        self.assertEqual(message_id(read(f[0])), "s1@client.test")
        time.sleep(1.5)
        self.assertEqual(queued_msg(inst, held)["queue_name"], "hold")
        inst.pochta("queue", "release", held)
        wait_files(inst, "small", 2)
        wait_empty(inst)
        self.assertEqual(count_ids(inst), {"s0@client.test": 1,
                                           "s1@client.test": 1})

    def test_commands_while_mail_flows(self):
        # The first half of the mail comes while no delivery agent runs,
        # so it piles up in the queue; the second half while local-deliver
        # delivers. Listings and every command run all along.
        users = [f"u{i}@{DOMAIN}" for i in range(5)]
        inst = flow_instance(self, users=users, start=False)
        inst.disable("local")
        inst.start()
        total, sessions = 150, 3
        half = threading.Barrier(sessions + 1, timeout=timeout(60))
        go = threading.Event()

        def before(n):
            if n // sessions == total // sessions // 2:
                half.wait()
                go.wait(timeout(60))
        jobs = [(BOB, users[n % 5], message(f"flow {n}",
                                            f"flow{n}@client.test"))
                for n in range(total)]
        senders = Senders(inst, jobs, sessions, before)
        held = 0

        def commands():
            nonlocal held
            doc = queue_json(inst)
            listed = [m["queue_id"] for m in doc["messages"]]
            self.assertEqual(len(listed), len(set(listed)))
            self.assertTrue(all(m["error"] is None for m in
                                doc["messages"]))
            for cmd in (("hold", "ALL"), ("requeue", "ALL"),
                        ("release", "ALL"), ("flush",)):
                out = inst.pochta("queue", *cmd).stdout
                if cmd[0] == "hold":
                    held += int(re.search(r"(\d+) messages", out).group(1))
        try:
            commands()
            half.wait()
            commands()
            self.assertGreater(held, 0)
            inst.enable("local")
            inst.reload()
        finally:
            go.set()
            if senders.errors:
                half.abort()
        rounds = 0
        while senders.alive() or rounds < 3:
            rounds += 1
            commands()
        senders.join()

        def done():
            inst.pochta("queue", "release", "ALL")
            inst.pochta("queue", "flush")
            return sum(count_ids(inst).values()) >= total and \
                queue_empty(inst)
        wait_for(done, 60, interval=0.5, what="every message delivered")
        self.assertEqual(count_ids(inst),
                         {f"flow{n}@client.test": 1 for n in range(total)})


class CrashTest(unittest.TestCase):
    """kill -9 of qmgr and local-deliver while mail is delivered."""

    def check_whole(self, inst, sent):
        """Every delivered file is a whole copy of what was sent."""
        for path in all_delivered(inst):
            data = read(path)
            mid = message_id(data)
            self.assertIn(mid, sent)
            self.assertTrue(data.endswith(sent[mid]),
                            f"{path} is not a whole message")

    def test_kill_qmgr_mid_burst(self):
        users = [f"u{i}@{DOMAIN}" for i in range(5)]
        inst = flow_instance(self, users=users,
                             local_destination_concurrency_limit="5")
        total = 120
        jobs = [(BOB, users[n % 5], big(f"burst {n}",
                                        f"burst{n}@client.test", 5))
                for n in range(total)]
        sent = {message_id(msg): msg for _, _, msg in jobs}
        old = service_pid(inst, "qmgr")
        senders = Senders(inst, jobs)
        try:
            wait_for(lambda: len(all_delivered(inst)) >= 20, 30,
                     interval=0.01, what="deliveries under way")
            os.kill(old, signal.SIGKILL)
            at_kill = len(all_delivered(inst))
        finally:
            senders.join()
        self.assertLess(at_kill, total, "the burst was over before the kill")
        wait_for(lambda: not pid_alive(old), 10, what="qmgr gone")
        new = wait_for(lambda: (lambda p: p if p and p != old else None)(
            service_pid(inst, "qmgr")), 20, what="qmgr restarted")
        self.assertNotEqual(new, old)
        wait_for(lambda: len(count_ids(inst)) == total, 60, interval=0.2,
                 what="every message delivered")
        wait_empty(inst)
        counts = count_ids(inst)
        self.assertEqual(set(counts), set(sent))
        # Only what was in flight at the kill may come twice.
        self.assertLessEqual(sum(c - 1 for c in counts.values()), 5,
                             counts)
        self.check_whole(inst, sent)
        for u in range(5):
            self.assertEqual(os.listdir(os.path.join(
                maildir(inst, f"u{u}"), "tmp")), [])

    def test_kill_local_deliver_mid_write(self):
        inst = flow_instance(self)
        line = "y" * 998 + "\r\n"
        msg = message("huge", "huge@client.test", body=line * 20000)
        pid = service_pid(inst, "local")
        tmp = os.path.join(maildir(inst, "alice"), "tmp")
        send(inst, BOB, [ALICE], message("warm", "warm@client.test"))
        wait_files(inst, "alice", 1)
        qids = []
        t = threading.Thread(target=lambda: qids.append(
            send(inst, BOB, [ALICE], msg)))
        t.start()
        try:
            wait_for(lambda: os.listdir(tmp), 30, interval=0.001,
                     what="a file being written in tmp/")
            os.kill(pid, signal.SIGKILL)
        finally:
            t.join()
        wait_for(lambda: not pid_alive(pid), 10, what="local-deliver gone")
        files = wait_files(inst, "alice", 2, 30)
        wait_empty(inst)
        new = wait_for(lambda: service_pid(inst, "local"), 10,
                       what="local-deliver restarted")
        self.assertNotEqual(new, pid)
        self.assertEqual(count_ids(inst), {"warm@client.test": 1,
                                           "huge@client.test": 1})
        self.check_whole(inst, {"warm@client.test": message(
            "warm", "warm@client.test"), "huge@client.test": msg})
        huge = [f for f in files if os.path.getsize(f) > len(msg)]
        self.assertEqual(len(huge), 1)
        # The agent died under qmgr: a deferral, then the retry.
        self.assertEqual(len(qids), 1)
        inst.wait_for_log(rf"qmgr\[\d+\]: {qids[0]}: to=<{ALICE}>, "
                          r"relay=local, .*status=deferred")
        inst.wait_for_log(rf"qmgr\[\d+\]: {qids[0]}: to=<{ALICE}>, "
                          r"relay=local, .*status=sent")


class VolumeTest(unittest.TestCase):

    def test_thousand_messages_ten_users_exactly_once(self):
        users = [f"v{i}@{DOMAIN}" for i in range(10)]
        inst = flow_instance(self, users=users)
        total, sessions = 1000, 5
        Senders(inst, [("sender@remote.test", users[n % 10],
                        message(f"m{n}", f"m{n}@client.test"))
                       for n in range(total)], sessions).join()
        wait_for(lambda: len(all_delivered(inst)) >= total, 90,
                 interval=0.2, what=f"{total} deliveries")
        wait_empty(inst)
        self.assertEqual(count_ids(inst),
                         {f"m{n}@client.test": 1 for n in range(total)})
        for i in range(10):
            files = mail_files(inst, f"v{i}")
            self.assertEqual(len(files), total // 10)
            for f in files:
                n = int(message_id(read(f))[1:].split("@")[0])
                self.assertEqual(n % 10, i)
        self.assertEqual(queue_json(inst)["count"], 0)
        self.assertEqual(queue_files(inst), [])


if __name__ == "__main__":
    unittest.main()
