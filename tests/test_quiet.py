"""TensorFlow's start-up lines are hidden from CLI users unless asked for; other stderr lines stay."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fer_core import quiet

ROOT = Path(__file__).resolve().parent.parent
NOISE_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796458105.354227    2795 port.cc:153] oneDNN custom operations are on. You may see ...\n",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
]


def test_native_noise_is_dropped_and_other_lines_are_kept(capfd, monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with quiet.filtered_stderr():
        for line in NOISE_LINES[:2]:
            os.write(2, line.encode())
        os.write(2, b"E0000 real error from C++\n")
        os.write(2, NOISE_LINES[2].encode())
    err = capfd.readouterr().err
    assert err == "E0000 real error from C++\n"


def test_an_exception_inside_still_restores_stderr_and_shows_the_lines(capfd, monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with pytest.raises(RuntimeError):
        with quiet.filtered_stderr():
            os.write(2, b"a warning before the failure\n")
            raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "a warning before the failure\nafter\n"


def test_verbose_passes_everything(capfd, monkeypatch):
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    with quiet.filtered_stderr():
        os.write(2, NOISE_LINES[0].encode())
    assert capfd.readouterr().err == NOISE_LINES[0]


@pytest.mark.slow
def test_cli_info_is_quiet_and_verbose_on_request():
    env = {k: v for k, v in os.environ.items() if k not in (quiet.VERBOSE_ENV, "TF_CPP_MIN_LOG_LEVEL")}
    run = lambda *a: subprocess.run([sys.executable, "-m", "fer_core", "info", *a], capture_output=True,  # noqa: E731
                                    text=True, cwd=ROOT, env=env, timeout=300)
    plain = run()
    assert plain.returncode == 0 and '"members"' in plain.stdout
    assert plain.stderr.strip() == "", plain.stderr
    loud = run("--verbose")
    assert loud.returncode == 0 and "oneDNN custom operations are on" in loud.stderr
