"""Checks, figures and the results of one study run.

A :class:`Check` records one theory prediction beside its measurement; :func:`check` evaluates it. A failed
check stays failed in ``results.json``: explain it with ``note`` rather than loosening the tolerance. A check
that cannot be evaluated at this configuration is recorded as skipped, with the reason, and counts neither as
passed nor as failed.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import equinox as eqx
import numpy as np

from .._io import read_json, to_jsonable, write_atomic


__all__ = ["Check", "Figure", "Results", "check", "serialise_result"]

RELATIONS = ("abs", "rel", "le", "ge", "true")


class Check(eqx.Module):
    """One theory prediction beside its measurement.

    ``part`` names the study part that stated it; ``skipped`` holds the reason when the check could not be
    evaluated at this configuration (then ``passed`` is ``False`` and the check is not counted).
    """

    name: str
    predicted: Any
    measured: Any
    tolerance: Any
    passed: bool
    note: str = ""
    part: str = ""
    skipped: str = ""


class Figure(eqx.Module):
    """A matplotlib figure a study part draws, saved as ``figures/<name>.png`` with its caption."""

    name: str
    fig: Any
    caption: str = ""


def _evaluate(predicted: Any, measured: Any, tolerance: Any, relation: str) -> bool:
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
    raise ValueError(f"Unknown relation {relation!r}; use one of {RELATIONS}.")


def check(
    name: str,
    predicted: Any,
    measured: Any,
    tolerance: Any = None,
    *,
    relation: str = "abs",
    passed: bool | None = None,
    note: str = "",
    skip: str = "",
) -> Check:
    """Evaluate one check.

    ``relation``: ``"abs"`` (|m - p| <= tol), ``"rel"`` (|m - p| <= tol |p|), ``"le"`` (m <= p + tol),
    ``"ge"`` (m >= p - tol), ``"true"`` (bool(m)). ``passed`` overrides the evaluation; ``skip`` (a reason)
    records the check as skipped.
    """
    if relation not in RELATIONS:
        raise ValueError(f"Unknown relation {relation!r}; use one of {RELATIONS}.")
    if skip:
        ok = False
    else:
        ok = _evaluate(predicted, measured, tolerance, relation) if passed is None else bool(passed)
    return Check(
        name, to_jsonable(predicted), to_jsonable(measured), to_jsonable(tolerance), ok, note, skipped=skip
    )


def serialise_result(result: Any) -> Any:
    """A part's result as JSON: a dataclass by its fields (those with ``metadata={"json": False}`` left
    out), anything else through :func:`diffsim._io.to_jsonable`."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {
            f.name: serialise_result(getattr(result, f.name))
            for f in dataclasses.fields(result)
            if f.metadata.get("json", True)
        }
    if isinstance(result, dict):
        return {str(k): serialise_result(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [serialise_result(v) for v in result]
    return to_jsonable(result)


class Results:
    """Numbers, checks and figures produced by one study run.

    - :meth:`check` records a prediction beside a measurement and whether it held.
    - :meth:`metric` records any other number (or small nested structure).
    - :meth:`figure` saves a matplotlib figure to ``figures/<name>.png`` (atomically) with a caption.
    - :meth:`note` adds a paragraph to the report.

    Declarative studies (:class:`diffsim.studies.Study`) fill it through the runner; the part results go
    under ``parts`` in ``results.json``.
    """

    def __init__(self, study: str, config: Any, out_dir: str | Path | None = None):
        self.study = study
        self.config = config
        self.checks: list[Check] = []
        self.metrics: dict[str, Any] = {}
        self.parts: dict[str, Any] = {}
        self.figures: list[dict[str, str]] = []
        self.notes: list[str] = []
        self.question = ""
        self.answer = ""
        self.headline = ""
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
        """Record a check (see :func:`check` for the relations)."""
        return self.add_check(
            check(name, predicted, measured, tolerance, relation=relation, passed=passed, note=note)
        )

    def add_check(self, c: Check, part: str = "") -> Check:
        if not isinstance(c, Check):
            raise TypeError(f"Expected a Check (made with diffsim.studies.check), got {type(c).__name__}.")
        if part:
            c = dataclasses.replace(c, part=part)
        self.checks.append(c)
        return c

    def metric(self, name: str, value: Any) -> None:
        self.metrics[name] = to_jsonable(value)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def figure(self, fig: Any, name: str, caption: str = "", part: str = "") -> Path:
        """Save ``fig`` (matplotlib) as ``figures/<name>.png`` in the run directory and close it."""
        if self.out_dir is None:
            raise RuntimeError(
                "Results.figure needs the run directory: create it as Results(name, config, out_dir)."
            )
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        path = write_atomic(self.out_dir / "figures" / f"{name}.png", buf.getvalue())
        self.figures = [f for f in self.figures if f["name"] != name]
        entry = {"name": name, "path": f"figures/{name}.png", "caption": caption}
        if part:
            entry["part"] = part
        self.figures.append(entry)
        return path

    @property
    def counted(self) -> list[Check]:
        """The checks that were evaluated (not skipped)."""
        return [c for c in self.checks if not c.skipped]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.counted)

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """The :class:`Results` a finished run wrote to ``path`` (its ``results.json``, or the run
        directory holding it): checks, metrics, parts, figures and notes as JSON gives them back, ``config``
        as a dict. Used by :func:`diffsim.studies.run_all` to collect studies run in worker processes."""
        path = Path(path)
        if path.is_dir():
            path = path / "results.json"
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
            raise ValueError(f"path {path}: not a results.json written by a study run.")
        res = cls(str(data.get("study", "")), data.get("config"), path.parent)
        fields = {f.name for f in dataclasses.fields(Check)}
        res.checks = [Check(**{k: v for k, v in c.items() if k in fields}) for c in data["checks"]]
        res.metrics = dict(data.get("metrics") or {})
        res.parts = dict(data.get("parts") or {})
        res.figures = list(data.get("figures") or [])
        res.notes = list(data.get("notes") or [])
        res.question = data.get("question", "")
        res.answer = data.get("answer", "")
        res.headline = data.get("headline", "")
        res.elapsed_s = data.get("elapsed_s")
        return res

    def to_dict(self) -> dict[str, Any]:
        counted = self.counted
        out = {
            "study": self.study,
            "config": to_jsonable(self.config),
            "passed": self.passed,
            "n_checks": len(counted),
            "n_passed": sum(c.passed for c in counted),
            "n_skipped": len(self.checks) - len(counted),
            "question": self.question,
            "answer": self.answer,
            "headline": self.headline,
            "checks": [to_jsonable(c) for c in self.checks],
            "metrics": self.metrics,
            "parts": self.parts,
            "figures": self.figures,
            "notes": self.notes,
            "elapsed_s": self.elapsed_s,
        }
        return out
