r"""The study runner: a study is a config, a list of parts and its figures; the runner does the rest.

A study module reads as the paper's experiment list::

    @dataclass(frozen=True)
    class Config:
        n_particles: int = 20_000
        steps: tuple[int, ...] = (8, 16, 32)

    class Sweep(eqx.Module):                       # a part's typed result; it serialises itself
        errors: dict[str, float]
        slope: float

    def compute_sweep(config: Config, ctx: PartContext) -> Sweep:
        steps = ctx.progress(config.steps, "steps")
        errors = {n: ctx.cache(f"em-{n}", lambda n=n: float(...)) for n in steps}
        return Sweep(errors, slope=fit(errors))

    def checks_sweep(config: Config, r: Sweep) -> list[Check]:
        return [check("EM weak order", predicted=1.0, measured=r.slope, tolerance=0.3)]

    STUDY = register_study(Study(
        "samplers", Config, parts=[Part("sweep", compute_sweep, checks_sweep, figures.sweep)],
        quick=dict(n_particles=2_000), question="Does ...?", answer=lambda config, results: "...",
        headline="convergence"))

:func:`run_study` resolves the config (defaults, then the ``quick`` preset, then ``--set`` overrides), takes
a lock on the output directory (two runs into one directory never interleave), removes temporary files an
interrupted run left, runs the parts in order (compute, then checks, then figures; each part timed and its
sweep items cached so an interrupted run resumes), and writes ``config.json``, ``results.json``,
``report.md`` and ``report.html``, every file atomically and only once the run has finished, so a failed run
never leaves a new config beside old results.

The imperative form (``@register(name, Config)`` on ``run(config, out_dir, *, progress) -> Results``) is
kept for studies written outside diffsim.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, no_type_check

from .._io import read_json, write_json
from ._cache import ResultCache as ResultCache, config_hash as config_hash
from ._config import build_config as build_config, parse_overrides as parse_overrides
from ._report import (
    report_html as report_html,
    report_markdown as report_markdown,
    write_index as write_index,
    write_reports as write_reports,
)
from ._results import (
    Check as Check,
    Figure as Figure,
    Results as Results,
    check as check,
    serialise_result as serialise_result,
)


__all__ = [
    "STUDIES",
    "Check",
    "Figure",
    "Part",
    "PartContext",
    "ResultCache",
    "Results",
    "Study",
    "StudySpec",
    "build_config",
    "check",
    "get_study",
    "parse_overrides",
    "progress_bar",
    "register",
    "register_study",
    "run_all",
    "run_experiment",
    "run_study",
    "write_index",
    "write_reports",
]

log = logging.getLogger("diffsim.studies")


def progress_bar(iterable: Iterable, desc: str, enabled: bool = True, total: int | None = None) -> Iterable:
    """A tqdm progress bar when ``enabled``, the plain iterable otherwise."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


# -----------------------------------------------------------------------------------------------------
# declarative studies
# -----------------------------------------------------------------------------------------------------
class PartContext:
    """What the runner hands a part's ``compute``: caching, progress bars, earlier results, notes.

    - ``ctx.cache(key, fn)``: the value of ``fn()``, cached per configuration as a JSON file so that an
      interrupted run resumes (returns what JSON gives back: lists, dicts, numbers).
    - ``ctx.progress(iterable, desc)``: a progress bar when the run shows progress.
    - ``ctx.results[name]``: the result of an earlier part of this run.
    - ``ctx.note(text)``: a paragraph for the report.
    - ``ctx.out_dir``: the run directory (for files a part keeps, such as trained checkpoints).
    """

    def __init__(
        self,
        part: str,
        cache: ResultCache,
        results: Mapping[str, Any],
        out_dir: Path,
        notes: list[str],
        show_progress: bool,
    ):
        self.part = part
        self._cache = cache
        self.results = results
        self.out_dir = out_dir
        self._notes = notes
        self.show_progress = show_progress

    def cache(self, key: str, compute: Callable[[], Any]) -> Any:
        return self._cache.get_or_compute(key, compute)

    def progress(self, iterable: Iterable, desc: str, total: int | None = None) -> Iterable:
        return progress_bar(iterable, desc, self.show_progress, total)

    def note(self, text: str) -> None:
        self._notes.append(text)


