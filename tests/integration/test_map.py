"""pochta map and pochta user: building, querying and listing tables, and
editing the user table, through the real command in a temporary directory.

POCHTA_BIN names the directory holding the pochta program.
"""
import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

BIN = os.environ.get("POCHTA_BIN", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin"))
POCHTA = os.path.join(BIN, "pochta")


class MapTestCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pochta-map-")
        with open(os.path.join(self.dir, "pochta.conf"), "w") as f:
            f.write("user_maps = lmdb:$config_directory/users\n")
        self.users = os.path.join(self.dir, "users")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def pochta(self, *args, stdin=None):
        env = dict(os.environ)
        env.pop("POCHTA_CONF", None)
        return subprocess.run([POCHTA, "-c", self.dir] + list(args),
                              input=stdin, capture_output=True, text=True,
                              env=env, timeout=60,
                              stdin=None if stdin is not None
                              else subprocess.DEVNULL)

    def read_users(self):
        with open(self.users) as f:
            return f.read()

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path


class TestMap(MapTestCase):
    def test_build_then_query_round_trip(self):
        src = self.write("aliases", "# aliases\n"
                         "Postmaster@Example.TEST  root@example.test\n"
                         "list@example.test a@example.test,\n"
                         "    b@example.test\n")
        p = self.pochta("map", "build", src)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.exists(src + ".lmdb"))
        p = self.pochta("map", "query", "lmdb:" + src,
                        "postmaster@example.test")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "root@example.test\n")
        # A bare path is a spec too; keys fold case; continuation joins.
        p = self.pochta("map", "query", src, "LIST@example.test",
                        "POSTMASTER@EXAMPLE.TEST")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "a@example.test, b@example.test\n"
                         "root@example.test\n")
        # A missing key: exit 1, the found ones still printed.
        p = self.pochta("map", "query", src, "nobody@example.test",
                        "list@example.test")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout, "a@example.test, b@example.test\n")

    def test_list_prints_every_entry(self):
        src = self.write("virtual", "b.test x\nA.test y z\n")
        self.assertEqual(self.pochta("map", "build", src).returncode, 0)
        p = self.pochta("map", "list", src)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "a.test\ty z\nb.test\tx\n")

    def test_build_error_keeps_old_table(self):
        src = self.write("t", "k old\n")
        self.assertEqual(self.pochta("map", "build", src).returncode, 0)
        before = os.stat(src + ".lmdb")
        self.write("t", "k new\n# fine\nk2\n")
        p = self.pochta("map", "build", src)
        self.assertEqual(p.returncode, 1)
        self.assertIn(src + ":3: missing value for key 'k2'", p.stderr)
        after = os.stat(src + ".lmdb")
        self.assertEqual(before.st_ino, after.st_ino)
        self.assertEqual(self.pochta("map", "query", src, "k").stdout,
                         "old\n")
        self.assertEqual(sorted(os.listdir(self.dir)),
                         ["pochta.conf", "t", "t.lmdb"])
        self.write("t", "k 1\nK 2\n")
        p = self.pochta("map", "build", src)
        self.assertEqual(p.returncode, 1)
        self.assertIn(src + ":2: duplicate key 'k'", p.stderr)

    def test_errors_and_usage(self):
        p = self.pochta("map", "query", os.path.join(self.dir, "none"), "k")
        self.assertEqual(p.returncode, 1)
        self.assertIn("none.lmdb", p.stderr)
        p = self.pochta("map", "build", "pgsql:users")
        self.assertEqual(p.returncode, 1)
        self.assertIn("unsupported table type 'pgsql'", p.stderr)
        bad = self.write("bad.lmdb", "not a table at all" * 300)
        self.write("bad", "k v\n")
        p = self.pochta("map", "list", bad[:-5])
        self.assertEqual(p.returncode, 1)
        self.assertIn("not a valid table", p.stderr)
        self.assertEqual(self.pochta("map").returncode, 2)
        self.assertEqual(self.pochta("map", "query", "x").returncode, 2)
        self.assertEqual(self.pochta("map", "frob").returncode, 2)
        # Several files: each is built, any failure fails the run.
        good = self.write("good", "a 1\n")
        p = self.pochta("map", "build", good, self.write("worse", " x\n"))
        self.assertEqual(p.returncode, 1)
        self.assertTrue(os.path.exists(good + ".lmdb"))


