"""Log lines that a hostile client cannot bend: one event per line, client text escaped and bounded,
repeats rate-limited, and the lines of the servers' and the inference worker's raw streams routed
through the same rules.

* ``clean`` escapes control characters (a newline in a Host header or a session id must not start a
  line of its own) and cuts a message to ``MAX_CHARS``.
* ``OneLineFormatter`` writes every record as one line: an exception becomes its type and where it
  was raised (its message and traceback could quote what a client sent).
* ``RepeatLimiter`` lets ``burst`` records of one kind through per ``window`` seconds and counts the
  rest; the next record of that kind that goes through says how many were left out.
* ``ErrorStream`` stands in for a request's ``wsgi.errors`` (eventlet's WebSocket writes its close
  errors there, with no newline and the client's Host header).
* ``pump`` turns a subprocess's stderr (the inference worker's, where libjpeg, libpng and TensorFlow
  write from C) into log records, line by line.
"""
from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

MAX_CHARS = 1000     # a longer message is cut: a log line must not carry a client's megabyte
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_DIGITS = re.compile(r"\d+")


def _escape(m: re.Match) -> str:
    c = m.group()
    return _ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def clean(text, limit: int = MAX_CHARS) -> str:
    """``text`` on one line: control characters escaped, at most ``limit`` characters plus a note of
    how many were cut."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    s = str(text)
    esc = _CONTROL.sub(_escape, s[:limit])
    cut = len(s) - limit if len(s) > limit else 0
    if len(esc) > limit:  # escaping made it longer
        esc = esc[:limit]
        cut = max(cut, 1)
    return esc + (f"...[{cut} more chars]" if cut else "")


def where(exc_info) -> str:
    """'TypeName at file.py:123' for an exc_info triple: the innermost frame, never the message."""
    etype, _, tb = exc_info
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    loc = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb is not None else ""
    return f"{getattr(etype, '__name__', etype)}{loc}"


class OneLineFormatter(logging.Formatter):
    def __init__(self, fmt: str = FORMAT, limit: int = MAX_CHARS):
        super().__init__(fmt)
        self.limit = limit

    def format(self, record: logging.LogRecord) -> str:
        msg = clean(record.getMessage(), self.limit)
        if record.exc_info and record.exc_info[0] is not None:
            msg += f" ({where(record.exc_info)})"
        elif record.exc_text:
            msg += f" ({clean(record.exc_text.strip().splitlines()[-1], 200)})"
        one = logging.makeLogRecord(dict(record.__dict__, msg=msg, args=None, exc_info=None,
                                         exc_text=None, stack_info=None))
        return super().format(one)


class RepeatLimiter(logging.Filter):
    """At most ``burst`` records per kind in any ``window`` seconds. A kind is the logger, the level
    and the message template with its digits blanked (so 'N extraneous bytes' lines are one kind).
    Memory is bounded: at most ``max_kinds`` kinds are remembered, the stalest forgotten first."""

    def __init__(self, burst: int = 5, window: float = 60.0, max_kinds: int = 1000, clock=time.monotonic):
        super().__init__()
        if burst < 1 or window <= 0 or max_kinds < 1:
            raise ValueError(f"burst, window and max_kinds must be positive, got {burst!r}, {window!r}, {max_kinds!r}")
        self.burst, self.window, self.max_kinds, self.clock = burst, window, max_kinds, clock
        self._kinds: OrderedDict = OrderedDict()  # kind -> [window start, let through, left out]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, _DIGITS.sub("#", str(record.msg))[:200])
        now = self.clock()
        with self._lock:
            k = self._kinds.get(kind)
            left_out = 0
            if k is None or now - k[0] >= self.window:
                left_out = k[2] if k is not None else 0
                k = self._kinds[kind] = [now, 0, 0]
            self._kinds.move_to_end(kind)
            while len(self._kinds) > self.max_kinds:
                self._kinds.popitem(last=False)
            if k[1] >= self.burst:
                k[2] += 1
                return False
            k[1] += 1
        if left_out:
            record.msg = f"{record.getMessage()} [{left_out} more like this left out in the last {self.window:g} s]"
            record.args = None
        return True


class ErrorStream:
    """A file-like ``wsgi.errors`` that turns what is written into log records, one per line."""

    # eventlet's WebSocket shuts its socket down after Engine.IO's writer already closed it: EBADF on
    # every close, written with no newline (the message came with eventlet PR #450). Not an error.
    _EXPECTED = re.compile(r"socket shutdown error: \[Errno 9\]")

    def __init__(self, logger: logging.Logger):
        self.log = logger

    def write(self, text) -> int:
        s = text.decode("utf-8", "replace") if isinstance(text, (bytes, bytearray)) else str(text)
        for line in s.splitlines():
            if not line.strip():
                continue
            if self._EXPECTED.search(line):
                self.log.debug("WebSocket closed twice (eventlet): ignored")
            else:
                self.log.warning(line)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


def pump(stream, logger: logging.Logger, level: int = logging.INFO) -> threading.Thread:
    """Read ``stream`` (a binary pipe) line by line until its end, logging each line; returns the
    started daemon thread. Lines are read bounded (``MAX_CHARS`` bytes at a time)."""
    def run():
        try:
            while True:
                raw = stream.readline(MAX_CHARS)
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.strip():
                    logger.log(level, line)
        except (OSError, ValueError):  # closed under us at shutdown
            return
        finally:
            try:
                stream.close()
            except OSError:
                pass

    t = threading.Thread(target=run, name="fer-log-pump", daemon=True)
    t.start()
    return t


def transport_logger(name: str) -> logging.Logger:
    """A logger for python-socketio / python-engineio at WARNING: their INFO lines log packets (frame
    bytes included), and passing a logger stops them from adding a handler of their own (which wrote
    every error twice, once unformatted)."""
    lg = logging.getLogger(f"webapp.transport.{name}")
    lg.setLevel(logging.WARNING)
    # A decoding error's message can quote a hostile packet: the rules hold here even where the root
    # logger's handlers are someone else's (an app embedding ours).
    if not any(isinstance(f, _LineRules) for f in lg.filters):
        lg.addFilter(_LineRules())
    return lg


def install(level: int = logging.INFO, stream=None) -> logging.Handler | None:
    """Give the root logger one handler with these rules (unless something configured logging
    already, e.g. pytest), and put the same rules on gunicorn's error log, which has handlers of its
    own. Idempotent; returns the handler installed, or None."""
    gerr = logging.getLogger("gunicorn.error")
    if not any(isinstance(f, _LineRules) for f in gerr.filters):
        gerr.addFilter(_LineRules())
    root = logging.getLogger()
    if root.handlers:
        return None
    h = logging.StreamHandler(stream or sys.stderr)
    h.setFormatter(OneLineFormatter())
    h.addFilter(RepeatLimiter())
    root.addHandler(h)
    root.setLevel(level)
    return h


class _LineRules(logging.Filter):
    """The same rules as a logger filter, for a logger whose handlers are not ours."""

    def __init__(self):
        super().__init__()
        self.limiter = RepeatLimiter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.limiter.filter(record):
            return False
        msg = clean(record.getMessage())
        if record.exc_info and record.exc_info[0] is not None:
            msg += f" ({where(record.exc_info)})"
        record.msg, record.args, record.exc_info, record.exc_text = msg, None, None, None
        return True
