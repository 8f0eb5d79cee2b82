"""pyproject.toml: `pip install .` gives working `fer` and `fer-live` commands with the shipped models
and pages inside the package, and its dependencies are requirements.txt's runtime pins."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_dependencies_are_the_pinned_runtime_set():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = (ROOT / "requirements.txt").read_text().split("# Tests and benchmarks.")[0]
    pins = [line.split("#")[0].strip() for line in runtime.splitlines()]
    assert deps == [p for p in pins if p]


@pytest.mark.slow
def test_pip_install_gives_commands_that_find_the_models_and_the_pages(tmp_path, astronaut_jpeg):
    """Installed without its dependencies into a fresh venv that sees this interpreter's packages
    (a .pth file), then run from a folder far from the checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # from a copy: the build writes build/ and *.egg-info beside the sources
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "runs", "build", "*.egg-info", "__pycache__",
                                                            "ckpt", "test-artifacts", "node_modules"))
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-cache-dir", str(src)], check=True, cwd=tmp_path, timeout=600)
    away = tmp_path / "elsewhere"
    away.mkdir()
    (away / "face.jpg").write_bytes(astronaut_jpeg)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FER_MODELS")}
    out = subprocess.run([venv / "bin" / "fer", "predict", "--json", "face.jpg"], cwd=away, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    import json
    (face,) = json.loads(out.stdout)[0]["faces"]
    assert face["label"] == "happy"
    code = ("import fer_core.store as s, webapp.app as a, fer_core.faces as f; "
            "print(s.DEFAULT_MODELS, a.PAGES, f.BLAZEFACE_PATH.is_file(), sep='\\n')")
    models, pages, detector = subprocess.run([venv / "bin" / "python", "-c", code], cwd=away, env=env, check=True,
                                             capture_output=True, text=True).stdout.split()
    assert Path(models) == site / "fer_core" / "shipped" and Path(pages) == site / "webapp" and detector == "True"
    for name in ("ensemble.json", "metrics.json", "vgg_s/weights.npz", "detector/blazeface_short_range.tflite"):
        assert (Path(models) / name).is_file(), name
    assert {p.name for p in (Path(pages) / "templates").iterdir()} >= {"index.html", "admin.html", "base.html"}
    assert (Path(pages) / "static" / "vendor" / "socket.io.min.js").is_file()
    helped = subprocess.run([venv / "bin" / "fer-live", "--help"], cwd=away, env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: fer-live")