class TestUser(MapTestCase):
    def entries(self):
        with open(self.users) as f:
            return [line.split() for line in f
                    if line.strip() and not line.startswith("#")]

    def hash_of(self, user):
        for e in self.entries():
            if e[0].lower() == user:
                return e[1]
        return None

    def test_add_passwd_del_list(self):
        p = self.pochta("user", "add", "alice@example.test",
                        "--password-stdin", stdin="first secret\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        h = self.hash_of("alice@example.test")
        self.assertTrue(h.startswith("$y$"), h)
        self.assertEqual(crypt.crypt("first secret", h), h)
        self.assertNotEqual(crypt.crypt("wrong", h), h)
        # The table is rebuilt: the daemons' view has the user.
        p = self.pochta("map", "query", self.users, "alice@example.test")
        self.assertEqual(p.stdout.strip(), h)

        p = self.pochta("user", "add", "--password-stdin", "--quota", "10M",
                        "--mailbox", "vip/bob", "bob@example.test",
                        stdin="pw2\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.pochta("user", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout,
                         "alice@example.test\texample.test/alice/\t0\n"
                         "bob@example.test\tvip/bob/\t10485760\n")
        self.assertNotIn("$y$", p.stdout)

        p = self.pochta("user", "passwd", "alice@example.test",
                        "--password-stdin", stdin="second secret\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        h2 = self.hash_of("alice@example.test")
        self.assertNotEqual(h, h2)
        self.assertTrue(h2.startswith("$y$"))
        self.assertEqual(crypt.crypt("second secret", h2), h2)
        # Options survive a password change.
        p = self.pochta("user", "passwd", "BOB@example.test",
                        "--password-stdin", stdin="pw3\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.entries()[1][2:],
                         ["mailbox=vip/bob", "quota=10M"])

        p = self.pochta("user", "del", "alice@example.test")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIsNone(self.hash_of("alice@example.test"))
        p = self.pochta("map", "query", self.users, "alice@example.test")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(self.pochta("user", "list").stdout,
                         "bob@example.test\tvip/bob/\t10485760\n")

    def test_comments_and_other_lines_are_kept(self):
        text = ("# the users\n"
                "carol@example.test $6$salt$abc\n"
                "   quota=1k\n"
                "\n"
                "# end\n")
        self.write("users", text)
        p = self.pochta("user", "add", "dave@example.test",
                        "--password-stdin", stdin="pw\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(self.users) as f:
            now = f.read()
        self.assertTrue(now.startswith(text), now)
        p = self.pochta("user", "del", "dave@example.test")
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(self.users) as f:
            self.assertEqual(f.read(), text)
        # passwd rewrites carol's entry onto one line, quota kept.
        p = self.pochta("user", "passwd", "carol@example.test",
                        "--password-stdin", stdin="pw\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(self.users) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], "# the users")
        self.assertEqual(lines[1].split()[2:], ["quota=1k"])
        self.assertEqual(lines[2:], ["", "# end"])
        self.assertEqual(os.stat(self.users).st_mode & 0o777,
                         os.stat(self.users + ".lmdb").st_mode & 0o777)

    def test_refusals(self):
        def add(user, pw="pw\n", *extra):
            return self.pochta("user", "add", user, "--password-stdin",
                               *extra, stdin=pw)

        self.assertEqual(add("erin@example.test").returncode, 0)
        before = self.read_users()
        cases = [
            add("erin@example.test"),            # duplicate
            add("ERIN@Example.Test"),            # duplicate, other case
            add("not-an-address"),
            add("a b@example.test"),
            add("x@exa_mple.test"),
            add("new@example.test", "\n"),       # empty password
            add("new@example.test", ""),         # no password at all
            add("new@example.test", "pw\n", "--quota", "lots"),
            add("new@example.test", "pw\n", "--mailbox", "/etc"),
            add("new@example.test", "pw\n", "--mailbox", "a/../../b"),
            self.pochta("user", "del", "ghost@example.test"),
            self.pochta("user", "passwd", "ghost@example.test",
                        "--password-stdin", stdin="pw\n"),
            self.pochta("user", "passwd", "erin@example.test",
                        "--password-stdin", stdin="\n"),
        ]
        for i, p in enumerate(cases):
            self.assertEqual(p.returncode, 1, f"case {i}: {p.stderr}")
            self.assertTrue(p.stderr.startswith("pochta: "), p.stderr)
        self.assertEqual(self.read_users(), before)
        # Without --password-stdin and without a terminal: refused.
        p = subprocess.run([POCHTA, "-c", self.dir, "user", "add",
                            "tty@example.test"], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL,
                           start_new_session=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("--password-stdin", p.stderr)
        self.assertEqual(self.pochta("user").returncode, 2)
        self.assertEqual(self.pochta("user", "add").returncode, 2)
        self.assertEqual(self.pochta("user", "list", "x").returncode, 2)

    def run_on_tty(self, args, answers):
        """Run pochta on a new terminal, answering each prompt in turn;
        returns (exit status, everything it wrote to the terminal)."""
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(POCHTA, [POCHTA, "-c", self.dir] + args)
        out = b""
        deadline = time.monotonic() + 30
        try:
            for prompt, answer in answers:
                while prompt.encode() not in out:
                    self.assertLess(time.monotonic(), deadline, out)
                    r, _, _ = select.select([fd], [], [], 1)
                    if r:
                        out += os.read(fd, 1024)
                out = out.replace(prompt.encode(), b"", 1)
                os.write(fd, answer.encode())
            while True:
                r, _, _ = select.select([fd], [], [], 10)
                if not r:
                    break
                try:
                    chunk = os.read(fd, 1024)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            # Never hang the suite on a stuck child.
            for _ in range(100):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
            os.close(fd)
        return os.waitstatus_to_exitcode(status), out.decode()

    def test_password_from_terminal(self):
        rc, out = self.run_on_tty(
            ["user", "add", "tty@example.test"],
            [("New password: ", "typed secret\n"),
             ("Retype new password: ", "typed secret\n")])
        self.assertEqual(rc, 0, out)
        self.assertNotIn("typed secret", out)   # no echo
        h = self.hash_of("tty@example.test")
        self.assertEqual(crypt.crypt("typed secret", h), h)
        rc, out = self.run_on_tty(
            ["user", "passwd", "tty@example.test"],
            [("New password: ", "one\n"),
             ("Retype new password: ", "two\n")])
        self.assertEqual(rc, 1, out)
        self.assertIn("the passwords differ", out)
        self.assertEqual(self.hash_of("tty@example.test"), h)

    def test_broken_table_is_not_edited(self):
        text = "ok@example.test $y$x\nbroken@example.test\n"
        self.write("users", text)
        p = self.pochta("user", "add", "new@example.test",
                        "--password-stdin", stdin="pw\n")
        self.assertEqual(p.returncode, 1)
        self.assertIn(self.users + ":2: missing value", p.stderr)
        self.assertEqual(self.read_users(), text)

    def test_list_without_table_is_empty(self):
        p = self.pochta("user", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "")


if __name__ == "__main__":
    unittest.main()