@dataclass(frozen=True)
class Part:
    """One experiment of a study: ``compute(config, ctx) -> result``, then ``checks(config, result)`` (the
    theory predictions it states, a list of :class:`Check`) and ``figures(config, result)`` (a list of
    :class:`Figure`)."""

    name: str
    compute: Callable[[Any, PartContext], Any]
    checks: Callable[[Any, Any], Sequence[Check]] | None = None
    figures: Callable[[Any, Any], Sequence[Figure]] | None = None


@dataclass(frozen=True)
class Study:
    """A paper's experiment list: its config class, its parts (or a function of the config giving them),
    the quick preset, the question it answers, the answer (text or a function of the config and the part
    results) and the name of its headline figure."""

    name: str
    config: type
    parts: Sequence[Part] | Callable[[Any], Sequence[Part]]
    quick: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    question: str = ""
    answer: str | Callable[[Any, Mapping[str, Any]], str] = ""
    headline: str = ""

    def parts_for(self, config: Any) -> list[Part]:
        parts = list(self.parts(config) if callable(self.parts) else self.parts)
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise ValueError(f"Study {self.name!r}: part names must be unique, got {names}.")
        return parts

    def run(self, config: Any, out_dir: Path, *, progress: bool = True) -> Results:
        """Run every part in order into a :class:`Results`."""
        res = Results(self.name, config, out_dir)
        res.question, res.headline = self.question, self.headline
        done: dict[str, Any] = {}
        for part in self.parts_for(config):
            start = time.perf_counter()
            cache = ResultCache(out_dir, config, prefix=f"{part.name}-")
            ctx = PartContext(part.name, cache, done, Path(out_dir), res.notes, progress)
            result = part.compute(config, ctx)
            compute_s = time.perf_counter() - start
            done[part.name] = result
            for c in part.checks(config, result) if part.checks else ():
                res.add_check(c, part=part.name)
            for f in part.figures(config, result) if part.figures else ():
                res.figure(f.fig, f.name, f.caption, part=part.name)
            res.parts[part.name] = {
                "compute_s": round(compute_s, 2),
                "elapsed_s": round(time.perf_counter() - start, 2),
                "cache": cache.summary(),
                "result": serialise_result(result),
            }
            log.info("%s/%s: %s", self.name, part.name, cache.summary())
        res.answer = self.answer(config, done) if callable(self.answer) else self.answer
        return res


# -----------------------------------------------------------------------------------------------------
# registry
# -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudySpec:
    name: str
    config_cls: type
    run: Callable[..., Results]
    description: str = ""
    quick: dict[str, Any] = field(default_factory=dict)
    study: Study | None = None


STUDIES: dict[str, StudySpec] = {}


def _check_config_cls(name: str, config_cls: type, quick: Mapping[str, Any] | None) -> None:
    if not (dataclasses.is_dataclass(config_cls) and config_cls.__dataclass_params__.frozen):
        raise TypeError(f"Study {name!r}: the config must be a frozen dataclass.")
    field_names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(quick or {}) - field_names
    if unknown:
        raise ValueError(f"Study {name!r}: quick preset names unknown config fields {sorted(unknown)}.")


def register_study(study: Study) -> Study:
    """Register a declarative :class:`Study` under its name; returns it."""
    _check_config_cls(study.name, study.config, study.quick)
    description = study.description or study.question
    STUDIES[study.name] = StudySpec(
        study.name, study.config, study.run, description, dict(study.quick), study
    )
    return study


def register(
    name: str, config_cls: type, *, quick: dict[str, Any] | None = None, description: str = ""
) -> Callable:
    """Decorator registering an imperative ``run(config, out_dir, *, progress=True) -> Results``."""
    _check_config_cls(name, config_cls, quick)

    def deco(fn):
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        STUDIES[name] = StudySpec(name, config_cls, fn, doc, dict(quick or {}))
        return fn

    return deco


def get_study(name: str) -> StudySpec:
    from . import discover

    discover()
    if name not in STUDIES:
        raise ValueError(
            f"Unknown study {name!r}; registered studies: {', '.join(sorted(STUDIES)) or '(none)'}."
        )
    return STUDIES[name]


