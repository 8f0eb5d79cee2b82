"""Whether this process runs on eventlet's green threads (``python -m webapp``, ``gunicorn -k eventlet``)."""
from __future__ import annotations

import sys


def patched(module: str = "socket") -> bool:
    """True once eventlet has monkey-patched ``module`` ('socket', 'thread', ...)."""
    if "eventlet" not in sys.modules:
        return False
    from eventlet import patcher
    return patcher.is_monkey_patched(module)
