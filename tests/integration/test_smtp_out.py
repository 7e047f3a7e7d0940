"""smtp-out: whole instances exchanging mail through a fake DNS server
(pochta-smtp-out(8)), and remote servers in Python that fail, defer,
demand AUTH or misbehave."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import fakedns
from pochta_instance import free_port, timeout, wait_for
from smtp_out_util import (dsn_report, fake, instance, mailbox, queue_files,
                           start, submit, wait_mail)

A, B = "127.0.0.2", "127.0.0.3"
FAKE = "127.0.0.4"


def tls_files(inst):
    return (inst.conf_path("tls/cert.pem"), inst.conf_path("tls/key.pem"))


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True,
                   timeout=timeout(30))


def openssl_out(*args, data=None):
    return subprocess.run(["openssl", *args], check=True, input=data,
                          capture_output=True, timeout=timeout(30)).stdout


def spki_sha256(cert):
    """Hex SHA-256 of cert's SubjectPublicKeyInfo: TLSA "x 1 1" data."""
    pub = openssl_out("x509", "-pubkey", "-noout", "-in", cert)
    der = openssl_out("pkey", "-pubin", "-outform", "DER", data=pub)
    return hashlib.sha256(der).hexdigest()


def cert_sha256(cert):
    """Hex SHA-256 of cert's DER: TLSA "x 0 1" data."""
    return hashlib.sha256(openssl_out("x509", "-in", cert, "-outform",
                                      "DER")).hexdigest()


def make_ca_and_cert(testcase, name):
    """A test CA and a certificate it signs for DNS name name, in a
    temporary directory: (ca.pem, cert.pem, key.pem)."""
    d = tempfile.mkdtemp(prefix="pochta-certs-")
    testcase.addCleanup(shutil.rmtree, d, ignore_errors=True)
    ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    csr = os.path.join(d, "cert.csr")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days",
            "2", "-subj", "/CN=pochta test CA")
    openssl("req", "-new", *ec, "-keyout", key, "-out", csr, "-subj",
            f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
            "-set_serial", "2", "-days", "2", "-copy_extensions", "copy",
            "-out", cert)
    return ca, cert, key


