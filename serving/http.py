"""Raw ASGI helpers shared by every endpoint: bounded body reading, decompression, JSON responses.

The request body is always read raw (never declared as a pydantic model): the official
``tritonclient.http`` client sends no Content-Type and mixes JSON with binary tensor bytes.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any, Awaitable, Callable

import orjson

from .errors import BadRequest, PayloadTooLarge, ServingError, UnsupportedMediaType

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientDisconnected(Exception):
    """The client went away before sending the whole body; nothing can be answered."""


class RequestHeaders:
    """The few request headers the service reads, from one pass over the ASGI header list."""

    __slots__ = ("content_length", "content_encoding", "content_type", "header_length", "accept_encoding",
                 "authorization")

    def __init__(self, raw: list[tuple[bytes, bytes]]):
        self.content_length: int | None = None
        self.content_encoding = b""
        self.content_type = b""
        self.header_length: int | None = None
        self.accept_encoding = b""
        self.authorization = b""
        for key, value in raw:
            if key == b"content-length":
                self.content_length = _header_int(value, "Content-Length")
            elif key == b"inference-header-content-length":
                self.header_length = _header_int(value, "Inference-Header-Content-Length")
            elif key == b"content-encoding":
                self.content_encoding = value.strip().lower()
            elif key == b"content-type":
                self.content_type = value
            elif key == b"accept-encoding":
                self.accept_encoding = value.lower()
            elif key == b"authorization":
                self.authorization = value


MAX_HEADER_DIGITS = 18  # below 2**63; a longer number is a lie about any body this server accepts


def _header_int(value: bytes, name: str) -> int:
    digits = value.strip()
    if not digits.isdigit():
        raise BadRequest(f"header {name} must be a non-negative integer, got {value[:40]!r}")
    if len(digits) > MAX_HEADER_DIGITS:
        raise BadRequest(f"header {name} has {len(digits)} digits; at most {MAX_HEADER_DIGITS} are accepted")
    return int(digits)


async def read_body(receive: Receive, headers: RequestHeaders, limit: int) -> bytes:
    """The whole request body, decompressed; 413 as soon as it (or its decompressed form) passes ``limit``."""
    if headers.content_length is not None and headers.content_length > limit:
        raise PayloadTooLarge(_too_large(headers.content_length, limit, ""))
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(size, limit, "at least "))
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return decompress(body, headers.content_encoding, limit)


def _too_large(size: int, limit: int, prefix: str) -> str:
    return (f"request body of {prefix}{size} bytes exceeds the limit of {limit} bytes "
            "(setting max_body_bytes, environment CNNSPEC_SERVE_MAX_BODY_BYTES)")


def decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    """Undo Content-Encoding gzip or deflate (zlib, or raw deflate), never producing more than ``limit``
    bytes: a small gzip bomb is refused after ``limit`` bytes, not after filling memory."""
    if encoding in (b"", b"identity"):
        return body
    if encoding in (b"gzip", b"x-gzip"):
        candidates = (31,)
    elif encoding == b"deflate":
        candidates = (15, -15)  # RFC 9110 says zlib-wrapped; some clients send raw deflate
    else:
        raise UnsupportedMediaType(f"Content-Encoding {encoding.decode(errors='replace')!r} is not supported; "
                                   "send gzip, deflate or an uncompressed body")
    for wbits in candidates:
        inflater = zlib.decompressobj(wbits)
        try:
            result = inflater.decompress(body, limit + 1)
        except zlib.error as error:
            if wbits == candidates[-1]:
                raise BadRequest(f"the {encoding.decode()} request body cannot be decompressed: {error}") from None
            continue
        if len(result) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"the decompressed request body exceeds the limit of {limit} bytes "
                                  "(setting max_body_bytes, environment CNNSPEC_SERVE_MAX_BODY_BYTES)")
        if not inflater.eof:
            raise BadRequest(f"the {encoding.decode()} request body is truncated")
        return result
    raise AssertionError("unreachable")


def compress(body: bytes, accept_encoding: bytes, min_bytes: int) -> tuple[bytes, bytes | None]:
    """gzip or deflate a large response when the client accepts it; never brotli (not every client decodes it)."""
    if len(body) < min_bytes or not accept_encoding:
        return body, None
    accepted = _accepted(accept_encoding)
    if b"gzip" in accepted:
        return gzip.compress(body, compresslevel=1, mtime=0), b"gzip"
    if b"deflate" in accepted:
        return zlib.compress(body, 1), b"deflate"
    return body, None


def _accepted(header: bytes) -> set[bytes]:
    """Codings of an Accept-Encoding header whose q-value is above 0."""
    result = set()
    for part in header.split(b","):
        token, _, params = part.partition(b";")
        quality = 1.0
        params = params.replace(b" ", b"")
        if params.startswith(b"q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        if quality > 0:
            result.add(token.strip())
    return result


async def send_bytes(send: Send, status: int, body: bytes, content_type: bytes = b"application/json",
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: ServingError) -> None:
    """``{"error": "..."}`` with the error's status (Triton's and KServe's error body)."""
    extra = [(b"www-authenticate", b'Bearer realm="cnnspec"')] if error.status == 401 else None
    await send_bytes(send, error.status, orjson.dumps({"error": str(error)}), extra=extra)
