"""Run unittest test ids inside a network namespace of their own.

    unshare -rn python3 in_netns.py MODULE.Class.test ...

Brings up the namespace's loopback device and gives it the address
NETNS_ADDR (192.0.2.10, TEST-NET-1), which is not a loopback address: the
daemons see clients that are not local, as on a real network, while no
packet leaves the namespace. unshare -r maps the caller to root inside a
new user namespace, so this works unprivileged as well as for root.
"""
import os
import subprocess
import sys
import unittest

NETNS_ADDR = "192.0.2.10"


def command(*test_ids):
    """The argv that runs test_ids in a new namespace."""
    return ["unshare", "-rn", sys.executable, os.path.abspath(__file__),
            *test_ids]


def main():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{NETNS_ADDR}/32", "dev", "lo"],
                   check=True)
    os.environ["POCHTA_NETNS_ADDR"] = NETNS_ADDR
    suite = unittest.defaultTestLoader.loadTestsFromNames(sys.argv[1:])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() and not result.skipped else 1


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
