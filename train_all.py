"""Train the members, choose the ensemble on PublicTest, evaluate, write what the app reads.

    python train_all.py [--data PATH] [--out models] [--members GROUP|a,b,c] [--epochs N]
    python train_all.py --quick --data ../shared/datasets/fer2013/fer2013.csv.gz   # minutes on a CPU; a pipeline check (~26%)

With no --members it trains what ships: the members of the shipped models/ensemble.json and those
they continue from (`python -m fer_core info` lists them). Experiments are named groups (--members
small, continued, distilled, long, report, all; fer_core/config.py's GROUPS) or names a,b,c.

What it writes in --out (default models/): a folder per member it trains, a member already trained
there with the same settings being skipped; then, unless --no-ensemble, ensemble.json, metrics.json
and report.md, for the ensemble chosen among every member in the folder. Interrupted runs resume: a
member in progress continues from its last epoch. Each step is a fer_core function
(train.train_member, evaluate.choose_ensemble, evaluate.evaluate, evaluate.write_metrics): this
script runs them in order. See fer_core/config.py for every default and why.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


FERPLUS_TARGETS = ("ferplus-majority", "ferplus-votes")


def parse_args(argv=None):
    from fer_core.config import ENSEMBLE_MAX_GFLOP

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="fer2013.csv(.gz) or image folder (default: $FER2013_PATH or ../shared)")
    p.add_argument("--out", help="models folder (default: models/, or runs/quick with --quick)")
    p.add_argument("--members", default=None, metavar="GROUP|a,b,c",
                   help="default 'shipped': the members of the shipped models/ensemble.json and their parents; "
                        "or a group of experiments (small, continued, distilled, long, report, all), or names a,b,c")
    p.add_argument("--epochs", type=int, help="override every member's epoch count")
    p.add_argument("--classes", type=int, choices=(6, 7), help="label protocol to train (default 7)")
    p.add_argument("--target", choices=("fer2013", *FERPLUS_TARGETS),
                   help="training targets: FER2013's labels (default), or the FER+ annotators' votes "
                        "(majority label, or the vote distribution) from the --ferplus file")
    p.add_argument("--ferplus", metavar="CSV",
                   help="FER+ fer2013new.csv for --target ferplus-* (default: fer2013new.csv beside the FER2013 file)")
    p.add_argument("--limit", type=int, help="keep the first N rows of each split")
    p.add_argument("--min-size", type=int, default=6, help="smallest ensemble subset scored (report: 6)")
    p.add_argument("--max-size", type=int, default=11, help="largest ensemble subset scored (report: 11)")
    p.add_argument("--max-gflop", type=float, default=ENSEMBLE_MAX_GFLOP,
                   help="only ensembles that cost at most this many GFLOP per face, views included "
                        f"(default {ENSEMBLE_MAX_GFLOP}: fer_core/config.py says why; 0: no limit, "
                        "e.g. for the report's big members)")
    p.add_argument("--quick", action="store_true",
                   help="tiny members on a data subset, a few minutes on a CPU; they score about 26%% and "
                        "only check that the pipeline runs (written to runs/quick, not models/)")
    p.add_argument("--no-ensemble", action="store_true", help="train only; skip ensemble choice and evaluation")
    p.add_argument("--no-smoke", action="store_true",
                   help="skip the check that runs one training step of each member in a child process first "
                        "(python -m fer_core.smoke), which names a member that crashes this machine's runtime")
    args = p.parse_args(argv)
    if args.ferplus and args.target not in FERPLUS_TARGETS:  # it would be silently ignored otherwise
        p.error(f"--ferplus {args.ferplus} is read only with --target {' or '.join(FERPLUS_TARGETS)} "
                f"(got --target {args.target or 'fer2013'})")
    from fer_core.store import ModelsError

    try:  # before the data is read: an unknown name or a broken ensemble.json is one line, at once
        args.names = member_names(args.members, args.quick)
    except (ValueError, ModelsError) as e:
        p.error(str(e))
    return args


def shipped_members(models_dir=None) -> list[str]:
    """What ships: the members of ``models_dir``'s ensemble.json (default: the shipped models/), each
    after the member it continues from, which training reads from the same folder."""
    from fer_core import store
    from fer_core.config import with_parents

    path = Path(models_dir or store.DEFAULT_MODELS) / "ensemble.json"
    if not path.is_file():
        raise ValueError(f"no {path} to read the shipped members from: name them with --members")
    return with_parents(store.check_ensemble_spec(store.read_json(path), path)["members"])


def member_names(arg: str | None, quick: bool) -> list[str]:
    from fer_core.config import GROUPS, QUICK_MEMBERS, member_spec

    if quick and not arg:
        return list(QUICK_MEMBERS)
    names: list[str] = []
    for part in (arg or "shipped").split(","):
        part = part.strip()
        group = shipped_members() if part == "shipped" else tuple(QUICK_MEMBERS) if part == "quick" \
            else GROUPS.get(part, (part,))
        for n in group:
            member_spec(n)  # raises ValueError naming the unknown member
            if n not in names:
                names.append(n)
    return names


def main(argv=None) -> int:
    args = parse_args(argv)
    from fer_core import quiet
    quiet.load_backend()  # TensorFlow's start-up lines are noise (FER_VERBOSE=1 shows them)
    from fer_core import store
    from fer_core.config import member_spec
    from fer_core.data import attach_ferplus, load_fer2013, resolve_data_path
    from fer_core.evaluate import choose_ensemble, evaluate, write_metrics
    from fer_core.metrics import markdown_tables
    from fer_core.train import CheckpointMismatch, train_member

    out = Path(args.out or ("runs/quick" if args.quick else store.resolve_models_dir()))
    limit = args.limit or (1500 if args.quick else None)
    data_path = resolve_data_path(args.data)
    t0 = time.time()
    data = load_fer2013(data_path, limit=limit)
    print(f"data: {data_path} " + ", ".join(f"{k} {len(v)}" for k, v in data.splits.items()), flush=True)
    if args.target and args.target.startswith("ferplus"):
        fp = Path(args.ferplus) if args.ferplus else data_path.parent / "fer2013new.csv"
        if limit:
            raise SystemExit("--target ferplus-* needs the full file (no --limit/--quick)")
        data = attach_ferplus(data, fp, mode=args.target.split("-")[1])

    todo = []
    for name in args.names:
        cfg = member_spec(name).train_config(epochs=args.epochs, classes=args.classes, target=args.target,
                                             limit=limit)
        side_path = out / name / "member.json"
        if side_path.is_file() and cfg.same_as(store.read_sidecar(out / name).get("train")):
            print(f"[{name}] done already ({side_path}); skipping", flush=True)
        else:
            todo.append((name, cfg))
    if todo and not args.no_smoke:
        # One step of each member in a child process first: a member whose kernels crash this machine's
        # runtime is named, with the command that reproduces it, before anything is written.
        from fer_core.smoke import check
        failures = check(name for name, _ in todo)
        if failures:
            for f in failures:
                print(f"cannot train on this machine: {f}", file=sys.stderr)
            return 1
    for name, cfg in todo:
        member = member_spec(name)
        print(f"[{name}] training {member.arch} {member.note}".rstrip(), flush=True)
        try:
            side = train_member(name, member, cfg, data, out)
        except CheckpointMismatch as e:
            print(f"[{name}] {e}", file=sys.stderr)
            return 1
        pt = side["metrics"].get("PublicTest", {}).get(str(cfg.classes), {})
        print(f"[{name}] PublicTest accuracy {100 * pt.get('accuracy', 0):.2f}% with views {side['metrics_tta']} "
              f"({side['trained']['epochs']} epochs, {side['trained']['minutes']} min)", flush=True)

    if args.no_ensemble:
        return 0
    # Among every member in the folder (trained now or before) with the protocol's labels; the app
    # serves exactly the members, rule and views chosen here.
    classes = args.classes or 7
    try:
        ensemble = choose_ensemble(out, data, classes, min_size=args.min_size, max_size=args.max_size,
                                   log=lambda line: print(line, flush=True), max_gflop=args.max_gflop or None)
    except (store.ModelsError, ValueError) as e:  # no members, or none within --max-gflop
        print(e, file=sys.stderr)
        return 1
    store.atomic_write_json(out / "ensemble.json", ensemble)
    print(f"ensemble: {ensemble['rule']} over {', '.join(ensemble['members'])} "
          f"(PublicTest {100 * ensemble['val_accuracy']:.2f}%)", flush=True)
    metrics = evaluate(out, data)  # loads the ensemble as the app will: fails loudly now, not in the app
    write_metrics(out, metrics)
    print(markdown_tables(metrics, "PrivateTest", str(classes)))
    print(f"wrote {out}/ensemble.json, metrics.json, report.md in {(time.time() - t0) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    from fer_core.store import ModelsError  # numpy only: --help stays quick

    try:
        sys.exit(main())
    except ModelsError as e:  # a sidecar or ensemble.json in --out that breaks the models folder's rules
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
