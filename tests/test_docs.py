"""The documents hold: every relative link and #anchor in README.md and docs/ resolves, every command
line of the README's code blocks runs (as written where it needs no dataset, else its --help), and
the README's Python example runs as written."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~)(\w*)[^\n]*\n(.*?)^\1\s*$", re.M | re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<img[^>]*\bsrc=\"([^\"]+)\"")


def prose(text: str) -> str:
    """``text`` without its fenced code blocks and inline code, where brackets are no links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """GitHub's ids for a Markdown file's headings: lower case, punctuation dropped, spaces as
    hyphens, a repeated heading numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", text).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"<[^>]+>", "", m.group(1).replace("`", ""))
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link in a heading: its text
        slug = "".join(c for c in title.lower() if c in " -_" or unicodedata.category(c)[0] in "LN").replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path: Path):
    for m in LINK.finditer(prose(path.read_text())):
        target = m.group(1) or m.group(2)
        if not re.match(r"[a-z]+:", target):  # http:, https:, mailto: are not checked here
            yield target


def test_the_anchor_rule_is_githubs():
    text = "# Why?: what the network saw\n## `predict` on videos\n## Soak\n## Soak\n```\n# not a heading\n```\n"
    assert anchors(text) == {"why-what-the-network-saw", "predict-on-videos", "soak", "soak-1"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc):
    bad = []
    for target in links(doc):
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            bad.append(f"{target}: no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not bad, "\n".join(bad)


def readme_blocks(lang: str) -> list[str]:
    return [m.group(3) for m in FENCE.finditer((ROOT / "README.md").read_text()) if m.group(2) == lang]


def readme_commands() -> list[str]:
    """The command lines of the README's sh and console blocks: comments and prompts dropped."""
    out = []
    for lang in ("sh", "console"):
        for block in readme_blocks(lang):
            for line in block.splitlines():
                if lang == "console":
                    if not line.startswith("$ "):
                        continue  # output
                    line = line[2:]
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line and not line.startswith("#"):
                    out.append(line)
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, astronaut_bgr):
    """A folder with the README's example files: photo.jpg (the astronaut) and clip.mp4 (her, still)."""
    import cv2
    d = tmp_path_factory.mktemp("readme")
    face = cv2.resize(astronaut_bgr, (320, 320), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(d / "photo.jpg"), face)
    out = cv2.VideoWriter(str(d / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 320))
    for _ in range(6):
        out.write(face)
    out.release()
    return d


def _run(argv, cwd, timeout=600):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(map(str, argv))}: exit {done.returncode}\n{done.stderr[-2000:]}"
    return done.stdout


def check_command(line: str, workdir: Path) -> str:
    """Runs one README command line, or its --help where it needs the dataset, a server or an
    install; returns what was done. Every command the README shows must have a rule here."""
    words = shlex.split(line)
    py = [sys.executable]
    if words[:1] == ["make"]:  # make's targets exist and say what they run (no install, no server)
        out = _run(["make", "-n", *words[1:]], ROOT)
        assert ".venv/bin/python -m" in out
        return "make -n"
    if words[:1] == ["source"]:
        assert (ROOT / words[1]).is_file() or words[1].startswith(".venv/"), line
        return "path"
    if words[:2] == ["pip", "install"]:
        assert words[2:] == ["."], line  # tests/test_packaging.py installs it
        return "test_packaging"
    if words[0] in ("fer", "fer-live"):  # installed commands: tests/test_packaging.py; here the module
        words = ["python", "-m", "fer_core" if words[0] == "fer" else "webapp", *words[1:]]
    if words[0] != "python":
        raise AssertionError(f"no rule for the README's command {line!r}: add one to tests/test_docs.py")
    args = words[1:]
    needs_help = ("--data" in args or args[:2] == ["-m", "webapp"] or args[:1] == ["train_all.py"]
                  or args[:2] == ["-m", "fer_core.smoke"])
    if needs_help:  # the dataset, a server, minutes of training: the command's --help
        cmd = args[:3] if args[:2] == ["-m", "fer_core"] else args[:2] if args[0] == "-m" else args[:1]
        out = _run([*py, *cmd, "--help"], ROOT)
        for opt in (a for a in args if a.startswith("--")):
            assert opt in out, f"{line}: {opt} is not in {shlex.join(cmd)} --help"
        return "--help"
    env_args = ["PATH", "dir"]
    assert not set(args) & set(env_args), line
    _run([*py, *args], workdir)
    return "ran"


def test_every_readme_command_runs_or_its_help_does(workdir, monkeypatch):
    commands = readme_commands()
    assert any(c.startswith("make run") for c in commands) and any(c.startswith("make test") for c in commands)
    import os
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the checkout's packages, from the example's folder
    monkeypatch.delenv("FER_MODELS", raising=False)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    done = {c: check_command(c, workdir) for c in commands}
    assert "ran" in done.values(), done


def test_the_readme_python_example_runs_as_written(workdir, monkeypatch, capsys):
    (example,) = [b for b in readme_blocks("python") if "fer_core.api" in b]
    monkeypatch.chdir(workdir)
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "happy" in out, out


# Where the shared server's command is written: the documents (but the dated notes of history.md,
# which quote the command of their day), the sample nginx config, and the docstrings and comments.
COMMAND_FILES = [p for p in DOCS if p.name != "history.md"] + sorted((ROOT / "deploy").iterdir()) + [
    p for d in ("webapp", "fer_core", "harness", "bench", "tests") for p in sorted((ROOT / d).glob("*.py"))]


def gunicorn_spellings(text: str) -> list[list[str]]:
    """Each ``gunicorn`` command in ``text`` as its words after ``gunicorn``, up to where the command
    ends: a quote mark of Markdown or reST, a comma, a parenthesis, a line continuation, ``&``, a
    comment, two spaces or an ellipsis (``gunicorn -k eventlet ...`` stands for the whole command)."""
    out = []
    for m in re.finditer(r"\bgunicorn ((?:--?[a-z]|'webapp)[^\n]*)", text):
        rest = re.split(r"``|`|,| \(|(?<!\()\)| \\| &| #|  |\.\.\.|\"", m.group(1))[0]
        out.append(rest.split())
    return out


def test_every_gunicorn_command_is_the_one_the_tests_start():
    """Every spelling of the shared server's command is harness.server.gunicorn_cmd's (any
    address), whole or cut short, before any option of its own (--certfile ...)."""
    from harness.server import APP, GUNICORN_OPTIONS
    whole = [*GUNICORN_OPTIONS, "--bind", None, f"'{APP}'"]  # None: any address
    bad = []
    for path in COMMAND_FILES:
        if path.name == "test_docs.py":
            continue
        for words in gunicorn_spellings(path.read_text()):
            if len(words) > len(whole) or not all(c is None or w == c for w, c in zip(words, whole)):
                bad.append(f"{path.relative_to(ROOT)}: gunicorn {' '.join(words)}")
    assert not bad, "not the command of harness/server.py:\n" + "\n".join(bad)
