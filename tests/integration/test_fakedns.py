"""The fake DNS harness, and lib/dns resolving through it.

The harness is checked with drill(1), a client from ldnsutils, and with its
own wire-level queries; lib/dns is driven through the dns_test unit binary,
which runs one lookup when POCHTA_DNS_QUERY and POCHTA_DNS_SERVERS are set.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import fakedns

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def build_dir():
    if os.environ.get("POCHTA_BUILD"):
        return os.environ["POCHTA_BUILD"]
    if os.environ.get("POCHTA_BIN"):
        return os.path.dirname(os.path.abspath(os.environ["POCHTA_BIN"]))
    return os.path.join(TOP, "build")


DNS_TEST = os.path.join(build_dir(), "tests", "lib", "dns_test")


def mail_zone():
    z = fakedns.Zone()
    # Two MX of equal preference at 127.0.0.2 and 127.0.0.3, as the
    # two-instance tests use them, and a backup.
    z.mx("example.test", 10, "mx1.example.test")
    z.mx("example.test", 10, "mx2.example.test")
    z.mx("example.test", 20, "backup.example.test")
    z.a("mx1.example.test", "127.0.0.2")
    z.a("mx2.example.test", "127.0.0.3")
    z.aaaa("backup.example.test", "::1")
    z.a("implicit.test", "127.0.0.4")
    z.null_mx("null.test")
    z.cname("alias.test", "example.test")
    z.servfail("broken.test")
    z.ptr("127.0.0.2", "mx1.example.test")
    z.ptr("127.0.0.9", "liar.test")
    z.a("liar.test", "127.0.0.10")
    return z


class HarnessTest(unittest.TestCase):

    def drill(self, dns, qtype, name, *flags):
        p = subprocess.run(["drill", *flags, "-p", str(dns.port),
                            "@127.0.0.1", qtype, name],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def test_answers_records_nodata_and_nxdomain(self):
        dns = fakedns.start(self, mail_zone())
        self.assertRegex(dns.servers, r"^127\.0\.0\.1:\d+$")
        out = self.drill(dns, "MX", "example.test")
        self.assertIn("rcode: NOERROR", out)
        self.assertRegex(out, r"example\.test\.\s+300\s+IN\s+MX\s+10 "
                              r"mx1\.example\.test\.")
        self.assertRegex(out, r"MX\s+20 backup\.example\.test\.")
        # A name that exists answers "no data" with a SOA for other types.
        out = self.drill(dns, "AAAA", "mx1.example.test")
        self.assertIn("rcode: NOERROR", out)
        self.assertIn("ANSWER: 0", out)
        self.assertRegex(out, r"IN\s+SOA")
        out = self.drill(dns, "A", "nowhere.test")
        self.assertIn("rcode: NXDOMAIN", out)
        out = self.drill(dns, "MX", "alias.test")
        self.assertRegex(out, r"alias\.test\.\s+300\s+IN\s+CNAME\s+"
                              r"example\.test\.")
        out = self.drill(dns, "MX", "broken.test")
        self.assertIn("rcode: SERVFAIL", out)
        out = self.drill(dns, "PTR", "2.0.0.127.in-addr.arpa")
        self.assertRegex(out, r"PTR\s+mx1\.example\.test\.")
        # TCP is served on the same port.
        out = self.drill(dns, "MX", "null.test", "-t")
        self.assertRegex(out, r"IN\s+MX\s+0 \.")
        self.assertEqual(dns.query("example.test", "MX", tcp=True),
                         ("NOERROR", 3))
        self.assertEqual(dns.query("nowhere.test", "A"), ("NXDOMAIN", 0))

    def test_stop_ends_the_server_and_removes_its_files(self):
        dns = fakedns.FakeDNS(mail_zone()).start()
        pid, tmp = dns.proc.pid, dns.dir
        self.assertTrue(os.path.isdir(tmp))
        self.assertEqual(dns.query("mx1.example.test", "A"), ("NOERROR", 1))
        dns.stop()
        dns.stop()      # twice is harmless
        self.assertFalse(os.path.exists(tmp))
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)
        self.assertIsNone(dns.query("mx1.example.test", "A", timeout=0.3))

    def test_instances_get_distinct_ports(self):
        with fakedns.FakeDNS(fakedns.Zone().a("a.test", "127.0.0.2")) as a, \
                fakedns.FakeDNS(fakedns.Zone().a("b.test", "127.0.0.3")) \
                as b:
            self.assertNotEqual(a.port, b.port)
            self.assertEqual(a.query("a.test"), ("NOERROR", 1))
            self.assertEqual(b.query("a.test"), ("NXDOMAIN", 0))

    def test_validated_names_and_tlsa_records(self):
        owner = "_25._tcp.mx.example.test"
        z = (fakedns.Zone().mx("example.test", 10, "mx.example.test")
             .a("mx.example.test", "127.0.0.2")
             .tlsa(owner, 3, 1, 1, "ab" * 32)
             .tlsa(owner, 2, 0, 1, b"\x01" * 1100)
             .secure("example.test", owner, "nothing.example.test"))
        dns = fakedns.start(self, z)
        self.assertEqual(dns.query("example.test", "MX", ad=True),
                         ("NOERROR", 1, True))
        self.assertEqual(dns.query("example.test", "A", ad=True),
                         ("NOERROR", 0, True))
        self.assertEqual(dns.query(owner, "TLSA", ad=True, tcp=True),
                         ("NOERROR", 2, True))
        self.assertEqual(dns.query("mx.example.test", "A", ad=True),
                         ("NOERROR", 1, False))
        # A validated name without records: a validated denial.
        self.assertEqual(dns.query("nothing.example.test", "TLSA",
                                   ad=True), ("NXDOMAIN", 0, True))
        self.assertEqual(dns.query("other.test", "A", ad=True),
                         ("NXDOMAIN", 0, False))

    def test_bad_zone_fails_to_start_cleanly(self):
        z = fakedns.Zone().raw("ENTRY_BEGIN\nMATCH opcode\n"
                               "SECTION ANSWER\nthis is not a record\n"
                               "ENTRY_END")
        dns = fakedns.FakeDNS(z)
        with self.assertRaises(RuntimeError):
            dns.start(timeout=5)
        self.assertIsNone(dns.proc)
        self.assertIsNone(dns.dir)
        with self.assertRaises(ValueError):
            fakedns.Zone().add("x.test", "NAPTR", "whatever")

    def test_failed_start_is_retried_on_another_port(self):
        # A first server that never answers and a second that fails to
        # bind, as ldns-testns does when its random port is taken; the
        # third start is the real server.
        tmp = tempfile.mkdtemp(prefix="pochta-fakedns-test-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(silent.close)
        silent.bind(("127.0.0.1", 0))
        script = os.path.join(tmp, "ldns-testns")
        with open(script, "w") as f:
            f.write(f"""#!/bin/sh
