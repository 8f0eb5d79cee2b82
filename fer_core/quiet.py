"""TensorFlow's and LiteRT's start-up lines, hidden unless asked for.

Importing TensorFlow prints, from C++ and whatever ``TF_CPP_MIN_LOG_LEVEL`` says, "WARNING: All log
messages before absl::InitializeLog() ..." and "oneDNN custom operations are on ..." (twice: two
libraries), and LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" when an interpreter
starts. They say nothing to a user. While a noisy step runs, file descriptor 2 is pointed at a
temporary file; afterwards every line that is not one of those goes to the real stderr, so warnings
and errors still show (in order, after the step). ``FER_VERBOSE=1`` (the CLI's ``--verbose``) turns
the filter off.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

NOISE = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|^I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on"
    r"|^I\d{4} [\d:. ]+\d+ cpu_feature_guard\.cc:\d+\]"
    r"|^To enable the following instructions: .* rebuild TensorFlow"
    r"|^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.")
VERBOSE_ENV = "FER_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_noise(line: str) -> bool:
    return bool(NOISE.search(line))


@contextlib.contextmanager
def filtered_stderr():
    """Run the body with fd 2 captured; then pass on every line but the start-up noise."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not is_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def load_backend() -> None:
    """Import Keras (and TensorFlow behind it) with the start-up noise filtered; later imports are free."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with filtered_stderr():
        import keras  # noqa: F401
