r"""The study runner: registry, configs with ``--set`` overrides, results with checks, resumable sweeps.

A study is a frozen ``Config`` dataclass plus ``run(config, out_dir, *, progress=True) -> Results``,
registered with :func:`register`::

    @dataclass(frozen=True)
    class Config:
        n_particles: int = 20_000
        steps: tuple[int, ...] = (8, 16, 32)

    @register("samplers", Config, quick=dict(n_particles=2_000), description="...")
    def run(config: Config, out_dir: Path, *, progress: bool = True) -> Results:
        res = Results("samplers", config, out_dir)
        cache = ResultCache(out_dir, config)
        for n in progress_bar(config.steps, "steps", progress):
            err = cache.get_or_compute(f"em/{n}", lambda: float(...))
            res.metric(f"err_em_{n}", err)
        res.check("EM weak order", predicted=1.0, measured=slope, tolerance=0.3)
        res.figure(fig, "convergence", "Error vs steps")
        return res

:func:`run_study` resolves the config (defaults, then the ``quick`` preset, then ``--set`` overrides),
writes ``config.json``, calls ``run`` and writes ``results.json``, ``report.md`` and ``report.html`` into the
output directory, every file atomically. :class:`ResultCache` stores each finished sweep item in its own
small JSON file (keyed by the config's hash), so re-running an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import time
import traceback
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import from_jsonable, read_json, to_jsonable, write_atomic, write_json


__all__ = [
    "Check",
    "ResultCache",
    "Results",
    "STUDIES",
    "StudySpec",
    "build_config",
    "parse_overrides",
    "progress_bar",
    "register",
    "run_study",
    "write_index",
]


# =====================================================================================================
# results
# =====================================================================================================
@dataclass
class Check:
    """One theory prediction beside its measurement."""

    name: str
    predicted: Any
    measured: Any
    tolerance: Any
    passed: bool
    note: str = ""


_RELATIONS = ("abs", "rel", "le", "ge", "true")


def _evaluate(predicted, measured, tolerance, relation) -> bool:
    if relation == "true":
        return bool(measured)
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    tol = 0.0 if tolerance is None else np.asarray(tolerance, float)
    if not np.all(np.isfinite(m)):
        return False
    if relation == "abs":
        return bool(np.all(np.abs(m - p) <= tol))
    if relation == "rel":
        return bool(np.all(np.abs(m - p) <= tol * np.abs(p)))
    if relation == "le":
        return bool(np.all(m <= p + tol))
    if relation == "ge":
        return bool(np.all(m >= p - tol))
    raise ValueError(f"Unknown relation {relation!r}; use one of {_RELATIONS}.")


class Results:
    """Numbers, checks and figures produced by one study run.

    - :meth:`check` records a prediction beside a measurement and whether it held. A failed check stays
      failed in ``results.json``; explain it with ``note`` rather than loosening the tolerance.
    - :meth:`metric` records any other number (or small nested structure).
    - :meth:`figure` saves a matplotlib figure to ``figures/<name>.png`` (atomically) with a caption.
    - :meth:`note` adds a paragraph to the report.
    """

    def __init__(self, study: str, config: Any, out_dir: str | Path | None = None):
        self.study = study
        self.config = config
        self.checks: list[Check] = []
        self.metrics: dict[str, Any] = {}
        self.figures: list[dict[str, str]] = []
        self.notes: list[str] = []
        self.out_dir: Path | None = None if out_dir is None else Path(out_dir)
        self.elapsed_s: float | None = None

    def check(
        self,
        name: str,
        predicted: Any,
        measured: Any,
        tolerance: Any = None,
        *,
        relation: str = "abs",
        passed: bool | None = None,
        note: str = "",
    ) -> Check:
        """Record a check. ``relation``: ``"abs"`` (|m - p| <= tol), ``"rel"`` (|m - p| <= tol |p|),
        ``"le"`` (m <= p + tol), ``"ge"`` (m >= p - tol), ``"true"`` (bool(m)). ``passed`` overrides."""
        if relation not in _RELATIONS:
            raise ValueError(f"Unknown relation {relation!r}; use one of {_RELATIONS}.")
        ok = _evaluate(predicted, measured, tolerance, relation) if passed is None else bool(passed)
        c = Check(name, to_jsonable(predicted), to_jsonable(measured), to_jsonable(tolerance), ok, note)
        self.checks.append(c)
        return c

    def metric(self, name: str, value: Any) -> None:
        self.metrics[name] = to_jsonable(value)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def figure(self, fig: Any, name: str, caption: str = "") -> Path:
        """Save ``fig`` (matplotlib) as ``figures/<name>.png`` in the run directory and close it."""
        if self.out_dir is None:
            raise RuntimeError(
                "Results.figure needs the run directory: create it as Results(name, config, out_dir)."
            )
        import io

        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        path = write_atomic(self.out_dir / "figures" / f"{name}.png", buf.getvalue())
        self.figures = [f for f in self.figures if f["name"] != name]
        self.figures.append({"name": name, "path": f"figures/{name}.png", "caption": caption})
        return path

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "config": to_jsonable(self.config),
            "passed": self.passed,
            "n_checks": len(self.checks),
            "n_passed": sum(c.passed for c in self.checks),
            "checks": [to_jsonable(c) for c in self.checks],
            "metrics": self.metrics,
            "figures": self.figures,
            "notes": self.notes,
            "elapsed_s": self.elapsed_s,
        }


# =====================================================================================================
# resumable sweeps and progress
# =====================================================================================================
def config_hash(config: Any) -> str:
    return hashlib.sha256(json.dumps(to_jsonable(config), sort_keys=True).encode()).hexdigest()[:12]


class ResultCache:
    """Per-item cache of a sweep's results so an interrupted study resumes where it stopped.

    Each item is a JSON file ``<out_dir>/cache/<config-hash>/<key>.json`` written atomically when the item
    finishes. A changed config gets a different hash, so stale items are never reused.
    """

    def __init__(self, out_dir: str | Path, config: Any):
        self.root = Path(out_dir) / "cache" / config_hash(config)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in key)
        return self.root / f"{safe}.json"

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        """Return the cached value of ``key`` or compute it, store it (atomically) and return it.

        The value is returned as JSON would give it back (lists, dicts, plain numbers), with non-finite
        floats restored, so a cache hit and a miss return the same thing."""
        path = self._path(key)
        if path.exists():
            try:
                value = read_json(path)["value"]
                self.hits += 1
                return from_jsonable(value)
            except (json.JSONDecodeError, KeyError):
                pass  # unreadable leftovers are recomputed
        value = to_jsonable(compute())
        write_json(path, {"key": key, "value": value})
        self.misses += 1
        return from_jsonable(value)


def progress_bar(iterable: Iterable, desc: str, enabled: bool = True, total: int | None = None) -> Iterable:
    """A tqdm progress bar when ``enabled``, the plain iterable otherwise."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


