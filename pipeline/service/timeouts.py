"""Slow clients (slowloris): a request's head and body must arrive within a bound.

uvicorn's HTTP/1.1 protocol (h11) arms no timer on a fresh connection, and its keep-alive timer
(5 s) is cancelled by the first byte of the next request: a client that opens a connection and
sends nothing, or trickles a header line every few seconds, or declares a body and sends one
byte a minute, holds a socket (a file descriptor: 1,024 of them and nobody else connects) and,
for the body, a request task, for as long as it likes.

:class:`DeadlineH11Protocol` is uvicorn's h11 protocol with two deadlines, each counted from
when that part of the request may start (not reset by each byte, so trickling does not extend
it):

- ``header_timeout`` (default 10 s): from the connection opening, or the end of the previous
  response, to the end of the request head. Past it: ``408`` if part of a head came, else the
  connection is just closed (an idle keep-alive connection still closes after uvicorn's 5 s);
- ``body_timeout`` (default 30 s): from the end of the head to the end of the body (bodies are
  at most 1 MiB: 30 s is ~35 KB/s). Past it: ``408`` if the app has not started its response,
  and the connection is closed; the app's ``receive()`` gets ``http.disconnect``.

Neither bounds how long the app takes to answer (a long SSE stream, a big shard download):
both stop at the end of the request's body. Over TLS the handshake comes first and has
asyncio's own bound (60 s); the head deadline starts after it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0

_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s")


def protocol_class(header_timeout: float = HEADER_TIMEOUT_S, body_timeout: float = BODY_TIMEOUT_S) -> type[H11Protocol]:
    """The uvicorn ``http`` protocol class with these bounds (seconds; > 0)."""
    for name, v in (("header_timeout", header_timeout), ("body_timeout", body_timeout)):
        if not v > 0:
            raise ValueError(f"{name}: {v!r} is not a positive number of seconds")
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,),
                {"header_timeout": float(header_timeout), "body_timeout": float(body_timeout)})


class DeadlineH11Protocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT_S
    body_timeout = BODY_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: str | None = None  # "head" | "body" | None: what the running timer waits for
        self._timer: asyncio.TimerHandle | None = None

    def _rearm(self) -> None:
        """Run the timer that the request's state calls for (h11's view of the client)."""
        if self.transport is None or self.transport.is_closing():
            want = None
        else:
            st = self.conn.their_state
            want = "head" if st is h11.IDLE else "body" if st is h11.SEND_BODY else None
        if want == self._phase:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = want
        if want is not None:
            bound = self.header_timeout if want == "head" else self.body_timeout
            self._timer = self.loop.call_later(bound, self._expired, want)

    def _expired(self, phase: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if phase == "head":
            started = bool(self.conn.trailing_data[0])
            msg = f"the request head did not arrive within {self.header_timeout:g} s"
        else:
            started = self.cycle is not None and not self.cycle.response_started
            msg = f"the request body did not arrive within {self.body_timeout:g} s"
            if self.cycle is not None:
                self.cycle.disconnected = True  # the app's receive() answers http.disconnect, its send() is dropped
                self.cycle.message_event.set()
        self.logger.warning("%s%s; connection closed", "%s:%d - " % self.client if self.client else "", msg)
        if started:
            body = msg.encode()
            self.transport.write(_408 % (len(body), body))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._rearm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._rearm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._rearm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = None
        super().connection_lost(exc)
