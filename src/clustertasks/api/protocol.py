"""The HTTP/1.1 connection: uvicorn's httptools protocol, closing sockets that never send a
whole request.

uvicorn times out an idle keep-alive connection only once a first response is sent, and
restarts that clock with every byte it receives: a socket that never sends anything, or
sends its headers a byte at a time, would be held for ever. Here every connection has
``read_timeout`` seconds to send a whole request, from when it opens or from its previous
response; a request that arrived whole may then take as long as it needs (a long-poll, an
event stream).

The writes of one turn of the event loop also leave as one (``_Coalesced``): uvicorn writes
a response's head and its body separately, each a system call and, on a connection without
Nagle's delay, a packet of its own; together they are one of each.

``respond`` writes a whole response of a known length (api/fastpath.py's answers) to such
a connection in one step: the bytes and the connection's state exactly as uvicorn's two
``send`` calls would leave them, without the per-header checks of headers built valid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.http import httptools_impl


def guarded(read_timeout: float) -> type[httptools_impl.HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline for each whole request."""

    class GuardedProtocol(httptools_impl.HttpToolsProtocol):
        _read_timer: asyncio.TimerHandle | None = None
        # Requests that arrived whole and are not answered yet (pipelining: more than one).
        _whole = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.transport = _Coalesced(transport, self.loop)  # type: ignore[assignment]
            self._arm()

        def on_message_complete(self) -> None:
            self._whole += 1
            self._disarm()  # the whole request is in: the application has it
            super().on_message_complete()

        def on_response_complete(self) -> None:
            self._whole = max(0, self._whole - 1)
            if not self._whole:
                self._arm()  # the next request's deadline (none while one is in already)
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._read_timer = self.loop.call_later(read_timeout, self._read_timed_out)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_timed_out(self) -> None:
            self._read_timer = None
            if not self._whole and not self.transport.is_closing():
                self.transport.close()

    return GuardedProtocol


class _Coalesced:
    """A transport whose writes of one turn of the event loop go out in one write, at the
    end of the turn; closing it sends what is pending first. Everything else is the
    transport's own (flow control included: it sees the bytes once they are written)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def write_whole(self, data: bytes) -> None:
        """Write ``data``, a whole response, now when nothing waits to go before it (there
        is nothing to join it with), else after what waits."""
        if self._pending:
            self.write(data)
        elif not self._transport.is_closing():
            self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def is_closing(self) -> bool:  # asked several times a request: not via __getattr__
        return self._transport.is_closing()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def respond(
    send: Callable[[Any], Awaitable[None]],
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> bool:
    """Write the response (``headers`` lower-case, valid, with its ``content-length``)
    through the uvicorn connection ``send`` belongs to, as its ``http.response.start`` and
    ``http.response.body`` would; False, having done nothing, where that is not plain (not
    uvicorn's httptools connection, a response begun, writing paused, a ``HEAD``, the
    access log on): the caller then sends the two messages."""
    cycle: Any = getattr(send, "__self__", None)
    if (
        type(cycle) is not httptools_impl.RequestResponseCycle
        or cycle.response_started
        or cycle.disconnected
        or cycle.flow.write_paused
        or cycle.access_log
        or cycle.scope["method"] == "HEAD"
    ):
        return False
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = False
    content = [httptools_impl.STATUS_LINE[status]]
    for name, value in cycle.default_headers:  # uvicorn's own (the date), as it writes them
        content += (name.lower(), b": ", value, b"\r\n")
    for name, value in headers:
        content += (name, b": ", value, b"\r\n")
    if not cycle.keep_alive:
        content.append(b"connection: close\r\n")
    content += (b"\r\n", body)
    transport: Any = cycle.transport
    if type(transport) is _Coalesced:
        transport.write_whole(b"".join(content))
    else:
        transport.write(b"".join(content))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True
