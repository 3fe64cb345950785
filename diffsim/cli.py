"""The ``diffsim`` command: ``list``, ``run STUDY|all [--set key=value ...] [--out DIR] [--quick]
[--strict]``, ``report``.

Exit status: 0 when the run finished (failed checks are results, not errors), 3 with ``--strict`` when any
check failed, 2 for bad input (unknown study or field, bad value, unwritable or locked ``--out``), 1 when a
study crashed under ``run all``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from pathlib import Path

from .studies import (
    STUDIES,
    RunLockedError,
    compilation_cache,
    discover,
    get_study,
    parse_overrides,
    run_all,
    run_study,
    write_index,
    write_reports,
)


def _cmd_list(args: argparse.Namespace) -> int:
    discover()
    width = max((len(n) for n in STUDIES), default=0)
    for name in sorted(STUDIES):
        spec = STUDIES[name]
        print(f"{name:<{width}}  {spec.description}")
        if args.verbose:
            for f in dataclasses.fields(spec.config_cls):
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
                quick = spec.quick.get(f.name, "")
                print(f"    {f.name} = {default!r}" + (f"   (quick: {quick!r})" if quick != "" else ""))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _default_jobs() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 4))


def _cmd_run(args: argparse.Namespace) -> int:
    progress = not args.no_progress
    if args.jobs is not None and args.study != "all":
        raise SystemExit("error: --jobs applies to 'run all' (one study runs in one process).")
    if args.jobs is None:
        args.jobs = _default_jobs()
    with contextlib.nullcontext() if args.no_compile_cache else compilation_cache():
        return _run(args, progress)


def _run(args: argparse.Namespace, progress: bool) -> int:
    if args.study == "all":
        if args.set:
            raise SystemExit(
                "error: --set applies to one study; run studies one at a time to override configs."
            )
        out_root = Path(args.out or "runs")
        outcomes = run_all(out_root, quick=args.quick, progress=progress, jobs=args.jobs)
        if any(isinstance(r, str) for r in outcomes.values()):
            return 1
        failed = [n for n, r in outcomes.items() if not r.passed]
        if args.strict and failed:
            print(f"--strict: checks failed in {', '.join(failed)}", file=sys.stderr)
            return 3
        return 0
    spec = get_study(args.study)
    overrides = parse_overrides(spec.config_cls, args.set or [])
    out = Path(args.out) if args.out else Path("runs") / args.study
    res = run_study(args.study, out_dir=out, overrides=overrides, quick=args.quick, progress=progress)
    counted = res.counted
    print(f"{sum(c.passed for c in counted)}/{len(counted)} checks passed -> {out / 'report.html'}")
    if not args.out:  # the default layout runs/STUDY: refresh runs/index.html (never outside --out)
        write_index(out.parent)
    if args.strict and not res.passed:
        print("--strict: some checks failed", file=sys.stderr)
        return 3
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    root = Path(args.out or "runs")
    found = sorted(root.glob("*/results.json"))
    if not found:
        raise SystemExit(f"error: no results.json under {root}/; run `diffsim run all` first.")
    for f in found:
        write_reports(f.parent)
    print(f"index: {write_index(root)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diffsim", description="Simulate diffusion-model samplers and check theory."
    )
    sub = p.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list registered studies")
    p_list.add_argument("-v", "--verbose", action="store_true", help="show each config field and its default")
    p_list.set_defaults(func=_cmd_list)
    p_run = sub.add_parser("run", help="run a study (or 'all')")
    p_run.add_argument("study", help="study name, or 'all'")
    p_run.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)"
    )
    p_run.add_argument(
        "--out", help="output directory (default runs/STUDY; for 'all', the root, default runs)"
    )
    p_run.add_argument("--quick", action="store_true", help="use the study's quick preset (smoke test)")
    p_run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p_run.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (default: on, in $JAX_COMPILATION_CACHE_DIR or "
        "~/.cache/diffsim/jax; a second run reuses the programs the first compiled)",
    )
    p_run.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        help="for 'all': studies run at once, each in its own process (default: the number of CPU cores, "
        "at most 4; 1 runs them one after another in this process with progress bars)",
    )
    p_run.add_argument(
        "--strict", action="store_true", help="exit with status 3 when any check fails (default: 0)"
    )
    p_run.set_defaults(func=_cmd_run)
    p_rep = sub.add_parser("report", help="rewrite reports and runs/index.html from results.json files")
    p_rep.add_argument("--out", help="runs root (default runs)")
    p_rep.set_defaults(func=_cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, RunLockedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
