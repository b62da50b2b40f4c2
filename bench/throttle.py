"""A loopback TCP proxy that models S3's per-request bandwidth, for the bench.

``python bench/throttle.py --upstream PORT [--rate 64e6] [--first-byte 0.005]``
listens on a free 127.0.0.1 port (printed as the first line of stdout) and
forwards every connection to ``127.0.0.1:PORT``, with two changes:

- each TCP connection moves at most ``--rate`` bytes a second in each
  direction (paced in 64 KiB steps), as AWS S3 serves one request at
  roughly 85-90 MB/s whatever the client's bandwidth;
- the first byte of each answer waits ``--first-byte`` seconds more (the
  time S3 takes to start answering a request).

It is a model of S3, not S3: no variance, no throttling by prefix, no
per-account limits. Bytes move with ``os.splice`` through a pipe, so the
proxy costs little CPU next to the client it measures. It stops on SIGTERM
or when stdin closes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading
import time

STEP = 64 * 1024


class Pacer:
    """Hold a direction of a connection to *rate* bytes a second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.next = time.monotonic()

    def sent(self, count: int) -> None:
        now = time.monotonic()
        self.next = max(self.next, now) + count / self.rate
        if self.next > now:
            time.sleep(self.next - now)


def pipe_bytes(
    source: socket.socket,
    target: socket.socket,
    pacer: Pacer,
    *,
    before: threading.Event | None = None,
    after: threading.Event | None = None,
    first_byte: float = 0.0,
) -> None:
    """Move bytes from *source* to *target* until either side closes.

    *after* is set whenever bytes arrive (a request is sent); when *before*
    is set as bytes arrive (an answer begins), wait *first_byte* seconds
    first and clear it.
    """
    read_end, write_end = os.pipe()
    try:
        while True:
            try:
                moved = os.splice(source.fileno(), write_end, STEP)
            except OSError:
                return
            if moved == 0:
                return
            if after is not None:
                # Before the bytes go on, so the answer can't come first.
                after.set()
            if before is not None and before.is_set():
                before.clear()
                time.sleep(first_byte)
            left = moved
            while left:
                try:
                    left -= os.splice(read_end, target.fileno(), left)
                except OSError:
                    return
            pacer.sent(moved)
    finally:
        os.close(read_end)
        os.close(write_end)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def serve(client: socket.socket, upstream: int, rate: float, first_byte: float) -> None:
    server = socket.create_connection(("127.0.0.1", upstream))
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    asked = threading.Event()
    up = threading.Thread(
        target=pipe_bytes,
        args=(client, server, Pacer(rate)),
        kwargs={"after": asked},
        daemon=True,
    )
    up.start()
    try:
        pipe_bytes(server, client, Pacer(rate), before=asked, first_byte=first_byte)
    finally:
        up.join()
        client.close()
        server.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument(
        "--rate", type=float, default=64e6, help="bytes/s per connection"
    )
    parser.add_argument("--first-byte", type=float, default=0.005, help="seconds")
    args = parser.parse_args(argv)
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    print(listener.getsockname()[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Thread(
        target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True
    ).start()
    while True:
        client, _ = listener.accept()
        threading.Thread(
            target=serve,
            args=(client, args.upstream, args.rate, args.first_byte),
            daemon=True,
        ).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