echo "ldns-testns: start"
echo "trying to bind to port {silent.getsockname()[1]}"
if mkdir "{tmp}/first" 2>/dev/null; then
    echo "Listening on port {silent.getsockname()[1]}"
    exec sleep 60
fi
if mkdir "{tmp}/second" 2>/dev/null; then
    echo "bind(): Invalid argument"
    exit 1
fi
exec ldns-testns "$@"
""")
        os.chmod(script, 0o755)

        class Flaky(fakedns.FakeDNS):
            PROGRAM = script

        dns = Flaky(mail_zone())
        self.addCleanup(dns.stop)
        begin = time.monotonic()
        dns.start(timeout=6)
        self.assertLess(time.monotonic() - begin, 6)
        self.assertNotEqual(dns.port, silent.getsockname()[1])
        self.assertEqual(dns.query("mx1.example.test", "A"), ("NOERROR", 1))
        # Three failures in a row are an error, and leave nothing behind.
        for name in ("first", "second"):
            os.rmdir(os.path.join(tmp, name))
        with open(script) as f:
            text = f.read()
        with open(script, "w") as f:
            f.write(text.replace('exec ldns-testns "$@"',
                                 'echo "bind(): Invalid argument"; exit 1'))
        dns = Flaky(mail_zone())
        with self.assertRaises(RuntimeError):
            dns.start(timeout=6)
        self.assertIsNone(dns.proc)
        self.assertIsNone(dns.dir)


class LibDnsTest(unittest.TestCase):
    """lib/dns against the harness, through the dns_test binary."""

    @classmethod
    def setUpClass(cls):
        if not os.access(DNS_TEST, os.X_OK):
            raise AssertionError(f"{DNS_TEST} is not built")

    def setUp(self):
        self.dns = fakedns.start(self, mail_zone())

    def lookup(self, query, servers=None):
        env = dict(os.environ, POCHTA_DNS_QUERY=query,
                   POCHTA_DNS_SERVERS=servers or self.dns.servers)
        p = subprocess.run([DNS_TEST], env=env, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        fields = {}
        for line in p.stdout.splitlines():
            key, _, value = line.partition("=")
            fields.setdefault(key, []).append(value)
        return fields

    def test_mx_hosts_in_preference_order(self):
        firsts = set()
        for _ in range(12):
            r = self.lookup("mxhosts example.test")
            self.assertEqual(r["status"], ["0 temporary=0"])
            self.assertEqual(sorted(r["mx"][:2]),
                             ["10 mx1.example.test 127.0.0.2",
                              "10 mx2.example.test 127.0.0.3"])
            self.assertEqual(r["mx"][2], "20 backup.example.test ::1")
            firsts.add(r["mx"][0])
            if len(firsts) == 2:
                break
        # Random order among equal preferences (p of failing 2^-11).
        self.assertEqual(len(firsts), 2)

    def test_implicit_null_and_missing(self):
        r = self.lookup("mxhosts implicit.test")
        self.assertEqual(r["mx"], ["0 implicit.test 127.0.0.4"])
        r = self.lookup("mxhosts null.test")
        self.assertEqual(r["status"], ["-20003 temporary=0"])
        self.assertIn("null MX", r["error"][0])
        r = self.lookup("mxhosts nowhere.test")
        self.assertEqual(r["status"], ["-20001 temporary=0"])
        r = self.lookup("mxhosts broken.test")
        self.assertEqual(r["status"], ["-20004 temporary=1"])
        # The alias's answer holds only the CNAME: lib/dns asks again.
        r = self.lookup("mxhosts alias.test")
        self.assertEqual(r["status"], ["0 temporary=0"])
        self.assertEqual(len(r["mx"]), 3)
        r = self.lookup("addr mx2.example.test")
        self.assertEqual(r["addr"], ["127.0.0.3"])
        # A name no query may carry is refused before any is sent.
        r = self.lookup("mx " + "a" * 64 + ".test")
        self.assertEqual(r["status"], ["-20007 temporary=0"])

    def test_ptr_forward_confirmation(self):
        r = self.lookup("ptr 127.0.0.2")
        self.assertEqual(r["status"], ["0 temporary=0"])
        self.assertEqual(r["name"], ["mx1.example.test"])
        r = self.lookup("ptr 127.0.0.9")
        self.assertEqual(r["status"], ["-20008 temporary=0"])
        self.assertNotIn("name", r)
        self.assertIn("liar.test", r["error"][0])

    def test_silent_server_is_a_temporary_failure(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            start = time.monotonic()
            r = self.lookup("mx example.test",
                            f"127.0.0.1:{s.getsockname()[1]}")
            self.assertLess(time.monotonic() - start, 20)
        self.assertEqual(r["status"], ["-20005 temporary=1"])
        # A dead first server does not hide a live second one.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            r = self.lookup("mx example.test",
                            f"127.0.0.1:{s.getsockname()[1]} "
                            f"{self.dns.servers}")
        self.assertEqual(r["status"], ["0 temporary=0"])
        self.assertEqual(len(r["mx"]), 3)


if __name__ == "__main__":
    unittest.main()
