"""bench/smtp-source: the load generator against pochta's smtpd, against
its own sink (-S), against scripted hostile servers, and in idle mode (-i).

smtp-source is built into $POCHTA_BIN/../bench/smtp-source.
"""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

from pochta_instance import BIN, free_port, timeout
from smtp_util import PASSWORD, parse_queue_file, queued, smtp_instance

SOURCE = os.path.join(os.path.dirname(BIN), "bench", "smtp-source")


def reap(p):
    """Cleanup for a Popen: kill it if still running, close its pipe."""
    if p.poll() is None:
        p.kill()
    p.communicate()


def run_source(*args, secs=60):
    """Run smtp-source -j ARGS; (exit status, parsed JSON, stderr)."""
    p = subprocess.run([SOURCE, "-j"] + [str(a) for a in args],
                       capture_output=True, text=True,
                       timeout=timeout(secs))
    return p.returncode, json.loads(p.stdout), p.stderr


class FakeServer:
    """A scripted SMTP server on a free loopback port, one thread per
    connection. script(conn, lines, commands) runs each session; lines()
    yields the client's lines; commands collects them for the test."""

    def __init__(self, testcase, script):
        self.script = script
        self.commands = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()
        testcase.addCleanup(self.close)

    def close(self):
        self.stop = True
        self.sock.close()

    def accept(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,),
                             daemon=True).start()

    def serve(self, conn):
        buf = [b""]

        def lines():
            while True:
                while b"\n" not in buf[0]:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf[0] += data
                line, buf[0] = buf[0].split(b"\n", 1)
                yield line + b"\n"
        try:
            self.script(conn, lines(), self.commands)
        except OSError:
            pass
        finally:
            conn.close()


