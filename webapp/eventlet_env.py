"""Whether this process runs on eventlet's green threads (``python -m webapp``, ``gunicorn -k eventlet``):
the one place that asks, for the Socket.IO async mode and for the code that must behave otherwise there."""
from __future__ import annotations

import sys


def patched(module: str = "socket") -> bool:
    """True once eventlet has monkey-patched ``module`` ('socket', 'thread', ...)."""
    if "eventlet" not in sys.modules:  # imported only where loaded already: a threading server never loads it
        return False
    from eventlet import patcher
    return patcher.is_monkey_patched(module)


def async_mode() -> str:
    """Flask-SocketIO's async mode for this process: 'eventlet' where eventlet has patched it, else
    'threading' (tests, a WSGI server with threads). Not a setting: the other one would fail here."""
    return "eventlet" if patched("socket") else "threading"
