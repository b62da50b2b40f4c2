"""A fault-injecting HTTP/1.1 proxy between a store and its server, on loopback.

It forwards requests one by one (reading each request's head and its
``Content-Length`` body), so faults hit individual requests even on
keep-alive connections. Faults are queued with :meth:`FaultProxy.inject` and
each applies to the next *times* requests whose request line contains
*match*.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

#: What a fault does to the request it hits.
FaultKind = Literal[
    "status",
    "reset_request",
    "reset_response",
    "stall",
    "late",
    "hang",
    "stop_reading",
    "trickle",
    "pause",
    "short_range",
]

_REASONS = {403: "Forbidden", 500: "Internal Server Error", 503: "Slow Down"}
_CODES = {403: "SignatureDoesNotMatch", 500: "InternalError", 503: "SlowDown"}


@attrs.define
class Fault:
    """One kind of failure, for the next *times* matching requests.

    Attributes:
        kind: ``status`` answers *status* without forwarding; ``reset_request``
            forwards *after* bytes of the request body, then resets both
            sides; ``reset_response`` resets the client after *after* bytes
            of the response; ``stall`` holds the request for *seconds*;
            ``late`` resets the client at once and sends the request to the
            server *seconds* later, on a connection of its own (a request
            the server executes after the client gave up on it); ``hang``
            reads the request head and never answers, not even an
            ``Expect: 100-continue``; ``stop_reading`` reads the head and
            *after* bytes of the body, then stops reading (the client's
            writes back up) and never answers; ``trickle`` forwards the
            request, sends the first *after* bytes of the response on, and
            the rest at *rate* bytes a second; ``pause`` forwards the
            request, sends the first *after* bytes of the response on, holds
            the rest *seconds*, then sends it at full speed (a fast server
            that hiccups once); ``short_range`` forwards the
            request and answers a ranged GET *after* bytes short, its
            ``Content-Range`` and ``Content-Length`` rewritten to match (a
            server that lies consistently).
        match: Only requests whose request line contains this (or, for a
            tuple, every one of these) are hit.
        times: How many more requests this fault hits.
    """

    kind: FaultKind
    match: str | tuple[str, ...] = ""
    times: int = 1
    status: int = 503
    after: int = 0
    seconds: float = 0.0
    rate: int = 1


def _framing(head: bytes) -> tuple[int, bool]:
    """Return a request head's Content-Length and whether it expects 100."""
    length = 0
    expect = False
    for header in head.split(b"\r\n")[1:]:
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"expect":
            expect = True
    return length, expect