def plain_smtp(ehlo_keywords):
    """A server that accepts everything and offers ehlo_keywords."""
    def script(conn, lines, commands):
        conn.sendall(b"220 fake ESMTP\r\n")
        in_data = False
        for line in lines:
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    conn.sendall(b"250 queued\r\n")
                continue
            verb = line[:4].upper()
            commands.append(verb)
            if verb == b"EHLO":
                reply = [b"fake"] + ehlo_keywords
                conn.sendall(b"".join(b"250-" + k + b"\r\n"
                                      for k in reply[:-1]) +
                             b"250 " + reply[-1] + b"\r\n")
            elif verb == b"DATA":
                in_data = True
                conn.sendall(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")
    return script


class TestSmtpSource(unittest.TestCase):
    def test_pochta_accepts_and_queues_every_message(self):
        inst = smtp_instance(self, users=("bench@example.test",))
        rc, out, err = run_source("-c", 4, "-m", 20, "-s", 3000, "-r", 1,
                                  "-t", "bench@example.test",
                                  f"127.0.0.1:{inst.port('smtp')}")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out["accepted"], 20)
        self.assertEqual(out["errors"], 0)
        self.assertEqual(out["connections"], 4)
        self.assertGreater(out["msgs_per_sec"], 0)
        files = queued(inst)
        self.assertEqual(len(files), 20)
        subjects = set()
        for path in files:
            env, msg, rcpts = parse_queue_file(path)
            self.assertEqual(env["sender"], ["smtp-source@example.test"])
            head, _, body = msg.partition(b"\r\n\r\n")
            for field in (b"\r\nFrom: ", b"\r\nTo: <bench@example.test>",
                          b"\r\nMessage-ID: <", b"\r\nDate: "):
                self.assertIn(field, head)
            subjects.add(head.split(b"Subject: ", 1)[1].split(b"\r\n")[0])
            for line in body.split(b"\r\n")[:-1]:
                self.assertLessEqual(len(line), 78)
                self.assertFalse(line.startswith(b"."))
            # The message as sent, less the Received: smtpd added.
            sent = msg[msg.index(b"\r\nDate: ") + 2:]
            self.assertEqual(len(sent), 3000)
        self.assertEqual(len(subjects), 20)

    def test_starttls_and_auth_on_submission(self):
        inst = smtp_instance(self, users=("bench@example.test",))
        rc, out, err = run_source("-T", "-a", f"bench@example.test:"
                                  f"{PASSWORD}", "-f", "bench@example.test",
                                  "-t", "bench@example.test", "-c", 2,
                                  "-m", 6,
                                  f"127.0.0.1:{inst.port('submission')}")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out["tls"])
        self.assertEqual(out["accepted"], 6)
        self.assertEqual(len(queued(inst)), 6)
        self.assertRegex(inst.log(), r"TLS established")

    def test_refusals_are_counted_not_fatal(self):
        inst = smtp_instance(self, users=("bench@example.test",))
        rc, out, err = run_source("-c", 2, "-m", 4, "-t",
                                  "nobody@example.test",
                                  f"127.0.0.1:{inst.port('smtp')}")
        self.assertEqual(rc, 1)
        self.assertEqual(out["accepted"], 0)
        self.assertEqual(out["rejected"], 4)
        self.assertGreaterEqual(out["replies"]["5xx"], 4)
        self.assertIn("refused", err)

    def test_sink_counts_what_source_sends(self):
        port = free_port()
        sink = subprocess.Popen([SOURCE, "-S", "-j", "-m", "30",
                                 f"127.0.0.1:{port}"],
                                stdout=subprocess.PIPE, text=True)
        self.addCleanup(reap, sink)
        self.assertEqual(sink.stdout.readline().strip(),
                         f"listening on 127.0.0.1:{port}")
        rc, out, err = run_source("-c", 3, "-m", 30, "-r", 3, "-s", 2000,
                                  "-t", "user%d@example.test",
                                  f"127.0.0.1:{port}")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out["accepted"], 30)
        self.assertEqual(out["replies"]["3xx"], 30)
        # Per session the greeting, EHLO and QUIT; per message MAIL,
        # three RCPTs and the end of the data.
        self.assertEqual(out["replies"]["2xx"], 3 * 3 + 30 * 5)
        stdout, _ = sink.communicate(timeout=timeout(10))
        self.assertEqual(sink.returncode, 0)
        summary = json.loads(stdout)
        self.assertEqual(summary["messages"], 30)
        self.assertEqual(summary["connections"], 3)
        self.assertEqual(summary["bytes"], 30 * 2000)

    def test_sink_on_unix_socket_refuses_long_lines(self):
        path = os.path.join(self.tmpdir(), "sink.sock")
        sink = subprocess.Popen([SOURCE, "-S", path],
                                stdout=subprocess.PIPE, text=True)
        self.addCleanup(reap, sink)
        sink.stdout.readline()
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.settimeout(timeout(5))
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220 "))
            s.sendall(b"X" * 100000 + b"\r\nNOOP\r\n")
            self.assertTrue(f.readline().startswith(b"500 "))
            self.assertTrue(f.readline().startswith(b"250 "))
        sink.send_signal(signal.SIGTERM)
        sink.communicate(timeout=timeout(10))
        self.assertEqual(sink.returncode, 0)
        self.assertFalse(os.path.exists(path))

    def tmpdir(self):
        import shutil
        import tempfile
        d = tempfile.mkdtemp(prefix="smtp-source-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_without_pipelining_one_command_at_a_time(self):
        srv = FakeServer(self, plain_smtp([b"8BITMIME"]))
        rc, out, err = run_source("-c", 1, "-m", 3, "-r", 2,
                                  f"127.0.0.1:{srv.port}")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out["accepted"], 3)
        self.assertEqual(srv.commands, [b"EHLO"] +
                         [b"MAIL", b"RCPT", b"RCPT", b"DATA"] * 3 +
                         [b"QUIT"])

    def test_pipelining_sends_the_group_in_one_write(self):
        groups = []

        def script(conn, lines, commands):
            conn.sendall(b"220 fake\r\n")
            conn.recv(1000)
            conn.sendall(b"250-fake\r\n250 PIPELINING\r\n")
            time.sleep(0.2)
            groups.append(conn.recv(65536))
            conn.sendall(b"250 ok\r\n" * 3 + b"354 go\r\n")
            data = b""
            while not data.endswith(b"\r\n.\r\n"):
                data += conn.recv(65536)
            conn.sendall(b"250 ok\r\n")
            conn.recv(100)
            conn.sendall(b"221 bye\r\n")
        srv = FakeServer(self, script)
        rc, out, err = run_source("-r", 2, f"127.0.0.1:{srv.port}")
        self.assertEqual(rc, 0, err)
        self.assertEqual(groups, [b"MAIL FROM:<smtp-source@example.test>"
                                  b"\r\nRCPT TO:<postmaster@example.test>"
                                  b"\r\nRCPT TO:<postmaster@example.test>"
                                  b"\r\nDATA\r\n"])

    def test_hostile_replies_end_sessions_cleanly(self):
        cases = {
            b"HELLO THERE\r\n": "malformed reply",
            b"220-x\r\n250 y\r\n": "reply code changed",
            b"220-x\r\n" * 2000: "more than 1000 lines",
            b"220-" + b"x" * 100000: "too long",
            b"554 go away\r\n": "refused: 554 go away",
        }
        for greeting, why in cases.items():
            def script(conn, lines, commands, greeting=greeting):
                conn.sendall(greeting)
                time.sleep(1)
            srv = FakeServer(self, script)
            rc, out, err = run_source("-w", 5, "-c", 2, "-m", 4,
                                      f"127.0.0.1:{srv.port}", secs=30)
            self.assertEqual(rc, 1)
            self.assertEqual(out["accepted"], 0)
            # Every failed session is replaced until it gives up.
            self.assertEqual(out["errors"], out["connections"])
            self.assertGreaterEqual(out["errors"], 12)
            self.assertIn(why, err)
            self.assertIn("giving up", err)

    def test_reply_timeout_counts_a_trickling_server(self):
        def script(conn, lines, commands):
            for _ in range(40):
                conn.sendall(b"2")
                time.sleep(0.1)
        srv = FakeServer(self, script)
        start = time.monotonic()
        rc, out, err = run_source("-q", "-w", 1, "-c", 1, "-m", 1,
                                  f"127.0.0.1:{srv.port}")
        self.assertEqual(rc, 1)
        self.assertGreaterEqual(out["timeouts"], 11)
        self.assertLess(time.monotonic() - start, timeout(30))

    def test_lost_connection_in_data_is_a_lost_message(self):
        def script(conn, lines, commands):
            conn.sendall(b"220 fake\r\n")
            for line in lines:
                if line.startswith(b"DATA"):
                    conn.sendall(b"354 go\r\n")
                    next(lines)
                    return
                if line.startswith(b"EHLO"):
                    conn.sendall(b"250 fake\r\n")
                else:
                    conn.sendall(b"250 ok\r\n")
        srv = FakeServer(self, script)
        rc, out, err = run_source("-c", 1, "-m", 3, "-s", 200000,
                                  f"127.0.0.1:{srv.port}")
        self.assertEqual(rc, 1)
        self.assertEqual(out["lost"], 3)
        self.assertEqual(out["connections"], 3)

    def test_idle_sessions_are_held_until_a_signal(self):
        inst = smtp_instance(self, users=())
        p = subprocess.Popen([SOURCE, "-i", "-c", "20",
                              f"127.0.0.1:{inst.port('smtp')}"],
                             stdout=subprocess.PIPE, text=True)
        self.addCleanup(reap, p)
        self.assertEqual(p.stdout.readline().strip(), "connected 20")
        time.sleep(0.3)
        self.assertIsNone(p.poll())
        p.send_signal(signal.SIGTERM)
        rest, _ = p.communicate(timeout=timeout(10))
        self.assertEqual(p.returncode, 0)
        self.assertIn("greeted 20, errors 0", rest)

    def test_bad_usage_exits_2(self):
        for args in (["-c", "0", "127.0.0.1:25"], ["-t", "a b@x", "h:1"],
                     ["-t", "%s@x", "h:1"], ["-a", "nocolon", "h:1"],
                     ["127.0.0.1"], ["-S", "-T", "127.0.0.1:1"], []):
            p = subprocess.run([SOURCE] + args, capture_output=True,
                               timeout=timeout(10))
            self.assertEqual(p.returncode, 2, args)


if __name__ == "__main__":
    unittest.main()
