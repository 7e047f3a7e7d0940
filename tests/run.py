#!/usr/bin/env python3
"""Run pochta's tests: cmocka unit tests, man page lint, integration tests.

Prints one line per test program and, last, "tests: N passed, M failed".
Under SANITIZE=1 (build-san) every program writes sanitizer reports into a
directory of this run; any report there fails the run.
"""
import argparse
import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def add(self, name, passed, failed, output):
        self.passed += passed
        self.failed += failed
        status = "ok" if failed == 0 else "FAIL"
        print(f"{status:4} {name}: {passed} passed, {failed} failed",
              flush=True)
        if failed:
            self.failures.append(name)
            sys.stdout.write(output[-20000:])
            sys.stdout.write("\n")


def run_unit(build, tally, jobs):
    progs = sorted(glob.glob(os.path.join(build, "tests", "*", "*_test")))

    def one(prog):
        try:
            p = subprocess.run([prog], cwd=TOP, capture_output=True,
                               text=True, errors="replace", timeout=300)
            out, rc = p.stdout + p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = f"timed out\n{e.stdout or ''}", -1
        m = re.search(r"\[  PASSED  \] (\d+) test", out)
        passed = int(m.group(1)) if m else 0
        m = re.search(r"\[  FAILED  \] (\d+) test", out)
        failed = int(m.group(1)) if m else 0
        if rc != 0 and failed == 0:
            failed = 1
        if passed == 0 and failed == 0:
            failed = 1   # a test program that ran nothing is a failure
        return os.path.relpath(prog, build), passed, failed, out

    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        for r in ex.map(one, progs):
            tally.add(*r)


def run_man(tally):
    pages = sorted(glob.glob(os.path.join(TOP, "man", "*.[1-8]")))
    for page in pages:
        p = subprocess.run(["mandoc", "-Tlint", "-W", "warning", page],
                           capture_output=True, text=True)
        out = p.stdout + p.stderr
        bad = p.returncode != 0 or out.strip() != ""
        tally.add("man/" + os.path.basename(page), 0 if bad else 1,
                  1 if bad else 0, out)
    # Further checks of docs against code (e.g. pochta.conf(5) against the
    # parameter tables): every tests/lint/*.py must exit 0.
    for check in sorted(glob.glob(os.path.join(TOP, "tests", "lint", "*.py"))):
        p = subprocess.run([sys.executable, check], cwd=TOP,
                           capture_output=True, text=True)
        tally.add("lint/" + os.path.basename(check),
                  1 if p.returncode == 0 else 0,
                  0 if p.returncode == 0 else 1, p.stdout + p.stderr)


def run_integration(build, tally, jobs, pattern):
    files = sorted(glob.glob(os.path.join(TOP, "tests", "integration",
                                          pattern)))

    def one(path):
        name = os.path.basename(path)[:-3]
        start = time.time()
        try:
            p = subprocess.run(
                [sys.executable, "-m", "unittest", "-v", name],
                cwd=os.path.dirname(path), capture_output=True, text=True,
                errors="replace", timeout=900)
            out, rc = p.stdout + p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = f"timed out after 900 s\n{e.stdout or ''}", -1
        m = re.search(r"^Ran (\d+) tests?", out, re.M)
        ran = int(m.group(1)) if m else 0
        failed = 0
        m = re.search(r"^FAILED \(([^)]*)\)", out, re.M)
        if m:
            for kind, n in re.findall(r"(\w+)=(\d+)", m.group(1)):
                if kind in ("failures", "errors", "skipped",
                            "unexpected_successes"):
                    failed += int(n)
        # Skipped tests count as failures: a skipped case is a defect.
        m = re.search(r"^OK \(skipped=(\d+)\)", out, re.M)
        if m:
            failed += int(m.group(1))
        if rc != 0 and failed == 0:
            failed = 1
        if ran == 0:
            failed = max(failed, 1)
        passed = max(ran - failed, 0)
        secs = time.time() - start
        return f"integration/{name} ({secs:.0f}s)", passed, failed, out

    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        for r in ex.map(one, files):
            tally.add(*r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--only", choices=["unit", "man", "integration"])
    ap.add_argument("--pattern", default="test_*.py",
                    help="integration test files to run")
    ap.add_argument("--sanitize", action="store_true",
                    help="the build has ASan/UBSan: collect their reports")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    build = os.path.abspath(os.path.join(TOP, args.build))
    os.environ["POCHTA_BUILD"] = build
    os.environ["POCHTA_BIN"] = os.path.join(build, "bin")
    sandir = None
    if args.sanitize:
        sandir = tempfile.mkdtemp(prefix="pochta-san-")
        os.environ["ASAN_OPTIONS"] = (
            f"log_path={sandir}/asan:detect_leaks=1:abort_on_error=0")
        os.environ["UBSAN_OPTIONS"] = (
            f"log_path={sandir}/ubsan:print_stacktrace=1:halt_on_error=1")
        os.environ["POCHTA_SANITIZE"] = "1"

    tally = Tally()
    if args.only in (None, "unit"):
        run_unit(build, tally, args.jobs)
    if args.only in (None, "man"):
        run_man(tally)
    if args.only in (None, "integration"):
        run_integration(build, tally, args.jobs, args.pattern)

    if sandir is not None:
        reports = sorted(glob.glob(os.path.join(sandir, "*")))
        text = ""
        for r in reports:
            with open(r, errors="replace") as f:
                text += f"--- {os.path.basename(r)}\n{f.read()}\n"
        tally.add("sanitizer reports", 0 if reports else 1,
                  len(reports), text)
        shutil.rmtree(sandir, ignore_errors=True)

    if tally.failures:
        print("failed: " + ", ".join(tally.failures))
    print(f"tests: {tally.passed} passed, {tally.failed} failed")
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
