"""Every registered member trains one step and predicts on this machine, each in a child process, so
that a member whose kernels crash the runtime fails by name instead of killing pytest."""
import sys

import pytest

import train_all
from fer_core import smoke
from fer_core.config import MEMBERS, QUICK_MEMBERS

# A child that behaves as ``python -m fer_core.smoke --child`` but dies as told for some members.
FAKE_CHILD = r"""
import os, signal, sys
for name in sys.argv[1:]:
    print(f"start {name}", flush=True)
    if name.startswith("segv"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("raise"):
        raise RuntimeError(f"no kernel for {name}")
    print(f"ok {name}", flush=True)
"""


def fake(names):
    return smoke.check(names, command=(sys.executable, "-c", FAKE_CHILD))


def test_a_segfault_names_its_member_and_the_others_still_run():
    failures = fake(["a", "segv_b", "c", "raise_d", "e"])
    assert [(f.member, f.reason.split(":")[0]) for f in failures] == [
        ("segv_b", "killed by SIGSEGV"), ("raise_d", "exit status 1")]
    assert "no kernel for raise_d" in failures[1].reason
    assert "python -m fer_core.smoke segv_b" in str(failures[0])


def test_a_child_that_dies_on_its_way_out_is_still_a_failure():
    child = FAKE_CHILD + "os.kill(os.getpid(), signal.SIGABRT)\n"
    failures = smoke.check(["a", "b"], command=(sys.executable, "-c", child))
    assert [(f.member, f.reason) for f in failures] == [("b", "killed by SIGABRT")]


def test_all_clear_is_no_failure():
    assert fake(["a", "b"]) == []


def test_distinct_keeps_one_member_per_kernel_set():
    kept = smoke.distinct([*MEMBERS, *QUICK_MEMBERS])
    assert "vgg_s" in kept and "vgg_s2" not in kept and "vgg_s_l2" not in kept  # same net, other seed
    assert {"vgg_s_crop", "resnet_s", "inc_s", "resnet_q"} <= set(kept)  # other widths or crops


def test_train_all_names_a_crashing_member_before_writing_anything(tmp_path, monkeypatch, capsys):
    from tests.test_train import synthetic_csv
    data = synthetic_csv(tmp_path / "synth.csv", per_class=(4, 2, 2))
    out = tmp_path / "models"
    monkeypatch.setattr(smoke, "check", lambda names, **kw: [smoke.Failure(list(names)[0], "killed by SIGSEGV")])
    assert train_all.main(["--quick", "--data", str(data), "--out", str(out), "--members", "resnet_q"]) == 1
    err = capsys.readouterr().err
    assert "resnet_q: killed by SIGSEGV" in err and "python -m fer_core.smoke resnet_q" in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_every_registered_architecture_trains_a_step_and_predicts():
    failures = smoke.check(smoke.distinct([*MEMBERS, *QUICK_MEMBERS]))
    assert not failures, "\n".join(map(str, failures))


def test_a_member_that_hangs_is_named_and_the_rest_go_on():
    child = FAKE_CHILD.replace('    print(f"ok {name}", flush=True)',
                               '    if name.startswith("hang"):\n        import time; time.sleep(60)\n'
                               '    print(f"ok {name}", flush=True)')
    failures = smoke.check(["a", "hang_b", "c"], timeout=2, command=(sys.executable, "-c", child))
    assert [(f.member, f.reason) for f in failures] == [("hang_b", "timed out after 2 s")]
