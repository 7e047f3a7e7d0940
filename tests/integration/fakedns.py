"""fakedns - a fake DNS server for pochta's integration tests.

Runs ldnsutils' ldns-testns on a free 127.0.0.1 port (UDP and TCP) with a
data file written from a Zone, waits until it answers (starting it again on
another port when it fails to bind or to answer), and stops it again.
Names without records are NXDOMAIN; a name with records answers "no data"
(with a SOA) for the types it lacks, as a real server would.

    zone = fakedns.Zone()
    zone.mx("example.test", 10, "mx1.example.test")
    zone.a("mx1.example.test", "127.0.0.2")
    dns = fakedns.start(self, zone)      # stopped by self's cleanup
    ... dns_servers = dns.servers ...    # "127.0.0.1:PORT"

For DNSSEC, zone.secure(name) sets the AD bit (RFC 4035 3.2.3) on every
answer about name, as a validating resolver would; zone.tlsa() adds TLSA
records (RFC 6698) for DANE.
"""
import ipaddress
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

PROBE_NAME = "probe.fakedns.invalid."
SOA_OWNER = "."

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15,
         "TXT": 16, "AAAA": 28, "TLSA": 52}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
          4: "NOTIMPL", 5: "REFUSED"}


def absolute(name):
    """name with exactly one trailing dot, lowercased."""
    return name.rstrip(".").lower() + "."


def reverse_name(addr):
    """The PTR owner name of an IPv4 or IPv6 address (RFC 1035, 3596)."""
    return ipaddress.ip_address(addr).reverse_pointer + "."