# =====================================================================================================
# registry and configs
# =====================================================================================================
@dataclass(frozen=True)
class StudySpec:
    name: str
    config_cls: type
    run: Callable[..., Results]
    description: str = ""
    quick: dict[str, Any] = field(default_factory=dict)


STUDIES: dict[str, StudySpec] = {}


def register(
    name: str, config_cls: type, *, quick: dict[str, Any] | None = None, description: str = ""
) -> Callable:
    """Decorator registering ``run(config, out_dir, *, progress=True) -> Results`` under ``name``."""
    if not (dataclasses.is_dataclass(config_cls) and config_cls.__dataclass_params__.frozen):
        raise TypeError(f"Study {name!r}: the config must be a frozen dataclass.")
    field_names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(quick or {}) - field_names
    if unknown:
        raise ValueError(f"Study {name!r}: quick preset names unknown config fields {sorted(unknown)}.")

    def deco(fn):
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        STUDIES[name] = StudySpec(name, config_cls, fn, doc, dict(quick or {}))
        return fn

    return deco


def _parse_value(text: str, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse_value(text, a, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"--set {key}: cannot parse {text!r} as {annotation}.")
    if origin in (tuple, list):
        parts = [p.strip() for p in text.strip("()[] ").split(",") if p.strip()]
        if args and args[-1] is Ellipsis:
            vals = [_parse_value(p, args[0], key) for p in parts]
        elif args:
            if len(parts) != len(args):
                raise ValueError(f"--set {key}: expected {len(args)} comma-separated values, got {text!r}.")
            vals = [_parse_value(p, a, key) for p, a in zip(parts, args, strict=False)]
        else:
            vals = parts
        return tuple(vals) if origin is tuple else vals
    if annotation is bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"--set {key}: expected a boolean (true/false), got {text!r}.")
    if annotation is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"--set {key}: expected an integer, got {text!r}.") from None
    if annotation is float:
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"--set {key}: expected a number, got {text!r}.") from None
        return v
    if annotation is str:
        return text
    if annotation is Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    raise ValueError(f"--set {key}: fields of type {annotation} cannot be set from the command line.")


