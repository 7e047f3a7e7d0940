#!/usr/bin/env python3
"""A stand-in pochta worker for master's tests.

master runs it as `testworker.py -c CONFDIR [ARGS]` with its listening
sockets as fd 3, 4, ... (POCHTA_LISTEN_FDS of them). Every connection gets
one line, "hello SERVICE PID", and then each line it sends comes back
prefixed with "echo ", except "reloads?", answered with the number of
SIGHUPs received. On SIGTERM it closes its sockets and exits 0, as the
worker contract in pochta-master(8) asks; SIGHUP (re-read the
configuration) is counted.

ARGS: --exit N   exit with status N at once (a crashing service).
      --record FILE   append "PID argv... SERVICE CONFDIR" to FILE at start.
      --ignore-term   ignore SIGTERM (a worker that will not stop).
      --slow-start SECS   sleep before installing the SIGHUP handler (a
                      worker signalled while it is still starting).
"""
import os
import selectors
import signal
import socket
import sys
import time


def main():
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "-c":
        print("testworker: expected -c CONFDIR", file=sys.stderr)
        return 2
    rest = args[2:]
    if "--record" in rest:
        path = rest[rest.index("--record") + 1]
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {' '.join(sys.argv[1:])} "
                    f"{os.environ.get('POCHTA_SERVICE')} "
                    f"{os.environ.get('POCHTA_CONF')}\n")
    if "--exit" in rest:
        return int(rest[rest.index("--exit") + 1])

    service = os.environ.get("POCHTA_SERVICE", "?")
    nfds = int(os.environ.get("POCHTA_LISTEN_FDS", "0"))
    sel = selectors.DefaultSelector()
    listeners = []
    for fd in range(3, 3 + nfds):
        s = socket.socket(fileno=fd)
        s.setblocking(False)
        listeners.append(s)
        sel.register(s, selectors.EVENT_READ, "listen")

    stop = []
    if "--ignore-term" in rest:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    if "--slow-start" in rest:
        time.sleep(float(rest[rest.index("--slow-start") + 1]))
    reloads = []
    signal.signal(signal.SIGHUP, lambda *a: reloads.append(1))
    # master starts workers with SIGHUP blocked (pochta-master(8)).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    greeting = f"hello {service} {os.getpid()}\n".encode()
    pending = {}
    while not stop:
        try:
            events = sel.select(timeout=0.2)
        except InterruptedError:
            continue
        for key, _ in events:
            if key.data == "listen":
                try:
                    conn, _ = key.fileobj.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                conn.setblocking(True)
                conn.sendall(greeting)
                conn.setblocking(False)
                pending[conn] = b""
                sel.register(conn, selectors.EVENT_READ, "conn")
                continue
            conn = key.fileobj
            try:
                data = conn.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(conn)
                conn.close()
                del pending[conn]
                continue
            pending[conn] += data
            while b"\n" in pending[conn]:
                line, pending[conn] = pending[conn].split(b"\n", 1)
                conn.setblocking(True)
                if line == b"reloads?":
                    conn.sendall(b"reloads %d\n" % len(reloads))
                else:
                    conn.sendall(b"echo " + line + b"\n")
                conn.setblocking(False)
    for s in listeners:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