class SmtpOutTest(unittest.TestCase):

    def zone(self, extra=None):
        z = fakedns.Zone()
        z.mx("a.test", 10, "mx.a.test")
        z.a("mx.a.test", A)
        z.mx("b.test", 10, "mx.b.test")
        z.a("mx.b.test", B)
        if extra:
            extra(z)
        return fakedns.start(self, z)

    def assert_alive(self, inst):
        bad = [l for l in inst.log().splitlines()
               if re.search(r"killed by signal|exited with status (?!0\b)",
                            l)]
        self.assertEqual(bad, [])

    def one(self, extra_zone=None, **conf):
        """Instance A alone (its mail to remote domains goes to fakes)."""
        dns = self.zone(extra_zone)
        a = instance(self, A, "a.test", dns, users=("alice@a.test",), **conf)
        return a

    def via_fake(self, conf=None, tls=False, **kw):
        """Instance A, started, whose mail for c.test goes to a fake
        server (made with kw; with STARTTLS if tls) on FAKE, the MX of
        c.test."""
        a = self.one(lambda z: (z.mx("c.test", 10, "mx.c.test"),
                                z.a("mx.c.test", FAKE)))
        f = fake(self, FAKE, tls_files=tls_files(a) if tls else None, **kw)
        a.set_conf(smtp_out_port=f.port, **(conf or {}))
        start(a)
        return a, f

    def via_smarthost(self, stored, wanted):
        """Instance A, started, relaying everything through a fake
        smarthost that wants AUTH with wanted; A has stored."""
        a = self.one()
        port = free_port()
        f = fake(self, FAKE, port=port, tls_files=tls_files(a),
                 auth=wanted)
        secrets = a.conf_path("sasl_passwd")
        with open(secrets, "w") as fh:
            fh.write(f"[{FAKE}]:{port} {stored[0]}:{stored[1]}\n")
        a.pochta("map", "build", secrets)
        a.set_conf(relayhost=f"[{FAKE}]:{port}",
                   smtp_sasl_password_maps=f"lmdb:{secrets}")
        start(a)
        return a, f

    def send_c(self, zone, subject):
        """Instance A, started with zone, after it queued a message from
        alice@a.test to carol@c.test."""
        a = self.one(zone)
        start(a)
        submit(a, "alice@a.test", ["carol@c.test"], subject)
        return a

    def bounce_of(self, a, secs=30):
        msgs = wait_mail(a, "alice", "a.test", secs=secs)
        return dsn_report(msgs[0])

    def pair(self, extra_zone=None, **a_conf):
        """Instances A (with a_conf) and B, not started, each sending to
        the other's smtpd port."""
        dns = self.zone(extra_zone)
        a = instance(self, A, "a.test", dns, users=("alice@a.test",),
                     **a_conf)
        b = instance(self, B, "b.test", dns, users=("bob@b.test",))
        a.set_conf(smtp_out_port=b.port("smtp"))
        b.set_conf(smtp_out_port=a.port("smtp"))
        return a, b

    def send_to_b(self, a, b, subject):
        start(a)
        start(b)
        submit(a, "alice@a.test", ["bob@b.test"], subject)

    def assert_sent_to_b_over_tls(self, a, b, subject, verified=False,
                                  dane=False):
        """bob@b.test got subject from A over STARTTLS, and A logged the
        session (with a verified certificate if verified, matched by DANE
        if dane) and the 250."""
        got = wait_mail(b, "bob", "b.test")
        self.assertIn(b"Subject: " + subject.encode(), got[0])
        self.assertRegex(got[0].decode(), r"with ESMTPS")
        self.assertIn(b"using TLS", got[0])
        a.wait_for_log(r"TLS to mx\.b\.test\[127\.0\.0\.3\]:\d+: "
                       r"TLSv1\.[23] " + (r".*, dane-verified$" if dane
                                          else r".*, verified$" if verified
                                          else ""))
        a.wait_for_log(r"to=<bob@b\.test>, relay=mx\.b\.test\[127\.0\.0"
                       r"\.3\]:\d+, .*status=sent \(250 ")

    def test_two_instances_both_ways_with_starttls(self):
        a, b = self.pair()
        self.send_to_b(a, b, "there")
        self.assert_sent_to_b_over_tls(a, b, "there")
        submit(b, "bob@b.test", ["alice@a.test"], "back")
        got = wait_mail(a, "alice", "a.test")
        self.assertIn(b"Subject: back", got[0])
        self.assert_alive(a)
        self.assert_alive(b)

    def test_primary_mx_down_secondary_gets_it(self):
        def extra(z):
            z.mx("c.test", 10, "down.c.test")
            z.a("down.c.test", "127.0.0.9")
            z.mx("c.test", 20, "up.c.test")
            z.a("up.c.test", FAKE)
        a = self.one(extra)
        f = fake(self, FAKE)
        a.set_conf(smtp_out_port=f.port)
        start(a)
        submit(a, "alice@a.test", ["carol@c.test"], "second")
        wait_for(lambda: f.messages, 30, what="message at the secondary")
        a.wait_for_log(r"to=<carol@c\.test>, relay=up\.c\.test\[127\.0\.0"
                       r"\.4\]:\d+,.*status=sent")
        self.assertIn("Subject: second", f.messages[0]["data"])

    def test_remote_4xx_deferred_then_delivered(self):
        def rcpt(env, line, conn_no):
            return ("451 4.3.2 try again later" if conn_no == 1
                    else "250 2.1.5 ok")
        a, f = self.via_fake(
            conf=dict(smtp_connection_cache_time_limit=0), rcpt=rcpt)
        submit(a, "alice@a.test", ["carol@c.test"], "later")
        a.wait_for_log(r"to=<carol@c\.test>.*status=deferred \(451 4\.3\.2 "
                       r"try again later\)")
        wait_for(lambda: f.messages, 30, what="delivery on retry")
        a.wait_for_log(r"to=<carol@c\.test>.*status=sent")
        self.assertGreaterEqual(f.connections, 2)

    def test_remote_5xx_bounced_with_remote_text(self):
        a, f = self.via_fake(rcpt=lambda e, l, n:
                             "550 5.1.1 <carol@c.test>: no such user here")
        submit(a, "alice@a.test", ["carol@c.test"], "nouser")
        action, status, diag, mta = self.bounce_of(a)
        self.assertEqual(action, "failed")
        self.assertEqual(status, "5.1.1")
        self.assertIn("no such user here", diag)
        self.assertIn("mx.c.test", mta)
        self.assertEqual(f.messages, [])

    def test_null_mx_bounces(self):
        a = self.send_c(lambda z: z.null_mx("c.test"), "nullmx")
        action, status, diag, mta = self.bounce_of(a)
        self.assertEqual((action, status), ("failed", "5.1.10"))

    def test_nxdomain_bounces(self):
        a = self.send_c(lambda z: z.nxdomain("c.test"), "nx")
        action, status, diag, mta = self.bounce_of(a)
        self.assertEqual((action, status), ("failed", "5.1.2"))

    def test_servfail_defers(self):
        a = self.send_c(lambda z: z.servfail("c.test"), "sf")
        a.wait_for_log(r"to=<carol@c\.test>.*status=deferred \(.*lookup "
                       r"failed", secs=30)
        self.assertEqual(mailbox(a, "alice", "a.test"), [])
        wait_for(lambda: queue_files(a, "deferred"), 10, what="deferred")

    def test_a_record_only_domain(self):
        a = self.one(lambda z: z.a("c.test", FAKE))
        f = fake(self, FAKE)
        a.set_conf(smtp_out_port=f.port)
        start(a)
        submit(a, "alice@a.test", ["carol@c.test"], "implicit")
        wait_for(lambda: f.messages, 30, what="implicit MX delivery")
        self.assertIn("RCPT TO:<carol@c.test>", f.messages[0]["rcpts"][0])

    def test_ipv6_only_mx(self):
        a = self.one(lambda z: (z.mx("c.test", 10, "mx6.c.test"),
                                z.aaaa("mx6.c.test", "::1")))
        f = fake(self, "::1")
        a.set_conf(smtp_out_port=f.port)
        start(a)
        submit(a, "alice@a.test", ["carol@c.test"], "six")
        wait_for(lambda: f.messages, 30, what="delivery over IPv6")
        a.wait_for_log(r"to=<carol@c\.test>, relay=mx6\.c\.test\[::1\]:"
                       r"\d+,.*status=sent")

    def test_mx_loops_back_to_myself(self):
        a = self.one(lambda z: (z.mx("c.test", 10, "mx.a.test")))
        a.set_conf(smtp_out_port=a.port("smtp"))
        start(a)
        submit(a, "alice@a.test", ["carol@c.test"], "loop")
        action, status, diag, mta = self.bounce_of(a)
        self.assertEqual(status, "5.4.6")
        self.assertIn("loops back to myself", diag)

    def test_relayhost_with_auth_over_tls(self):
        a, f = self.via_smarthost(("relayuser", "s3cret pass"),
                                  ("relayuser", "s3cret pass"))
        submit(a, "alice@a.test", ["dave@elsewhere.test"], "smarthost")
        wait_for(lambda: f.messages, 30, what="relayed message")
        self.assertTrue(f.messages[0]["tls"])
        self.assertEqual(f.auth_tries[0][1:], ("relayuser", "s3cret pass"))
        a.wait_for_log(r"to=<dave@elsewhere\.test>, relay=127\.0\.0\.4\["
                       r"127\.0\.0\.4\]:\d+,.*status=sent")

    def test_relayhost_bad_password_defers(self):
        a, f = self.via_smarthost(("relayuser", "wrong"),
                                  ("relayuser", "right"))
        submit(a, "alice@a.test", ["dave@elsewhere.test"], "badauth")
        a.wait_for_log(r"to=<dave@elsewhere\.test>.*status=deferred "
                       r"\(host .* refused SASL authentication: 535",
                       secs=30)
        self.assertEqual(f.messages, [])

    def test_broken_starttls_falls_back_to_plain_text(self):
        a, f = self.via_fake(tls=True, broken_tls=True)
        submit(a, "alice@a.test", ["carol@c.test"], "plain")
        wait_for(lambda: f.messages, 30, what="plain-text delivery")
        self.assertFalse(f.messages[0]["tls"])
        a.wait_for_log(r"TLS handshake with mx\.c\.test\[127\.0\.0\.4\]"
                       r":\d+ failed")
        a.wait_for_log(r"retrying mx\.c\.test without TLS")

    def test_tls_encrypt_required_defers_without_starttls(self):
        a, f = self.via_fake(conf=dict(smtp_tls_security_level="encrypt"))
        submit(a, "alice@a.test", ["carol@c.test"], "musttls")
        a.wait_for_log(r"to=<carol@c\.test>.*status=deferred \(TLS is "
                       r"required, but", secs=30)
        self.assertEqual(f.messages, [])

    def verify_pair(self, extra_zone=None, trusted=False):
        """Instances A, with smtp_tls_security_level=verify, and B, not
        started. If trusted, B has a certificate for mx.b.test from a CA
        in A's smtp_tls_CAfile."""
        a, b = self.pair(extra_zone, smtp_tls_security_level="verify")
        if trusted:
            ca, cert, key = make_ca_and_cert(self, "mx.b.test")
            a.set_conf(smtp_tls_CAfile=ca)
            b.set_conf(tls_cert_file=cert, tls_key_file=key)
        return a, b

    def assert_verify_deferred(self, a, b, why):
        """A deferred its mail for bob@b.test, twice, because the TLS
        handshake failed for why; nothing reached B, nothing bounced."""
        reason = (r"TLS handshake with mx\.b\.test\[127\.0\.0\.3\]:\d+ "
                  r"failed: .*certificate verify failed: " + why)
        for n in (1, 2):
            wait_for(lambda: len(re.findall(
                r"to=<bob@b\.test>, .*status=deferred \(" + reason,
                a.log())) >= n, 30, what=f"deferral {n}")

        def queued():
            doc = json.loads(a.pochta("queue", "list", "--json").stdout)
            return [(m["queue_name"], r["delay_reason"])
                    for m in doc["messages"] for r in m["recipients"]]
        wait_for(lambda: [q for q, _ in queued()] == ["deferred"], 10,
                 what="the message alone in the deferred queue")
        (_, why_queued), = queued()
        self.assertRegex(why_queued, reason)
        # No plain-text fallback (that is for "may" only), no bounce.
        self.assertNotIn("without TLS", a.log())
        self.assertNotRegex(a.log(), r"status=(sent|bounced)")
        self.assertNotIn("from=<alice@a.test>", b.log())
        self.assertEqual(mailbox(b, "bob", "b.test"), [])
        self.assertEqual(mailbox(a, "alice", "a.test"), [])
        self.assert_alive(a)
        self.assert_alive(b)

    def test_tls_verify_self_signed_without_cafile_defers(self):
        # B has the certificate `pochta init` made: in no trust store.
        a, b = self.verify_pair()
        self.send_to_b(a, b, "untrusted")
        self.assert_verify_deferred(a, b, r"self.signed certificate")

    def test_tls_verify_trusted_and_matching_delivers(self):
        a, b = self.verify_pair(trusted=True)
        self.send_to_b(a, b, "verified")
        self.assert_sent_to_b_over_tls(a, b, "verified", verified=True)

    def test_tls_verify_trusted_but_other_name_defers(self):
        # A trusts B's own certificate, but that names mail.b.test (as
        # `pochta init` makes it) and the MX is mx.b.test.
        a, b = self.verify_pair()
        a.set_conf(smtp_tls_CAfile=tls_files(b)[0])
        self.send_to_b(a, b, "mismatch")
        self.assert_verify_deferred(a, b, r"hostname mismatch")

    def test_tls_verify_failure_at_primary_mx_tries_the_next(self):
        # The primary MX shows a certificate A does not trust; the
        # secondary, B, one that verifies.
        a, b = self.verify_pair(lambda z: (z.mx("b.test", 5, "bad.b.test"),
                                           z.a("bad.b.test", FAKE)),
                                trusted=True)
        self.assert_primary_fails_secondary_gets_it(a, b, verified=True)

    def assert_primary_fails_secondary_gets_it(self, a, b, **kw):
        """A's mail for bob@b.test went to B, the secondary MX, over TLS
        (kw as for assert_sent_to_b_over_tls), after the certificate of
        bad.b.test, a fake server on FAKE with A's certificate, failed."""
        f = fake(self, FAKE, port=b.port("smtp"), tls_files=tls_files(a))
        self.send_to_b(a, b, "secondary")
        self.assert_sent_to_b_over_tls(a, b, "secondary", **kw)
        self.assertIn("STARTTLS", f.commands)
        self.assertEqual(f.messages, [])
        a.wait_for_log(r"TLS handshake with bad\.b\.test\[127\.0\.0\.4\]"
                       r":\d+ failed: .*certificate verify failed")

    # DANE (RFC 7672): smtp_tls_security_level=dane.

    def dane_pair(self, fill, b_conf=None):
        """Instances A (smtp_tls_security_level=dane) and B (with
        b_conf), not started, on a zone that fill(zone, owner, b) fills
        in; owner is "_PORT._tcp.mx.b.test" for B's smtpd port."""
        a, b = self.pair(smtp_tls_security_level="dane")
        if b_conf:
            b.set_conf(**b_conf)
        owner = f"_{b.port('smtp')}._tcp.mx.b.test"
        # The owner names B's port, known only now: a zone of its own.
        dns = self.zone(lambda z: fill(z, owner, b))
        for inst in (a, b):
            inst.set_conf(dns_servers=dns.servers)
        return a, b

    @staticmethod
    def validated(z, owner, *more):
        """b.test's MX, mx.b.test's addresses, owner and more: AD."""
        return z.secure("b.test", "mx.b.test", owner, *more)

    def assert_not_delivered(self, a, b, reason):
        """A deferred its mail for bob@b.test for reason, without a
        plain-text attempt; nothing reached B."""
        a.wait_for_log(r"to=<bob@b\.test>, .*status=deferred \(" + reason,
                       secs=30)
        self.assertNotIn("without TLS", a.log())
        self.assertNotRegex(a.log(), r"status=(sent|bounced)")
        self.assertNotIn("from=<alice@a.test>", b.log())
        self.assertEqual(mailbox(b, "bob", "b.test"), [])
        self.assert_alive(a)
        self.assert_alive(b)

    def test_dane_ee_spki_match_delivers_verified(self):
        # B's certificate is the self-signed one for mail.b.test that
        # `pochta init` made: DANE-EE(3) ignores the name and the issuer.
        a, b = self.dane_pair(lambda z, o, b: (
            self.validated(z, o),
            z.tlsa(o, 3, 1, 1, spki_sha256(tls_files(b)[0]))))
        self.send_to_b(a, b, "dane-ee")
        self.assert_sent_to_b_over_tls(a, b, "dane-ee", dane=True)
        a.wait_for_log(r"mx\.b\.test: TLS level dane \(1 usable TLSA of 1"
                       r", validated\)")

    def test_dane_ee_wrong_hash_defers_without_plain_text(self):
        a, b = self.dane_pair(lambda z, o, b: (
            self.validated(z, o), z.tlsa(o, 3, 1, 1, "ab" * 32)))
        self.send_to_b(a, b, "wrong")
        self.assert_not_delivered(
            a, b, r"TLS handshake with mx\.b\.test\[127\.0\.0\.3\]:\d+ "
            r"failed: .*certificate verify failed: .*(?i:no matching DANE "
            r"TLSA records)")

    def test_dane_failure_at_primary_mx_tries_the_next(self):
        # bad.b.test (FAKE, with A's certificate) and mx.b.test, the
        # secondary, both have B's key in their TLSA records.
        def fill(z, own, b):
            bad = own.replace("mx.b.test", "bad.b.test")
            good = spki_sha256(tls_files(b)[0])
            z.mx("b.test", 5, "bad.b.test")
            z.a("bad.b.test", FAKE)
            self.validated(z, own, "bad.b.test", bad)
            z.tlsa(own, 3, 1, 1, good)
            z.tlsa(bad, 3, 1, 1, good)
        a, b = self.dane_pair(fill)
        self.assert_primary_fails_secondary_gets_it(a, b, dane=True)

    def test_dane_validated_without_tlsa_is_opportunistic(self):
        a, b = self.dane_pair(lambda z, o, b: self.validated(z, o))
        self.send_to_b(a, b, "no-tlsa")
        self.assert_sent_to_b_over_tls(a, b, "no-tlsa")
        a.wait_for_log(r"mx\.b\.test: TLS level may \(0 usable TLSA of 0, "
                       r"validated\)")
        self.assertNotRegex(a.log(), r"TLS to .*verified")

    def test_dane_unvalidated_answers_are_opportunistic(self):
        # Without AD the (wrong) record is not believed: plain "may",
        # and without a validated MX there is no TLSA lookup at all.
        a, b = self.dane_pair(lambda z, o, b: z.tlsa(o, 3, 1, 1, "ab" * 32))
        self.send_to_b(a, b, "unvalidated")
        self.assert_sent_to_b_over_tls(a, b, "unvalidated")
        self.assertNotIn("TLS level", a.log())
        self.assertNotRegex(a.log(), r"TLS to .*verified")

    def test_dane_unvalidated_tlsa_of_validated_mx_is_opportunistic(self):
        a, b = self.dane_pair(lambda z, o, b: (
            z.secure("b.test", "mx.b.test"), z.tlsa(o, 3, 1, 1, "ab" * 32)))
        self.send_to_b(a, b, "insecure-tlsa")
        self.assert_sent_to_b_over_tls(a, b, "insecure-tlsa")
        a.wait_for_log(r"mx\.b\.test: TLS level may \(0 usable TLSA of 1, "
                       r"not validated\)")

    def test_dane_tlsa_servfail_defers(self):
        a, b = self.dane_pair(lambda z, o, b: (self.validated(z, o),
                                               z.servfail(o)))
        self.send_to_b(a, b, "servfail")
        self.assert_not_delivered(a, b, r"TLSA lookup for mx\.b\.test "
                                  r"failed")
        self.assertNotIn("connected to mx.b.test", a.log())

    def test_dane_hostile_tlsa_data_means_encrypt(self):
        # An oversized record, malformed and unusable ones: the validated
        # RRset still makes TLS mandatory, unauthenticated (RFC 7672 2.2).
        a, b = self.dane_pair(lambda z, o, b: (
            self.validated(z, o),
            z.tlsa(o, 3, 1, 1, b"\x01" * 1100),
            z.tlsa(o, 3, 1, 1, b""),
            z.tlsa(o, 3, 1, 1, b"\x02" * 5),
            z.tlsa(o, 1, 1, 1, "ab" * 32),
            z.tlsa(o, 3, 7, 1, "ab" * 32)))
        self.send_to_b(a, b, "hostile")
        self.assert_sent_to_b_over_tls(a, b, "hostile")
        a.wait_for_log(r"mx\.b\.test: TLS level encrypt \(0 usable TLSA")
        self.assert_alive(a)

    def test_dane_ta_with_ca_signed_certificate_delivers_verified(self):
        ca, cert, key = make_ca_and_cert(self, "mx.b.test")
        chain = os.path.join(os.path.dirname(cert), "chain.pem")
        with open(chain, "w") as out:
            for path in (cert, ca):
                with open(path) as f:
                    out.write(f.read())
        a, b = self.dane_pair(
            lambda z, o, b: (self.validated(z, o),
                             z.tlsa(o, 2, 0, 1, cert_sha256(ca))),
            b_conf=dict(tls_cert_file=chain, tls_key_file=key))
        self.send_to_b(a, b, "dane-ta")
        self.assert_sent_to_b_over_tls(a, b, "dane-ta", dane=True)

    def test_dsn_parameters_passed_on(self):
        a, f = self.via_fake(caps=("DSN", "SIZE 100000", "8BITMIME"))
        submit(a, "alice@a.test", ["carol@c.test"], "dsn",
               args=("-N", "success,failure", "-R", "hdrs", "-V", "env+1"))
        wait_for(lambda: f.messages, 30, what="message")
        mail, rcpt = f.messages[0]["from"], f.messages[0]["rcpts"][0]
        self.assertRegex(mail, r"^MAIL FROM:<alice@a\.test> SIZE=\d+")
        self.assertIn(" RET=HDRS", mail)
        self.assertIn(" ENVID=env+2B1", mail)
        self.assertIn("NOTIFY=SUCCESS,FAILURE", rcpt)

    def test_helo_fallback_no_pipelining_and_dot_stuffing(self):
        a, f = self.via_fake(esmtp=False)
        submit(a, "alice@a.test", ["carol@c.test", "dan@c.test"], "old",
               body="line\r\n.hidden\r\n.\r\nend\r\n", args=("-i",))
        wait_for(lambda: f.messages, 30, what="message")
        self.assertTrue(any(c.startswith("HELO ") for c in f.commands))
        # No PIPELINING: each command waited for its reply, and the
        # message's own dot lines were doubled on the wire.
        self.assertEqual(len(f.messages[0]["rcpts"]), 2)
        self.assertIn("\r\n..hidden\r\n..\r\nend", f.messages[0]["data"])
        self.assertNotIn(" SIZE=", f.messages[0]["from"])

    def test_hundred_messages_reuse_connections(self):
        a, f = self.via_fake()
        for i in range(100):
            submit(a, "alice@a.test", ["carol@c.test"], f"bulk{i}")
        wait_for(lambda: len(f.messages) >= 100, 120, what="100 messages")
        self.assertLess(f.connections, 100)
        a.wait_for_log(r"reusing connection to mx\.c\.test")

    def test_452_rest_in_next_transaction(self):
        def rcpt(env, line, conn_no):
            return ("250 2.1.5 ok" if len(env["rcpts"]) < 2
                    else "452 4.5.3 too many recipients")
        a, f = self.via_fake(rcpt=rcpt)
        rcpts = [f"u{i}@c.test" for i in range(5)]
        submit(a, "alice@a.test", rcpts, "many")
        wait_for(lambda: sum(len(m["rcpts"]) for m in f.messages) >= 5, 30,
                 what="every recipient")
        self.assertEqual(len(f.messages), 3)
        self.assertEqual(f.connections, 1)
        self.assertEqual(mailbox(a, "alice", "a.test"), [])

    def test_size_too_big_bounces(self):
        a, f = self.via_fake(caps=("SIZE 1000", "PIPELINING"))
        submit(a, "alice@a.test", ["carol@c.test"], "big", body=("x" * 70 + "\r\n") * 50)
        action, status, diag, mta = self.bounce_of(a)
        self.assertEqual(status, "5.3.4")
        self.assertEqual(f.messages, [])

    def test_smtputf8_needed_but_not_offered_bounces(self):
        a, f = self.via_fake()
        submit(a, "alice@a.test", ["d\u00e9d\u00e9@c.test"], "utf8")
        action, status, diag, mta = self.bounce_of(a)
        self.assertEqual(status, "5.6.7")

    def hostile(self, secs=40, **kw):
        a, f = self.via_fake(**kw)
        submit(a, "alice@a.test", ["carol@c.test"], "hostile")
        a.wait_for_log(r"to=<carol@c\.test>.*status=deferred", secs=secs)
        self.assertEqual(mailbox(a, "alice", "a.test"), [])
        self.assert_alive(a)
        return a, f

    def test_hostile_garbage_greeting(self):
        def greet(h, n):
            h.reply("hello there, I am not SMTP")
            return True
        a, f = self.hostile(greeting=greet)
        a.wait_for_log(r"bad reply from mx\.c\.test")

    def test_hostile_huge_multiline_reply(self):
        def greet(h, n):
            for i in range(5000):
                h.reply("220-" + "x" * 400)
            h.reply("220 ok")
            return True
        a, f = self.hostile(greeting=greet)
        a.wait_for_log(r"too many lines|reply too long")

    def test_hostile_silent_server(self):
        def greet(h, n):
            time.sleep(8)
            return False
        a, f = self.hostile(greeting=greet)
        a.wait_for_log(r"conversation timed out")

    def test_hostile_close_mid_data(self):
        a, f = self.hostile(close_mid_data=True)
        a.wait_for_log(r"lost connection with mx\.c\.test")


if __name__ == "__main__":
    unittest.main()
