#!/usr/bin/env python3
"""An HTTP server that corral runs as its worker, with the standard library only.

    corral -w 3 -b 127.0.0.1:8000 -- python3 examples/python/app.py

It takes its listening socket from fd 3 (systemd's socket activation: LISTEN_FDS,
LISTEN_PID), tells corral it is ready and alive over NOTIFY_SOCKET (READY=1,
WATCHDOG=1 every WATCHDOG_USEC/2), and stops gracefully on SIGTERM: it stops
accepting, serves what the kernel already queued, answers the next request on each
keep-alive connection with "Connection: close", and closes connections idle for 1 s.

GET / answers with the worker's pid. For corral's tests:
  APP_NO_READY=1               never send READY=1
  APP_WATCHDOG_STOP_AFTER=SEC  stop sending WATCHDOG=1 after SEC seconds
  APP_SERIAL=1                 one connection at a time, as a sync worker (connections wait in the backlog)
  APP_SLEEP=SEC                every request takes SEC seconds more
"""
import os
import select
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection stays open
DRAIN_IDLE = 1.0  # ... once draining
draining = threading.Event()


def notify(msg):
    """sd_notify: one datagram to NOTIFY_SOCKET; "@name" is the abstract namespace."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.sendto(msg.encode(), addr)


def listen_fds():
    """The sockets passed as systemd does, at fds 3, 4, ... (sd_listen_fds)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        sys.exit("no sockets passed: LISTEN_PID is not this process (run me under corral -- ...)")
    n = int(os.environ.get("LISTEN_FDS", "0"))
    for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(k, None)
    return [socket.socket(fileno=3 + i) for i in range(n)]


def watchdog():
    usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    if not usec or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return
    stop_after = float(os.environ.get("APP_WATCHDOG_STOP_AFTER", "0"))
    start = time.monotonic()
    while not stop_after or time.monotonic() - start < stop_after:
        notify("WATCHDOG=1")
        time.sleep(usec / 2e6)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(float(os.environ.get("APP_SLEEP", "0")))
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def end_headers(self):
        if draining.is_set():
            self.send_header("Connection", "close")  # also ends the loop in handle()
        super().end_headers()

    def handle(self):
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection and self.wait_for_request():
            self.handle_one_request()

    def wait_for_request(self):
        """Waits for the next request on a keep-alive connection; False to close it."""
        idle = 0.0
        while True:
            if select.select([self.connection], [], [], 0.1)[0]:
                return True
            idle += 0.1
            if idle >= (DRAIN_IDLE if draining.is_set() else KEEP_ALIVE):
                return False

    def log_message(self, fmt, *args):
        pass  # no access log


# A thread per connection, or with APP_SERIAL one connection at a time.
ServerBase = socketserver.TCPServer if os.environ.get("APP_SERIAL") else socketserver.ThreadingTCPServer


class Server(ServerBase):
    """A TCPServer over an inherited listening socket (TCP or unix)."""

    def __init__(self, sock):
        socketserver.BaseServer.__init__(self, sock.getsockname(), Handler)
        self.socket = sock

    def drain_backlog(self):
        """Serves the connections the kernel already accepted. The listener is
        non-blocking (its flag is shared with corral), so accept ends with EAGAIN."""
        if os.get_blocking(self.socket.fileno()):
            return
        while True:
            try:
                conn, addr = self.socket.accept()
            except OSError:
                return
            self.process_request(conn, addr)


def main():
    socks = listen_fds()
    if not socks:
        sys.exit("no sockets passed (LISTEN_FDS=0)")
    server = Server(socks[0])

    def stop(signum, frame):
        draining.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # corral forwards USR1 (reopen logs): no logs here
    threading.Thread(target=watchdog, daemon=True).start()
    print(f"app.py (pid {os.getpid()}) serving on {socks[0].getsockname()}", flush=True)
    if os.environ.get("APP_NO_READY") != "1":
        notify("READY=1\nSTATUS=serving on fd 3")
    server.serve_forever(poll_interval=0.1)
    server.drain_backlog()
    notify("STOPPING=1")
    server.server_close()  # waits for the connections in flight
    print(f"app.py (pid {os.getpid()}) stopped", flush=True)


if __name__ == "__main__":
    main()