# -----------------------------------------------------------------------------------------------------
# running
# -----------------------------------------------------------------------------------------------------
class RunLockedError(RuntimeError):
    """Another diffsim process is writing into the same output directory."""


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock on ``out/.lock`` for the duration of a run (POSIX ``flock``)."""
    import fcntl

    fh = open(out / ".lock", "w")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"--out {out}: another diffsim run is writing into this directory; wait for it or choose "
                "another --out."
            ) from None
        yield
    finally:
        fh.close()


def _remove_stale_temporaries(out: Path) -> int:
    """Remove ``.NAME.*.tmp`` files an interrupted (killed) writer left under ``out``; only called while the
    run holds the directory's lock, so no live writer owns them."""
    n = 0
    for tmp in out.rglob(".*.tmp"):
        try:
            tmp.unlink()
            n += 1
        except OSError:
            pass
    return n


def _prepare_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write there ({err.strerror or err}).") from None


def run_study(
    name: str,
    *,
    out_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    quick: bool = False,
    progress: bool = True,
) -> Results:
    """Run a registered study and write ``config.json``, ``results.json``, ``report.md``/``report.html``."""
    spec = get_study(name)
    config = build_config(spec, overrides, quick=quick)
    out = Path("runs") / name if out_dir is None else Path(out_dir)
    return _run_into(name, spec.run, config, out, quick=quick, progress=progress)


@no_type_check  # checks `study` and `config` itself, with clearer messages than a runtime type checker
def run_experiment(
    study: Study,
    config: Any,
    out_dir: str | Path,
    *,
    progress: bool = True,
) -> Results:
    """Run a :class:`Study` that is not registered (an experiment on a user's model, e.g. a diffusers
    pipeline loaded from a directory) into ``out_dir`` with exactly the layout, locking, atomic writes and
    resumable per-part caches of :func:`run_study`.

    ``config`` must be an instance of ``study.config`` (a frozen dataclass whose ``__post_init__`` validates
    it).
    """
    if not isinstance(study, Study):
        raise TypeError(f"study must be a diffsim.studies.Study, got {type(study).__name__}.")
    _check_config_cls(study.name, study.config, study.quick)
    if not isinstance(config, study.config):
        raise TypeError(
            f"config must be an instance of {study.config.__name__} for study {study.name!r}, "
            f"got {type(config).__name__}."
        )
    return _run_into(study.name, study.run, config, Path(out_dir), quick=False, progress=progress)


def _run_into(name: str, run: Callable[..., Results], config: Any, out: Path, *, quick: bool, progress: bool):
    _prepare_out_dir(out)
    with _locked(out):
        if n := _remove_stale_temporaries(out):
            log.warning("removed %d temporary files an interrupted run left under %s", n, out)
        start = time.perf_counter()
        results = run(config, out, progress=progress)
        if not isinstance(results, Results):
            raise TypeError(f"Study {name!r} returned {type(results).__name__}, expected Results.")
        results.out_dir = out
        results.elapsed_s = round(time.perf_counter() - start, 2)
        write_json(out / "config.json", {"study": name, "quick": quick, "config": config})
        write_json(out / "results.json", results.to_dict())
        write_reports(out)
    return results


#: JAX settings a worker process of :func:`run_all` takes from its parent (a fresh process starts from
#: JAX's defaults; a study run under ``jax_enable_x64`` must not silently run in float32 in a worker)
_INHERITED_JAX_CONFIG = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_numpy_rank_promotion",
    "jax_numpy_dtype_promotion",
)


def _jax_settings() -> dict[str, Any]:
    import jax

    return {name: getattr(jax.config, name) for name in _INHERITED_JAX_CONFIG}


def _error_text(err: Exception) -> str:
    """A crashed study's record: ``"Type: message"``, then the traceback on the following lines."""
    return f"{type(err).__name__}: {err}\n{traceback.format_exc()}"


def _run_in_worker(
    name: str, module: str, out_dir: str, quick: bool, settings: dict[str, Any]
) -> tuple[str, str | None]:
    """One study of :func:`run_all` in a worker process: ``(name, None)`` when it finished (its results are
    read back from ``results.json``), ``(name, error text with traceback)`` when it crashed. ``module`` is
    where the study's config is defined: importing it registers a study defined outside diffsim;
    ``settings`` are the parent's JAX settings (:data:`_INHERITED_JAX_CONFIG`)."""
    try:
        import jax

        for key, value in settings.items():
            jax.config.update(key, value)
        from . import discover

        if name not in discover():
            importlib.import_module(module)
        run_study(name, out_dir=out_dir, quick=quick, progress=False)
        return name, None
    except Exception as err:  # noqa: BLE001 - a crashing study must not stop the others
        return name, _error_text(err)


