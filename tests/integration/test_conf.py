"""`pochta conf`: show, edit and check a configuration directory written by
hand in a temporary directory. POCHTA_BIN names the directory holding the
pochta program (default: ../../build/bin)."""
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("POCHTA_BIN", os.path.join(HERE, "..", "..", "build",
                                                "bin"))
POCHTA = os.path.join(BIN, "pochta")

CONF = """\
# pochta.conf written by hand for the test
myhostname = mx.example.test

# the domains
mydestination = $myhostname,
    localhost
dns_retries = 4
message_size_limit = 10m
# trailing comment
"""

MASTER = """\
# one service is enough to check the file
qmgr unix private/qmgr - 1 /bin/true
"""


class ConfTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pochta-conf-test-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.path = os.path.join(self.dir, "pochta.conf")
        self.write(CONF)

    def write(self, text, name="pochta.conf"):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    def read(self):
        with open(self.path, "rb") as f:
            return f.read()

    def pochta(self, *args, env=None):
        e = dict(os.environ)
        e.pop("POCHTA_CONF", None)
        if env:
            e.update(env)
        return subprocess.run([POCHTA, "-c", self.dir, "conf", *args],
                              capture_output=True, text=True, timeout=60,
                              env=e)

    def ok(self, *args):
        p = self.pochta(*args)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        return p.stdout

    def fails(self, code, *args):
        p = self.pochta(*args)
        self.assertEqual(p.returncode, code, p.stdout + p.stderr)
        self.assertTrue(p.stderr.startswith("pochta: ") or code == 2,
                        p.stderr)
        return p

    def test_conf_n_prints_exactly_the_set_parameters(self):
        self.assertEqual(self.ok("-n"),
                         "dns_retries = 4\n"
                         "message_size_limit = 10m\n"
                         "mydestination = $myhostname, localhost\n"
                         "myhostname = mx.example.test\n")
        self.assertEqual(self.ok("-n", "-x"),
                         "dns_retries = 4\n"
                         "message_size_limit = 10m\n"
                         "mydestination = mx.example.test, localhost\n"
                         "myhostname = mx.example.test\n")
        # An empty file sets nothing.
        self.write("# nothing\n")
        self.assertEqual(self.ok("-n"), "")

    def test_conf_all_parameters_sorted(self):
        lines = self.ok().splitlines()
        names = [l.split(" =")[0] for l in lines]
        self.assertEqual(names, sorted(names))
        self.assertIn("dns_retries = 4", lines)
        self.assertIn("dns_timeout = 5s", lines)
        self.assertIn("relayhost =", lines)
        self.assertIn(f"config_directory = {self.dir}", lines)
        self.assertIn("tls_cert_file = $config_directory/tls/cert.pem",
                      lines)

    def test_conf_d_prints_defaults(self):
        out = self.ok("-d", "dns_retries", "mydestination", "relayhost")
        self.assertEqual(out, "dns_retries = 2\n"
                              "mydestination = $myhostname, localhost\n"
                              "relayhost =\n")
        # -d does not read the file: a broken file does not matter.
        self.write("this is not a setting\n")
        self.assertEqual(self.ok("-d", "dns_retries"), "dns_retries = 2\n")
        self.assertEqual(self.ok("-d", "-x", "tls_key_file"),
                         f"tls_key_file = {self.dir}/tls/key.pem\n")
        out = self.ok("-d", "-v", "verbose")
        self.assertEqual(out, "# verbose (boolean): log debugging detail "
                              "in every program\nverbose = no\n")

    def test_conf_names(self):
        self.assertEqual(self.ok("myhostname", "dns_timeout"),
                         "myhostname = mx.example.test\ndns_timeout = 5s\n")
        self.assertEqual(self.ok("-x", "mydestination"),
                         "mydestination = mx.example.test, localhost\n")
        p = self.fails(1, "myhostname", "no_such_parameter")
        self.assertEqual(p.stdout, "")
        self.assertIn("unknown parameter 'no_such_parameter'", p.stderr)

    def test_conf_o_overrides(self):
        self.assertEqual(self.ok("-o", "dns_retries=9", "-x", "dns_retries",
                                 "myhostname"),
                         "dns_retries = 9\nmyhostname = mx.example.test\n")
        p = self.fails(2, "-o", "dns_retries=nine", "dns_retries")
        self.assertIn("-o dns_retries: parameter 'dns_retries': 'nine'",
                      p.stderr)
        p = self.fails(2, "-o", "nosuch=1")
        self.assertIn("-o nosuch: unknown parameter", p.stderr)
        p = self.fails(2, "-o", "dns_retries")
        self.assertIn("expected name=value", p.stderr)

    def test_conf_usage_errors(self):
        for args in (["-q"], ["-d", "-n"], ["-d", "-o", "verbose=yes"],
                     ["-e"], ["-X"],
                     ["-e", "-X", "relayhost"], ["-e", "-n", "relayhost=x"],
                     ["check", "extra"], ["-n", "check"],
                     ["-e", "relayhost"],
                     ["-e", "relayhost=a", "relayhost=b", "relayhost"]):
            p = self.pochta(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertEqual(p.stdout, "", args)
            self.assertNotEqual(p.stderr, "", args)
        self.assertIn("usage: pochta conf", self.pochta("-q").stderr)
        self.assertIn("expected NAME=VALUE",
                      self.pochta("-e", "relayhost").stderr)
        self.assertEqual(self.read(), CONF.encode())

    def test_conf_e_replaces_in_place(self):
        self.ok("-e", "mydestination=a.test, b.test", "dns_retries = 7")
        self.assertEqual(self.read().decode(), CONF.replace(
            "mydestination = $myhostname,\n    localhost\n",
            "mydestination = a.test, b.test\n").replace(
            "dns_retries = 4", "dns_retries = 7"))
        self.assertEqual(self.ok("dns_retries", "mydestination"),
                         "dns_retries = 7\n"
                         "mydestination = a.test, b.test\n")

    def test_conf_e_last_of_one_name_wins(self):
        self.ok("-e", "dns_retries=5", "relayhost=x", "dns_retries=6")
        self.assertEqual(self.ok("-n", "dns_retries", "relayhost"),
                         "dns_retries = 6\nrelayhost = x\n")
        self.assertEqual(self.read().decode().count("dns_retries"), 1)

    def test_conf_e_appends_new_settings(self):
        os.chmod(self.path, 0o640)
        self.ok("-e", "relayhost=[smtp.example.test]:587", "verbose=yes")
        self.assertEqual(self.read().decode(), CONF +
                         "relayhost = [smtp.example.test]:587\n"
                         "verbose = yes\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        self.assertEqual(self.ok("-x", "verbose"), "verbose = yes\n")
        # No temporary file is left behind.
        self.assertEqual(sorted(os.listdir(self.dir)), ["pochta.conf"])

    def test_conf_e_refuses_bad_values_and_changes_nothing(self):
        before = self.read()
        mtime = os.stat(self.path).st_mtime_ns
        for arg, code, text in (
                ("dns_retries=11", 1, "'11' is more than 10"),
                ("dns_retries=x", 1, "not a number"),
                ("no_such_parameter=1", 1, "unknown parameter"),
                ("relayhost=$relayhost", 1, "loop"),
                ("relayhost=$nosuch", 1, "unknown parameter '$nosuch'"),
                ("config_directory=/", 1, "cannot be set"),
                ("relayhost=a\nverbose=yes", 1, "control character")):
            p = self.fails(code, "-e", "myhostname=changed.test", arg)
            self.assertIn(text, p.stderr, arg)
            self.assertEqual(self.read(), before, arg)
        self.assertEqual(os.stat(self.path).st_mtime_ns, mtime)
        self.assertEqual(sorted(os.listdir(self.dir)), ["pochta.conf"])

    def test_conf_e_fixes_a_broken_value(self):
        self.write(CONF.replace("dns_retries = 4", "dns_retries = lots"))
        self.fails(1, "-n")
        self.ok("-e", "dns_retries=3")
        self.assertEqual(self.read().decode(), CONF.replace(
            "dns_retries = 4", "dns_retries = 3"))

    def test_conf_e_follows_symlink(self):
        real = os.path.join(self.dir, "real.conf")
        os.rename(self.path, real)
        os.symlink("real.conf", self.path)
        self.ok("-e", "dns_retries=6")
        self.assertTrue(os.path.islink(self.path))
        with open(real) as f:
            self.assertIn("dns_retries = 6\n", f.read())

    def test_conf_e_creates_missing_file(self):
        os.unlink(self.path)
        self.ok("-e", "myhostname=new.test")
        self.assertEqual(self.read(), b"myhostname = new.test\n")

    def test_conf_x_removes_settings(self):
        self.ok("-X", "mydestination", "relayhost")
        self.assertEqual(self.read().decode(), CONF.replace(
            "mydestination = $myhostname,\n    localhost\n", ""))
        self.assertEqual(self.ok("mydestination"),
                         "mydestination = $myhostname, localhost\n")

    def test_conf_check(self):
        self.write(MASTER, "master.conf")
        p = self.pochta("check")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""))
        self.write(CONF + "\n\nmessage_size_limit = 5q\n")
        p = self.fails(1, "check")
        self.assertEqual(p.stdout, "")
        self.assertIn(f"{self.path}:12: parameter 'message_size_limit': "
                      "'5q': bad unit", p.stderr)
        self.write(CONF + "bogus line\n")
        p = self.fails(1, "check")
        self.assertIn(f"{self.path}:10: expected 'name = value'", p.stderr)
        self.write(CONF + "relay_host = x\n")
        p = self.fails(1, "check")
        self.assertIn(f"{self.path}:10: unknown parameter 'relay_host'",
                      p.stderr)

    def test_conf_check_master_conf(self):
        self.write(MASTER + "smtp inet 127.0.0.1:notaport - 1 /bin/true\n",
                   "master.conf")
        p = self.fails(1, "check")
        self.assertIn(os.path.join(self.dir, "master.conf") + ":3:",
                      p.stderr)
        os.unlink(os.path.join(self.dir, "master.conf"))
        p = self.fails(1, "check")
        self.assertIn("master.conf", p.stderr)

    def test_conf_missing_and_garbage_files(self):
        os.unlink(self.path)
        p = self.fails(1, "-n")
        self.assertIn(self.path, p.stderr)
        with open(self.path, "wb") as f:
            f.write(bytes(range(256)) * 16)
        p = self.fails(1, "-n")
        self.assertIn(self.path + ":1: NUL byte", p.stderr)

    def test_conf_default_dir_from_environment(self):
        p = subprocess.run([POCHTA, "conf", "-n"], capture_output=True,
                           text=True, timeout=60,
                           env=dict(os.environ, POCHTA_CONF=self.dir))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("myhostname = mx.example.test\n", p.stdout)

    def test_conf_installed_sample_loads(self):
        sample = os.path.join(HERE, "..", "..", "conf")
        if not os.path.exists(os.path.join(sample, "pochta.conf")):
            self.fail("conf/pochta.conf is missing")
        p = subprocess.run([POCHTA, "-c", sample, "conf", "-n"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual((p.returncode, p.stderr), (0, ""))


if __name__ == "__main__":
    unittest.main()
