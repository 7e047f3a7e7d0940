"""smtpd seen from a client that is not on loopback; run by test_smtpd
through in_netns.py, inside a network namespace of the test's own."""
import base64
import os
import smtplib
import unittest

from pochta_instance import timeout
from smtp_util import PASSWORD, client_tls, smtp_instance

ADDR = os.environ.get("POCHTA_NETNS_ADDR", "")


def plain_token(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


class NonLoopbackClient(unittest.TestCase):
    def instance(self, **conf):
        inst = smtp_instance(self, start=False, **conf)
        inst.write("master.conf",
                   inst.read("master.conf").replace("127.0.0.1", ADDR))
        inst.start()
        return inst

    def connect(self, inst):
        s = smtplib.SMTP(ADDR, inst.port("smtp"), timeout=timeout(10))
        self.addCleanup(s.close)
        s.ehlo("remote.example.org")
        return s

    def test_plaintext_auth_refused_before_tls(self):
        inst = self.instance()
        s = self.connect(inst)
        self.assertFalse(s.has_extn("auth"))
        code, text = s.docmd("AUTH", "PLAIN " + plain_token(
            "alice@example.test", PASSWORD))
        self.assertEqual(code, 538)
        self.assertIn(b"5.7.11", text)
        s.starttls(context=client_tls())
        s.ehlo("remote.example.org")
        self.assertTrue(s.has_extn("auth"))
        s.login("alice@example.test", PASSWORD)
        self.assertEqual(s.mail("alice@example.test")[0], 250)
        self.assertEqual(s.rcpt("friend@remote.example")[0], 250)

    def test_not_in_mynetworks_cannot_relay(self):
        inst = self.instance()
        s = self.connect(inst)
        s.mail("a@example.org")
        code, text = s.rcpt("victim@remote.example")
        self.assertEqual(code, 554)
        self.assertIn(b"Relay access denied", text)
        self.assertEqual(s.rcpt("alice@example.test")[0], 250)

    def test_plaintext_auth_when_allowed(self):
        inst = self.instance(smtpd_plaintext_auth="yes")
        s = self.connect(inst)
        self.assertTrue(s.has_extn("auth"))
        s.login("alice@example.test", PASSWORD)