def parse_overrides(config_cls: type, items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings against the fields (and type hints) of ``config_cls``."""
    hints = typing.get_type_hints(config_cls)
    names = {f.name for f in dataclasses.fields(config_cls)}
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"Malformed override {item!r}: expected key=value.")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"Malformed override {item!r}: empty key.")
        if key not in names:
            raise ValueError(
                f"Unknown config field {key!r} for {config_cls.__qualname__}; "
                f"fields are: {', '.join(sorted(names))}."
            )
        out[key] = _parse_value(value.strip(), hints[key], key)
    return out


def build_config(spec: StudySpec, overrides: dict[str, Any] | None = None, *, quick: bool = False) -> Any:
    """Defaults, then the quick preset (if asked), then overrides; validated by the config's own checks."""
    values = dict(spec.quick) if quick else {}
    values.update(overrides or {})
    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"Unknown config fields for study {spec.name!r}: {sorted(unknown)}.")
    return spec.config_cls(**values)


def get_study(name: str) -> StudySpec:
    from . import discover

    discover()
    if name not in STUDIES:
        raise ValueError(
            f"Unknown study {name!r}; registered studies: {', '.join(sorted(STUDIES)) or '(none)'}."
        )
    return STUDIES[name]


# =====================================================================================================
# running and reporting
# =====================================================================================================
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
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"study": name, "quick": quick, "config": config})
    start = time.perf_counter()
    results = _call_run(spec, config, out, progress)
    results.elapsed_s = round(time.perf_counter() - start, 2)
    write_json(out / "results.json", results.to_dict())
    write_reports(out)
    return results


def _call_run(spec: StudySpec, config: Any, out: Path, progress: bool) -> Results:
    results = spec.run(config, out, progress=progress)
    if not isinstance(results, Results):
        raise TypeError(f"Study {spec.name!r} returned {type(results).__name__}, expected Results.")
    results.out_dir = out
    return results


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        if len(v) > 6:
            return "[" + ", ".join(_fmt(x) for x in v[:6]) + ", ...]"
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in list(v.items())[:6]) + "}"
    return str(v)


def report_markdown(data: dict[str, Any]) -> str:
    lines = [f"# Study `{data['study']}`", ""]
    lines.append(
        f"Checks passed: **{data['n_passed']} / {data['n_checks']}**"
        + (f" in {data['elapsed_s']} s" if data.get("elapsed_s") is not None else "")
    )
    lines += [
        "",
        "## Checks (theory prediction beside measurement)",
        "",
        "| check | predicted | measured | tolerance | passed | note |",
        "|---|---|---|---|---|---|",
    ]
    for c in data["checks"]:
        lines.append(
            f"| {c['name']} | {_fmt(c['predicted'])} | {_fmt(c['measured'])} | {_fmt(c['tolerance'])} | "
            f"{'yes' if c['passed'] else '**NO**'} | {c.get('note', '')} |"
        )
    if data.get("notes"):
        lines += ["", "## Notes", ""] + [n + "\n" for n in data["notes"]]
    if data.get("figures"):
        lines += ["", "## Figures", ""]
        for f in data["figures"]:
            lines += [f"![{f['name']}]({f['path']})", "", f"*{f['caption']}*", ""]
    lines += ["", "## Configuration", "", "```json", json.dumps(data["config"], indent=2), "```", ""]
    return "\n".join(lines)