def _abort(writer: asyncio.StreamWriter) -> None:
    """Reset the connection (RST, not FIN), as a crashed peer would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    writer.transport.abort()


@attrs.define
class FaultProxy:
    """Forward to ``127.0.0.1:upstream``, injecting queued faults.

    Attributes:
        upstream: The server's port.
        port: The proxy's port, once started.
        requests: Every request line seen, in order.
        hits: The request lines a fault was applied to, with the fault kind.
        late: The tasks sending ``late`` requests (see :meth:`landed`).
    """

    upstream: int
    port: int = 0
    requests: list[str] = attrs.Factory(list)
    hits: list[tuple[str, str]] = attrs.Factory(list)
    late: list[asyncio.Task[None]] = attrs.Factory(list)
    _faults: list[Fault] = attrs.Factory(list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = attrs.Factory(set)
    _writers: set[asyncio.StreamWriter] = attrs.Factory(set)
    _late_taken: asyncio.Event = attrs.Factory(asyncio.Event)

    @property
    def endpoint(self) -> str:
        """The proxy's URL, to give the store as its endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def inject(self, fault: Fault) -> None:
        """Queue *fault*; faults are tried in the order they were queued."""
        self._faults.append(fault)

    def clear(self) -> None:
        """Drop every queued fault."""
        self._faults.clear()

    def _take(self, line: str) -> Fault | None:
        for fault in self._faults:
            wanted = (fault.match,) if isinstance(fault.match, str) else fault.match
            if fault.times > 0 and all(part in line for part in wanted):
                fault.times -= 1
                self.hits.append((line, fault.kind))
                return fault
        return None

    async def start(self) -> None:
        """Listen (again) on loopback, on the same port as before if restarted."""
        self._server = await asyncio.start_server(
            self._connection, "127.0.0.1", self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and reset every open connection: an outage."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            _abort(writer)
        # Reset connections end their tasks; only stalled ones need a cancel.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1)
        for task in [*self._tasks, *self.late]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self.late, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        if self._server is None:
            # Accepted just before stop(): the outage resets it too.
            _abort(client_writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream
            )
            self._writers.add(upstream_writer)
            cut: list[int | None] = [None]
            rate: list[int | None] = [None, 0]
            responses = asyncio.create_task(
                self._responses(upstream_reader, client_writer, cut, rate)
            )
            try:
                await self._requests(
                    client_reader, client_writer, upstream_writer, cut, rate
                )
            finally:
                responses.cancel()
                await asyncio.gather(responses, return_exceptions=True)
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        except asyncio.CancelledError:
            # Stopped by stop(): end quietly, the connections are closed below.
            pass
        finally:
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.close()
            self._tasks.discard(task)

    async def _requests(  # noqa: C901, PLR0912 -- one branch per fault kind reads best flat
        self,
        reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
        cut: list[int | None],
        rate: list[int | None],
    ) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self.requests.append(line)
            length, expect = _framing(head)
            fault = self._take(line)
            if fault is None or fault.kind in (
                "reset_response",
                "trickle",
                "pause",
                "short_range",
            ):
                cut[0] = None if fault is None else fault.after
                if fault is not None and fault.kind == "trickle":
                    cut[0] = None
                    rate[:] = [fault.rate, fault.after]
                if fault is not None and fault.kind == "pause":
                    cut[0] = None
                    rate[:] = [-round(fault.seconds * 1000), fault.after]
                if fault is not None and fault.kind == "short_range":
                    cut[0] = -fault.after  # negative: shorten, don't reset
                upstream.write(head)
                await self._pipe_body(reader, upstream, length)
                continue
            if fault.kind == "hang":
                await asyncio.Event().wait()  # until the proxy stops
            if fault.kind == "stop_reading":
                await reader.readexactly(min(fault.after, length))
                await asyncio.Event().wait()
            if fault.kind == "stall":
                await asyncio.sleep(fault.seconds)
                upstream.write(head)
                await self._pipe_body(reader, upstream, length)
                continue
            if fault.kind == "late":
                if expect and length:
                    msg = "a late fault can't hold a body sent after 100-continue"
                    raise ValueError(msg)
                body = await reader.readexactly(length)
                _abort(client)
                late = asyncio.create_task(self._send_late(head + body, fault))
                self.late.append(late)
                self._late_taken.set()
                return
            if fault.kind == "reset_request":
                upstream.write(head)
                await self._pipe_body(reader, upstream, min(fault.after, length))
                _abort(client)
                _abort(upstream)
                return
            # A status answer, and close (as S3 does). A client that sent
            # ``Expect: 100-continue`` waits for the answer before its body.
            if not expect:
                await reader.readexactly(length)
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
                f"{_CODES.get(fault.status, 'InternalError')}</Code><Message>"
                "injected</Message></Error>"
            ).encode()
            client.write(
                f"HTTP/1.1 {fault.status} {_REASONS.get(fault.status, 'Error')}\r\n"
                "Content-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await client.drain()
            return

    async def _send_late(self, request: bytes, fault: Fault) -> None:
        """Send *request* upstream after *fault.seconds*; read and drop the answer."""
        await asyncio.sleep(fault.seconds)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        try:
            writer.write(request)
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def landed(self, *, at_least: int = 0) -> int:
        """Wait for every ``late`` request to be answered; return how many.

        With *at_least*, first wait until that many were taken.
        """
        while len(self.late) < at_least:
            self._late_taken.clear()
            await self._late_taken.wait()
        await asyncio.gather(*self.late)
        return len(self.late)

    @staticmethod
    async def _pipe_body(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int
    ) -> None:
        while length > 0:
            data = await reader.read(min(length, 65536))
            if not data:
                raise asyncio.IncompleteReadError(b"", length)
            writer.write(data)
            await writer.drain()
            length -= len(data)
        await writer.drain()

    @staticmethod
    async def _responses(
        reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        cut: list[int | None],
        rate: list[int | None],
    ) -> None:
        while True:
            if cut[0] is not None and cut[0] < 0:
                await _shorten(reader, client, -cut[0])
                cut[0] = None
                continue
            data = await reader.read(65536)
            if not data:
                break
            if rate[0] is not None and rate[0] < 0:
                # Pause: the first `after` bytes, a hold of -rate ms, the rest.
                fast = min(len(data), rate[1] or 0)
                rate[1] = (rate[1] or 0) - fast
                client.write(data[:fast])
                await client.drain()
                if fast < len(data):
                    await asyncio.sleep(-rate[0] / 1000)
                    rate[0] = None
                    client.write(data[fast:])
                    await client.drain()
                continue
            if rate[0] is not None:
                # Trickle: the first `after` bytes at once, then at most
                # `rate` bytes a second.
                fast = min(len(data), rate[1] or 0)
                rate[1] = (rate[1] or 0) - fast
                client.write(data[:fast])
                await client.drain()
                # Quarter-second steps: every socket read gets a byte well
                # within any read timeout, so only a deadline stops it.
                step = max(1, rate[0] // 4)
                for start in range(fast, len(data), step):
                    client.write(data[start : start + step])
                    await client.drain()
                    await asyncio.sleep(0.25)
                continue
            if cut[0] is not None:
                if len(data) >= cut[0]:
                    client.write(data[: cut[0]])
                    await client.drain()
                    _abort(client)
                    return
                cut[0] -= len(data)
            client.write(data)
            await client.drain()
        client.close()


async def _shorten(
    reader: asyncio.StreamReader, client: asyncio.StreamWriter, by: int
) -> None:
    """Forward one answer *by* bytes short, its framing headers rewritten."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    kept = max(0, length - by)
    rewritten = [lines[0]]
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            rewritten.append(b"Content-Length: %d" % kept)
        elif key == b"content-range":
            span, _, total = value.strip().removeprefix(b"bytes ").partition(b"/")
            first = int(span.partition(b"-")[0])
            rewritten.append(
                b"Content-Range: bytes %d-%d/%s" % (first, first + kept - 1, total)
            )
        else:
            rewritten.append(line)
    client.write(b"\r\n".join(rewritten))
    body = await reader.readexactly(length)
    client.write(body[:kept])
    await client.drain()


@contextlib.asynccontextmanager
async def fault_proxy(upstream: int) -> AsyncIterator[FaultProxy]:
    """Run a :class:`FaultProxy` to ``127.0.0.1:upstream``; stop it afterwards."""
    proxy = FaultProxy(upstream)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
