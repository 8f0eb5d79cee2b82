"""A fast WebSocket unmasking for eventlet's WebSocket server (the transport under gunicorn -k eventlet).

Browsers must mask every frame they send (RFC 6455 5.3): each payload byte is XORed with a 4-byte
key. eventlet 0.41 removes the mask one byte at a time in a Python generator, about 2.5 ms for one
20 kB webcam frame, on the event loop, which then serves nobody else: at 90 frames/s that alone took
a quarter of a core (docs/benchmarks.md). ``apply_mask`` does the same XOR on whole Python integers
(~0.02 ms) and returns the same bytes; ``install()`` puts it in place of eventlet's.
"""
from __future__ import annotations

_installed = False


def apply_mask(data, mask, length=None, offset=0) -> bytes:
    """``data[:length]`` XOR the 4-byte ``mask`` started at byte ``offset`` of the frame (the same
    contract as eventlet's ``RFC6455WebSocket._apply_mask``)."""
    if length is None:
        length = len(data)
    if length <= 0:
        return b""
    data = bytes(data[:length])
    if len(data) < length:
        raise IndexError("mask length beyond the data")
    key = bytes(mask[(offset + i) % 4] for i in range(4))
    key = (key * (length // 4 + 1))[:length]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(length, "little")


def install() -> bool:
    """Replace eventlet's per-byte unmasking with ``apply_mask``; True if it is in place."""
    global _installed
    if _installed:
        return True
    try:
        from eventlet.websocket import RFC6455WebSocket
    except ImportError:
        return False
    RFC6455WebSocket._apply_mask = staticmethod(apply_mask)
    _installed = True
    return True
