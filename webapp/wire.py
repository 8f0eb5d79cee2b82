"""Length-prefixed messages between the web process and the inference worker (over its stdin/stdout).

A message is ``u32 length`` + body; the body is ``u32 header length`` + a UTF-8 JSON header + binary
blobs laid end to end, their sizes listed in the header's ``sizes`` (big-endian throughout)::

    web -> worker   {"type": "batch", "ids": [...], "sizes": [...], "clients": [...]} + the frames' bytes
                    (clients, optional: each frame's video stream, for face tracking)
    worker -> web   {"type": "ready", "labels": [...], "members": [...], "models_dir": ..., "load_s": ...}
                    {"type": "fatal", "reason": "..."}            (then the worker exits)
                    {"type": "results", "results": [{"id", "faces", "width", "height"} | {"id", "error"}]}

Only this module's plain-stdlib code runs on both sides, so the web process never imports TensorFlow.
"""
from __future__ import annotations

import json
import os
import select
import struct

MAX_MESSAGE = 1 << 30  # a corrupt length prefix must not allocate gigabytes
_U32 = struct.Struct(">I")


class WireError(EOFError):
    """The pipe closed or carried something that is not a message."""


def encode(header: dict, blobs=()) -> bytes:
    blobs = [bytes(b) for b in blobs]
    if blobs:
        header = dict(header, sizes=[len(b) for b in blobs])
    head = json.dumps(header, separators=(",", ":")).encode()
    body = b"".join([_U32.pack(len(head)), head, *blobs])
    return _U32.pack(len(body)) + body


def decode(body: bytes) -> tuple[dict, list[bytes]]:
    if len(body) < 4:
        raise WireError("message shorter than its header length")
    (n,) = _U32.unpack_from(body)
    try:
        header = json.loads(body[4:4 + n])
    except (ValueError, UnicodeDecodeError):
        raise WireError("message header is not JSON") from None
    if not isinstance(header, dict):
        raise WireError("message header is not an object")
    blobs, pos = [], 4 + n
    for size in header.get("sizes", []):
        blobs.append(body[pos:pos + size])
        pos += size
    if pos != len(body):
        raise WireError("message blobs do not add up to its length")
    return header, blobs


def read_exact(f, n: int) -> bytes:
    """n bytes from a binary file (raw, buffered or eventlet green); WireError at end of file."""
    parts, got = [], 0
    while got < n:
        chunk = f.read(n - got)
        if not chunk:
            raise WireError("pipe closed")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def read_message(f) -> tuple[dict, list[bytes]]:
    (n,) = _U32.unpack(read_exact(f, 4))
    if n > MAX_MESSAGE:
        raise WireError(f"message length {n} over {MAX_MESSAGE}")
    return decode(read_exact(f, n))


def write_message(f, header: dict, blobs=()) -> None:
    data = memoryview(encode(header, blobs))
    fd = _nonblocking_fd(f)
    if fd is not None:
        _write_nonblocking(fd, data)
        return
    while data:
        n = f.write(data)
        data = data[len(data) if n is None else n:]
    f.flush()


def _nonblocking_fd(f) -> int | None:
    try:
        fd = f.fileno()
        return None if os.get_blocking(fd) else fd
    except (AttributeError, OSError, ValueError):
        return None


def _write_nonblocking(fd: int, data: memoryview) -> None:
    """All of ``data`` to a non-blocking pipe (eventlet's green pipes are): waits for room with
    select (green under eventlet) and raises BrokenPipeError once the reader is gone. eventlet 0.41's
    green os.write retries EPIPE as if it were EAGAIN, so a write into a killed worker's full pipe
    spun forever and the dispatcher never saw the crash (the retry came with eventlet PR #975)."""
    import posix  # the C function itself: eventlet's green os module wraps os.write, never posix.write
    while data:
        try:
            n = posix.write(fd, data)
        except BlockingIOError:
            select.select([], [fd], [fd])
            continue
        data = data[n:]