class Zone:
    """Records and canned failures, rendered as an ldns-testns data file."""

    def __init__(self, negative_ttl=60):
        self.negative_ttl = negative_ttl
        self.records = {}       # name -> {type: [(ttl, rdata)]}
        self.rcodes = {}        # name -> rcode name
        self.raw_entries = []
        self.validated = set()  # names whose answers carry AD

    def add(self, name, rtype, rdata, ttl=300):
        rtype = rtype.upper()
        if rtype not in TYPES:
            raise ValueError(f"unsupported record type {rtype}")
        types = self.records.setdefault(absolute(name), {})
        types.setdefault(rtype, []).append((ttl, rdata))
        return self

    def a(self, name, *addrs, ttl=300):
        for addr in addrs:
            self.add(name, "A", str(ipaddress.IPv4Address(addr)), ttl)
        return self

    def aaaa(self, name, *addrs, ttl=300):
        for addr in addrs:
            self.add(name, "AAAA", str(ipaddress.IPv6Address(addr)), ttl)
        return self

    def mx(self, domain, pref, host, ttl=300):
        return self.add(domain, "MX", f"{int(pref)} {absolute(host)}", ttl)

    def null_mx(self, domain, ttl=300):
        """RFC 7505: the domain accepts no mail."""
        return self.add(domain, "MX", "0 .", ttl)

    def ptr(self, addr, name, ttl=300):
        return self.add(reverse_name(addr), "PTR", absolute(name), ttl)

    def cname(self, name, target, ttl=300):
        """An alias: every query for name answers with the CNAME alone,
        as a forwarder that does not chase it would."""
        return self.add(name, "CNAME", absolute(target), ttl)

    def tlsa(self, name, usage, selector, mtype, data, ttl=300):
        """A TLSA record (RFC 6698 2.1) for name ("_25._tcp.mx.test");
        data is hex, or bytes (any length: hostile data is allowed)."""
        if isinstance(data, bytes):
            # RFC 3597 generic form, so any length can be written.
            rdata = bytes([usage, selector, mtype]) + data
            return self.add(name, "TLSA",
                            f"\\# {len(rdata)} {rdata.hex()}", ttl)
        return self.add(name, "TLSA", f"{usage} {selector} {mtype} {data}",
                        ttl)

    def secure(self, *names):
        """Answers about names (records, no data, errors) say AD: the
        resolver validated them (RFC 4035 3.2.3, RFC 6840 5.8)."""
        self.validated.update(absolute(n) for n in names)
        return self

    def nxdomain(self, name):
        self.rcodes[absolute(name)] = "NXDOMAIN"
        return self

    def servfail(self, name):
        self.rcodes[absolute(name)] = "SERVFAIL"
        return self

    def refused(self, name):
        self.rcodes[absolute(name)] = "REFUSED"
        return self

    def raw(self, entry):
        """A verbatim ENTRY_BEGIN ... ENTRY_END block, matched first."""
        self.raw_entries.append(entry.strip() + "\n")
        return self

    def _soa(self):
        n = self.negative_ttl
        return (f"{SOA_OWNER} {n} IN SOA ns.fakedns.invalid. "
                f"hostmaster.fakedns.invalid. 1 3600 600 86400 {n}")

    def _entry(self, match, rcode, question, answer=(), authority=()):
        ad = " AD" if question.split()[0] in self.validated else ""
        lines = ["ENTRY_BEGIN", f"MATCH {match}",
                 f"REPLY QR AA RD RA{ad} {rcode}",
                 "ADJUST copy_id copy_query",
                 "SECTION QUESTION"]
        lines.append(question)
        lines.append("SECTION ANSWER")
        lines.extend(answer)
        lines.append("SECTION AUTHORITY")
        lines.extend(authority)
        lines.append("ENTRY_END")
        return "\n".join(lines) + "\n"

    def render(self):
        """The data file text. Entries are tried first to last."""
        out = ["; pochta fake DNS zone\n"]
        out.extend(self.raw_entries)
        for name, rcode in self.rcodes.items():
            out.append(self._entry("opcode qname", rcode, f"{name} IN A",
                                   authority=[self._soa()]))
        for name, types in self.records.items():
            if "CNAME" in types:
                ttl, target = types["CNAME"][0]
                out.append(self._entry(
                    "opcode qname", "NOERROR", f"{name} IN A",
                    [f"{name} {ttl} IN CNAME {target}"]))
                continue
            for rtype, rrs in types.items():
                answer = [f"{name} {ttl} IN {rtype} {rdata}"
                          for ttl, rdata in rrs]
                out.append(self._entry("opcode qtype qname", "NOERROR",
                                       f"{name} IN {rtype}", answer))
            # The name exists: other types are "no data" (RFC 2308 2.2).
            out.append(self._entry("opcode qname", "NOERROR",
                                   f"{name} IN A",
                                   authority=[self._soa()]))
        # A validated name without records: a validated denial.
        for name in sorted(self.validated - set(self.records) -
                           set(self.rcodes)):
            out.append(self._entry("opcode qname", "NXDOMAIN",
                                   f"{name} IN A", authority=[self._soa()]))
        out.append(self._entry("opcode qtype qname", "NOERROR",
                               f"{PROBE_NAME} IN TXT",
                               [f'{PROBE_NAME} 0 IN TXT "ready"']))
        # Everything else does not exist. (The question is a placeholder
        # that copy_query replaces; an empty one breaks the reply.)
        out.append(self._entry("opcode", "NXDOMAIN",
                               "fakedns.invalid. IN A",
                               authority=[self._soa()]))
        return "".join(out)


def build_query(name, qtype, qid):
    """A recursive query in wire format."""
    wire = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in absolute(name).rstrip(".").split("."):
        if label:
            wire += bytes([len(label)]) + label.encode("ascii")
    return wire + b"\0" + struct.pack("!HH", TYPES.get(qtype, qtype), 1)


class RetryableStart(RuntimeError):
    """ldns-testns failed at its port, not at the zone: start again."""


