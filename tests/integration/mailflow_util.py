"""Helpers for whole-instance mail-flow tests: an instance with smtpd, qmgr
and local-deliver running on short timers, mail sent with smtplib, and the
results read back from the Maildirs, the spool and `pochta queue`."""
import email
import email.policy
import glob
import json
import os
import re
import smtplib
import threading

from pochta_instance import timeout, wait_for
from smtp_util import PASSWORD, queued, smtp_instance

DOMAIN = "example.test"

# Retries within seconds, so a deferral is seen and retried inside a test.
FAST = dict(qmgr_scan_interval="1s", queue_run_delay="1s",
            minimal_backoff_time="1s", maximal_backoff_time="2s",
            qmgr_delivery_timeout="10s")

QUEUES = ("incoming", "active", "deferred", "hold")


def flow_instance(testcase, users=("alice@" + DOMAIN, "bob@" + DOMAIN),
                  quotas=None, start=True, **conf):
    """smtpd, qmgr and local-deliver (smtp-out stays off) with the given
    users; quotas maps some of them to a quota= size."""
    settings = dict(FAST)
    settings.update(conf)
    inst = smtp_instance(testcase, users=users, start=False, **settings)
    for user, quota in (quotas or {}).items():
        inst.pochta("user", "add", user, "--quota", quota,
                    "--password-stdin", input=PASSWORD + "\n")
    inst.enable("qmgr", "local")
    # Runs before the instance's own cleanup (cleanups run last first).
    testcase.addCleanup(check_clean_exit, testcase, inst)
    if start:
        start_flow(inst)
    return inst


def check_clean_exit(testcase, inst):
    """Stop the instance and check that no daemon crashed or exited with
    an error (under sanitizers, a leak is exit status 1); a worker the
    test killed with SIGKILL is the only exception."""
    inst.stop(check=False)
    bad = [line for line in inst.log().splitlines()
           if re.search(r"killed by signal (?!9\b)|exited with status "
                        r"(?!0\b)", line)]
    testcase.assertEqual(bad, [], "a daemon died badly")


def start_flow(inst):
    """Start the instance and wait for its queue manager and agent."""
    inst.start()
    for name in ("qmgr", "local"):
        path = os.path.join(inst.spool, "private", name)
        wait_for(lambda: os.path.exists(path), 15, what=f"{name} socket")


def send(inst, sender, rcpts, msg, mail_options=(), rcpt_options=(),
         smtp=None):
    """Send one message over SMTP (on smtp, an open smtplib.SMTP, when
    given); returns its queue ID."""
    own = smtp is None
    if own:
        smtp = smtplib.SMTP("127.0.0.1", inst.port("smtp"),
                            timeout=timeout(30))
    try:
        if own:
            smtp.ehlo("client.test")
        code, text = smtp.mail(sender, list(mail_options))
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = smtp.rcpt(r, list(rcpt_options))
            assert code == 250, (r, code, text)
        if isinstance(msg, str):
            msg = msg.encode()
        code, text = smtp.data(msg)
        assert code == 250, (code, text)
        return re.search(rb"queued as (\S+)", text).group(1).decode()
    finally:
        if own:
            smtp.quit()


def message(subject, msgid, body="hello\r\n", extra=""):
    """A small message with CR LF line ends, as bytes."""
    return (f"From: <sender@remote.test>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{msgid}>\r\n{extra}\r\n{body}").encode()


def maildir(inst, user, domain=DOMAIN, folder=""):
    """The Maildir of user@domain (the default mailbox= path), or one of
    its folders ("lists" is .lists)."""
    base = os.path.join(inst.dir, "mail", domain, user)
    return os.path.join(base, "." + folder) if folder else base


def mail_files(inst, user, domain=DOMAIN, folder="", subdirs=("new",)):
    out = []
    for sub in subdirs:
        out += glob.glob(os.path.join(maildir(inst, user, domain, folder),
                                      sub, "*"))
    return sorted(out)


def all_delivered(inst):
    """Every message file in new/ or cur/ of every mailbox and folder."""
    out = []
    for root, dirs, files in os.walk(os.path.join(inst.dir, "mail")):
        if os.path.basename(root) in ("new", "cur"):
            out += [os.path.join(root, f) for f in files]
    return out


def read(path):
    with open(path, "rb") as f:
        return f.read()


def message_id(data):
    m = re.search(rb"^Message-ID: <([^>]*)>", data, re.M | re.I)
    return m.group(1).decode() if m else None


def count_ids(inst):
    """{Message-ID: number of delivered copies} over the whole store."""
    out = {}
    for path in all_delivered(inst):
        mid = message_id(read(path))
        out[mid] = out.get(mid, 0) + 1
    return out


def queue_json(inst):
    return json.loads(inst.pochta("queue", "list", "--json").stdout)


def queue_files(inst):
    return [p for q in QUEUES for p in queued(inst, q)]


def queue_empty(inst):
    return not queue_files(inst)


def wait_empty(inst, secs=20):
    wait_for(lambda: queue_empty(inst), secs, what="an empty queue")


def wait_files(inst, user, n, secs=20, **kw):
    """Wait until user's new/ holds n files; returns them."""
    return wait_for(lambda: (lambda f: f if len(f) == n else None)(
        mail_files(inst, user, **kw)), secs,
        what=f"{n} message(s) for {user}")


def parse(path):
    """A delivered file as an email.message.Message (compat32, so the
    delivery-status groups parse as RFC 3464 wants)."""
    return email.message_from_bytes(read(path), policy=email.policy.compat32)


def dsn_parts(msg):
    """(text part, [per-message fields, per-recipient fields...], third
    part) of a multipart/report delivery status notification."""
    parts = msg.get_payload()
    return parts[0], parts[1].get_payload(), parts[2] if len(parts) > 2 \
        else None


def service_pid(inst, name):
    """The pid of the running worker of service name (from `pochta status
    --json`), or None."""
    s = inst.service(name)
    pids = s.get("pids") if s else None
    return pids[0] if pids else None


class Senders:
    """Parallel SMTP sessions: jobs is a list of (sender, rcpt, message);
    session k sends jobs k, k + sessions, ... in order, calling before(n)
    first for each job n when given. join() raises the first error."""

    def __init__(self, inst, jobs, sessions=1, before=None):
        self.inst, self.jobs, self.before = inst, jobs, before
        self.errors = []
        self.queue_ids = {}     # job number -> queue ID
        self.threads = [threading.Thread(target=self._run, args=(k,
                                                                 sessions))
                        for k in range(sessions)]
        for t in self.threads:
            t.start()

    def _run(self, k, sessions):
        try:
            with smtplib.SMTP("127.0.0.1", self.inst.port("smtp"),
                              timeout=timeout(60)) as s:
                s.ehlo("client.test")
                for n in range(k, len(self.jobs), sessions):
                    if self.before:
                        self.before(n)
                    sender, rcpt, msg = self.jobs[n]
                    self.queue_ids[n] = send(self.inst, sender, [rcpt], msg,
                                             smtp=s)
        except Exception as e:     # re-raised by join()
            self.errors.append(e)

    def alive(self):
        return any(t.is_alive() for t in self.threads)

    def join(self):
        for t in self.threads:
            t.join()
        if self.errors:
            raise self.errors[0]