def run_all(
    out_root: str | Path = "runs",
    *,
    quick: bool = False,
    progress: bool = True,
    names: Iterable[str] | None = None,
    echo: Callable[[str], None] = print,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run every registered study (or ``names``) into ``out_root/<study>`` and write the index.

    A study that crashes is recorded and the others still run. Returns ``{name: Results or error text}``.

    ``jobs > 1`` runs that many studies at once, each in its own process (started with ``spawn``: JAX is
    not fork-safe), longest-known first; their progress bars are off and each study's line is printed when it
    finishes. A worker takes the parent's JAX precision and promotion settings (``jax_enable_x64`` and
    others) and every study is deterministic given its config, so the results are those of ``jobs=1``
    (``tests/test_runner.py``); the gain comes from compiling two studies' programs at once, which is what a
    quick run spends most of its time on. The :class:`Results` returned for a study run in a worker are read
    back from its ``results.json`` (:meth:`Results.load`; ``config`` is then a dict).
    """
    from . import discover

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}.")
    discover()
    out_root = Path(out_root)
    # private studies (a leading underscore: tests, examples) run only when named
    todo = sorted(names) if names is not None else [n for n in sorted(STUDIES) if not n.startswith("_")]
    unknown = [n for n in todo if n not in STUDIES]
    if unknown:
        raise ValueError(f"names: unknown studies {unknown}; registered: {', '.join(sorted(STUDIES))}.")
    outcomes: dict[str, Any] = {}
    failures: dict[str, str] = {}

    def finished(name: str, res: Results, seconds: float) -> None:
        outcomes[name] = res
        counted = res.counted
        echo(
            f"   {sum(c.passed for c in counted)}/{len(counted)} checks passed "
            f"in {seconds:.1f} s -> {out_root / name / 'report.html'}"
        )

    def crashed(name: str, text: str) -> None:
        failures[name] = text.split("\n", 1)[0]
        outcomes[name] = failures[name]
        echo(f"   CRASHED: {failures[name]}")
        echo(text.split("\n", 1)[1] if "\n" in text else "")

    if jobs == 1 or len(todo) <= 1:
        for name in todo:
            start = time.perf_counter()
            echo(f"== {name}{' (quick)' if quick else ''}")
            try:
                res = run_study(name, out_dir=out_root / name, quick=quick, progress=progress)
            except Exception as err:  # noqa: BLE001 - a crashing study must not stop the others
                crashed(name, _error_text(err))
                continue
            finished(name, res, time.perf_counter() - start)
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        order = sorted(todo, key=lambda n: -_last_elapsed(out_root / n))
        settings = _jax_settings()
        start = time.perf_counter()
        echo(f"== {len(order)} studies{' (quick)' if quick else ''}, {min(jobs, len(order))} at a time")
        with cf.ProcessPoolExecutor(min(jobs, len(order)), mp_context=mp.get_context("spawn")) as pool:
            pending = {
                pool.submit(
                    _run_in_worker, n, STUDIES[n].config_cls.__module__, str(out_root / n), quick, settings
                ): n
                for n in order
            }
            for fut in cf.as_completed(pending):
                name = pending[fut]
                echo(f"== {name}{' (quick)' if quick else ''}")
                try:
                    error = fut.result()[1]
                except Exception as err:  # noqa: BLE001 - e.g. a worker killed by the OS
                    error = f"{type(err).__name__}: {err}\n"
                if error is not None:
                    crashed(name, error)
                else:
                    res = Results.load(out_root / name)
                    finished(name, res, res.elapsed_s or time.perf_counter() - start)
        outcomes = {n: outcomes[n] for n in todo}
    write_index(out_root, failures)
    echo(f"index: {out_root / 'index.html'}")
    return outcomes


def _last_elapsed(out: Path) -> float:
    """Seconds the last run into ``out`` took (0 when unknown): :func:`run_all` starts the longest first."""
    try:
        return float(read_json(out / "results.json").get("elapsed_s") or 0.0)
    except (OSError, ValueError, AttributeError, TypeError):
        return 0.0