class FakeDNS:
    """One ldns-testns process serving a Zone on 127.0.0.1."""

    # ldns-testns -r binds one random port; when that port is taken it
    # tries another on the same socket, which fails ("bind(): Invalid
    # argument"), or it may never answer. A new process picks a new port.
    START_ATTEMPTS = 3
    PROGRAM = "ldns-testns"

    def __init__(self, zone):
        self.zone = zone
        self.proc = None
        self.port = None
        self.dir = None

    @property
    def servers(self):
        """The value for dns_servers: "127.0.0.1:PORT"."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=10.0):
        """Start the server and wait until it answers; a start that fails
        to bind or to answer is retried on a fresh port within timeout.
        RuntimeError if it cannot start (a bad zone fails at once)."""
        deadline = time.monotonic() + timeout
        for attempt in range(self.START_ATTEMPTS, 0, -1):
            # Each attempt gets its share of what is left; the normal
            # path returns at the first answer and never waits for it.
            budget = (deadline - time.monotonic()) / attempt
            try:
                return self._start_once(time.monotonic() + budget)
            except RetryableStart:
                self.stop()
                if attempt == 1:
                    raise
            except BaseException:
                self.stop()
                raise

    def _start_once(self, deadline):
        self.port = None
        self.dir = tempfile.mkdtemp(prefix="pochta-fakedns-")
        data = os.path.join(self.dir, "zone.data")
        with open(data, "w") as f:
            f.write(self.zone.render())
        self.log = os.path.join(self.dir, "ldns-testns.log")
        # -r: the server picks a free port and says which; its output goes
        # to a file, so it can never block on a pipe nobody reads.
        with open(self.log, "w") as logf:
            self.proc = subprocess.Popen(
                [self.PROGRAM, "-r", data], stdout=logf,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while self.port is None:
            self._read_port()
            if self.port is None:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise RetryableStart("ldns-testns did not start")
                time.sleep(0.02)
        # Only our zone's answer counts: another server may own the port.
        while self.query(PROBE_NAME, "TXT", timeout=0.2) != ("NOERROR", 1):
            self._check_alive()
            if time.monotonic() > deadline:
                raise RetryableStart("ldns-testns does not answer")
        return self

    def _read_port(self):
        with open(self.log, errors="replace") as f:
            for line in f:
                if line.startswith("Listening on port "):
                    self.port = int(line.split()[-1])

    def _check_alive(self):
        if self.proc.poll() is not None:
            with open(self.log, errors="replace") as f:
                text = f.read()
            # Only a failure after the zone was read is worth a retry.
            cls = (RetryableStart if "trying to bind" in text
                   else RuntimeError)
            raise cls(f"ldns-testns exited: {text[-2000:]}")

    def query(self, name, qtype="A", timeout=1.0, tcp=False, ad=False):
        """Ask the server; (rcode name, answer count), with the AD bit
        third if ad, or None on timeout."""
        qid = random.randrange(65536)
        wire = build_query(name, qtype, qid)
        family, kind = socket.AF_INET, (socket.SOCK_STREAM if tcp
                                        else socket.SOCK_DGRAM)
        with socket.socket(family, kind) as s:
            s.settimeout(timeout)
            try:
                s.connect(("127.0.0.1", self.port))
                if tcp:
                    s.sendall(struct.pack("!H", len(wire)) + wire)
                    reply = self._recv_tcp(s)
                else:
                    s.send(wire)
                    reply = s.recv(65535)
            except (socket.timeout, ConnectionError):
                return None
        if reply is None or len(reply) < 12:
            return None
        rid, flags, _qd, an = struct.unpack("!HHHH", reply[:8])
        if rid != qid:
            return None
        rcode = RCODES.get(flags & 0xf, str(flags & 0xf))
        return (rcode, an, bool(flags & 0x20)) if ad else (rcode, an)

    @staticmethod
    def _recv_tcp(s):
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack(
                "!H", data[:2])[0]:
            chunk = s.recv(65535)
            if not chunk:
                return None
            data += chunk
        return data[2:]

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def start(testcase, zone):
    """Start a FakeDNS for zone, stopped by testcase's cleanup."""
    dns = FakeDNS(zone).start()
    testcase.addCleanup(dns.stop)
    return dns