def report_html(data: dict[str, Any]) -> str:
    esc = html.escape
    rows = "\n".join(
        f"<tr class='{'ok' if c['passed'] else 'fail'}'><td>{esc(c['name'])}</td><td>{esc(_fmt(c['predicted']))}</td>"
        f"<td>{esc(_fmt(c['measured']))}</td><td>{esc(_fmt(c['tolerance']))}</td>"
        f"<td>{'yes' if c['passed'] else 'NO'}</td><td>{esc(c.get('note', ''))}</td></tr>"
        for c in data["checks"]
    )
    figs = "\n".join(
        f"<figure><img src='{esc(f['path'])}' alt='{esc(f['name'])}'><figcaption>{esc(f['caption'])}"
        f"</figcaption></figure>"
        for f in data.get("figures", [])
    )
    notes = "\n".join(f"<p>{esc(n)}</p>" for n in data.get("notes", []))
    return f"""<!doctype html><html><head><meta charset='utf-8'><title>diffsim: {esc(data["study"])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:90%}}tr.fail{{background:#fdd}}img{{max-width:100%}}
figure{{margin:1.5em 0}}</style></head><body>
<p><a href='../index.html'>&larr; all studies</a></p><h1>Study <code>{esc(data["study"])}</code></h1>
<p>Checks passed: <b>{data["n_passed"]} / {data["n_checks"]}</b> ({data.get("elapsed_s")} s)</p>
<table><tr><th>check</th><th>predicted</th><th>measured</th><th>tolerance</th><th>passed</th><th>note</th></tr>
{rows}</table>{notes}{figs}
<h2>Configuration</h2><pre>{esc(json.dumps(data["config"], indent=2))}</pre></body></html>
"""


def write_reports(out_dir: str | Path) -> None:
    """(Re)write ``report.md`` and ``report.html`` of a run directory from its ``results.json``."""
    out = Path(out_dir)
    data = read_json(out / "results.json")
    write_atomic(out / "report.md", report_markdown(data))
    write_atomic(out / "report.html", report_html(data))


def write_index(runs_dir: str | Path, failures: dict[str, str] | None = None) -> Path:
    """Write ``<runs_dir>/index.html`` linking the report of every run found under ``runs_dir``."""
    runs = Path(runs_dir)
    rows = []
    for res_file in sorted(runs.glob("*/results.json")):
        data = read_json(res_file)
        name = res_file.parent.name
        status = "ok" if data["passed"] else "fail"
        rows.append(
            f"<tr class='{status}'><td><a href='{html.escape(name)}/report.html'>{html.escape(name)}</a></td>"
            f"<td>{data['n_passed']} / {data['n_checks']}</td><td>{data.get('elapsed_s')}</td></tr>"
        )
    for name, err in (failures or {}).items():
        rows.append(
            f"<tr class='fail'><td>{html.escape(name)}</td><td colspan=2>crashed: {html.escape(err)}</td></tr>"
        )
    page = f"""<!doctype html><html><head><meta charset='utf-8'><title>diffsim runs</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}td,th{{border:1px solid #ccc;padding:4px 8px}}
table{{border-collapse:collapse}}tr.fail{{background:#fdd}}</style></head><body><h1>diffsim runs</h1>
<table><tr><th>study</th><th>checks passed</th><th>seconds</th></tr>{"".join(rows)}</table></body></html>
"""
    return write_atomic(runs / "index.html", page)


def run_all(
    out_root: str | Path = "runs",
    *,
    quick: bool = False,
    progress: bool = True,
    names: Iterable[str] | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every registered study (or ``names``) into ``out_root/<study>`` and write the index.

    A study that crashes is recorded and the others still run. Returns ``{name: Results or error text}``.
    """
    from . import discover

    discover()
    out_root = Path(out_root)
    outcomes: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for name in sorted(names or STUDIES):
        start = time.perf_counter()
        echo(f"== {name}{' (quick)' if quick else ''}")
        try:
            res = run_study(name, out_dir=out_root / name, quick=quick, progress=progress)
            outcomes[name] = res
            echo(
                f"   {sum(c.passed for c in res.checks)}/{len(res.checks)} checks passed "
                f"in {time.perf_counter() - start:.1f} s -> {out_root / name / 'report.html'}"
            )
        except Exception as err:  # noqa: BLE001 - a crashing study must not stop the others
            failures[name] = f"{type(err).__name__}: {err}"
            outcomes[name] = failures[name]
            echo(f"   CRASHED: {failures[name]}")
            echo(traceback.format_exc())
    write_index(out_root, failures)
    echo(f"index: {out_root / 'index.html'}")
    return outcomes
