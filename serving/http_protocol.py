"""uvicorn's httptools protocol with deadlines for a request's headers and for its body.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``). A client that opens a
connection and sends nothing, sends half a header, or announces a body and then trickles or stops
keeps its connection (and a handler waiting in ``receive()``) open forever; a few hundred of them
exhaust file descriptors. This protocol closes such connections:

- ``header_timeout_s``: from the connection's first byte (or from the connection itself) until the
  request's headers are complete;
- ``body_timeout_s``: from the end of the headers until the whole body has arrived. It is a total,
  not an idle timeout, so a client sending one byte a second cannot keep a request open either.

When a deadline passes before a response has started, the client gets ``408`` with
``{"error": "..."}`` and ``Connection: close``; the handler waiting for the body sees a
disconnect. The timers are two ``call_later`` handles per request on the event loop: nothing on
the hot path waits on them.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _timeout_response(message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` plus the header and body deadlines (class attributes, see ``timed_protocol``)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()
        if not self.transport.is_closing() and self.body_timeout_s:
            self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timed_out)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        if self.header_timeout_s:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        self._close(f"the request headers did not arrive within {self.header_timeout_s:g} s "
                    "(setting header_timeout_s, environment CNNSPEC_SERVE_HEADER_TIMEOUT_S)", started=False)

    def _body_timed_out(self) -> None:
        self._body_timer = None
        started = self.cycle is not None and self.cycle.response_started
        self._close(f"the request body did not arrive within {self.body_timeout_s:g} s "
                    "(setting body_timeout_s, environment CNNSPEC_SERVE_BODY_TIMEOUT_S)", started)

    def _close(self, message: str, started: bool) -> None:
        """Answer 408 unless a response is already under way, then drop the connection."""
        if self.transport.is_closing():
            return
        if not started:
            self.transport.write(_timeout_response(message))
        self.logger.info("closing a connection from %s: %s", self.client, message)
        self.transport.close()  # asyncio then calls connection_lost: the handler sees a disconnect


def timed_protocol(header_timeout_s: float, body_timeout_s: float) -> type[TimedHttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)`` with these deadlines (0 = none)."""
    return type("TimedHttpToolsProtocol", (TimedHttpToolsProtocol,),
                {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s})
