"""The study runner and the ``diffsim`` command: overrides, checks, atomic outputs, resumable sweeps, the
index page, bad input, and a smoke test of ``diffsim run all --quick`` in a fresh process (float32, as
users run it)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffsim._io import from_jsonable, to_jsonable, write_atomic
from diffsim.cli import main
from diffsim.studies import (
    STUDIES,
    ResultCache,
    Results,
    discover,
    parse_overrides,
    register,
    run_study,
    write_index,
)


@dataclasses.dataclass(frozen=True)
class Toy:
    n: int = 3
    scale: float = 1.0
    steps: tuple[int, ...] = (1, 2)
    flag: bool = False
    name: str = "x"
    maybe: int | None = None


def test_parse_overrides_types():
    got = parse_overrides(Toy, ["n=5", "scale=2.5e-1", "steps=4,8,16", "flag=true", "name=abc", "maybe=none"])
    assert got == {"n": 5, "scale": 0.25, "steps": (4, 8, 16), "flag": True, "name": "abc", "maybe": None}
    assert parse_overrides(Toy, ["maybe=7"]) == {"maybe": 7}


@pytest.mark.parametrize(
    "bad,match",
    [
        ("n", "key=value"),
        ("=3", "empty key"),
        ("nn=3", "Unknown config field 'nn'"),
        ("n=three", "integer"),
        ("scale=big", "number"),
        ("flag=perhaps", "boolean"),
        ("steps=1,x", "integer"),
    ],
)
def test_parse_overrides_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        parse_overrides(Toy, [bad])


def test_results_checks_and_json(tmp_path):
    res = Results("toy", Toy(), tmp_path)
    assert res.check("abs", 1.0, 1.05, 0.1).passed
    assert not res.check("abs fails", 1.0, 1.2, 0.1).passed
    assert res.check("rel", 10.0, 10.5, 0.1, relation="rel").passed
    assert res.check("le", 1.0, 0.5, relation="le").passed
    assert not res.check("ge", 1.0, 0.5, relation="ge").passed
    assert not res.check("nan measured", 1.0, float("nan"), 1.0).passed
    assert res.check("bool", True, True, relation="true").passed
    with pytest.raises(ValueError, match="relation"):
        res.check("x", 1, 1, relation="approx")
    res.metric("arr", np.arange(3.0))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    res.figure(fig, "line", "a line")
    assert (tmp_path / "figures" / "line.png").stat().st_size > 0
    d = json.loads(json.dumps(res.to_dict()))
    assert d["n_checks"] == 7 and d["n_passed"] == 4 and d["passed"] is False
    assert d["metrics"]["arr"] == [0.0, 1.0, 2.0]
    assert to_jsonable(float("inf")) == "inf"


def test_result_cache_resumes(tmp_path):
    calls = []
    cache = ResultCache(tmp_path, Toy())
    assert cache.get_or_compute("a/1", lambda: calls.append(1) or {"v": 1.5}) == {"v": 1.5}
    again = ResultCache(tmp_path, Toy())
    assert again.get_or_compute("a/1", lambda: calls.append(2) or {"v": 9}) == {"v": 1.5}
    assert calls == [1] and again.hits == 1
    other = ResultCache(tmp_path, Toy(n=4))  # a different config never reuses items
    assert other.get_or_compute("a/1", lambda: 7) == 7


def test_result_cache_returns_non_finite_floats_on_hit_and_miss(tmp_path):
    value = {"x": [1.0, float("nan")], "y": float("-inf"), "s": "text"}
    miss = ResultCache(tmp_path, Toy()).get_or_compute("nf", lambda: value)
    hit = ResultCache(tmp_path, Toy()).get_or_compute("nf", lambda: None)
    for got in (miss, hit):
        assert (
            got["x"][0] == 1.0 and np.isnan(got["x"][1]) and got["y"] == float("-inf") and got["s"] == "text"
        )
    assert from_jsonable(to_jsonable({"a": (float("inf"), 2)})) == {"a": [float("inf"), 2]}


def test_write_atomic_leaves_no_partial_file(tmp_path):
    target = tmp_path / "f.json"
    write_atomic(target, "old")

    with pytest.raises(TypeError):
        write_atomic(target, 123)  # not bytes/str: fails before replacing
    assert target.read_text() == "old"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_registry_and_cli_errors(capsys):
    discover()
    assert "samplers" in STUDIES
    assert main(["run", "no-such-study"]) == 2
    assert "Unknown study 'no-such-study'" in capsys.readouterr().err
    assert main(["run", "samplers", "--set", "n_particles=lots"]) == 2
    assert "integer" in capsys.readouterr().err
    assert main(["run", "samplers", "--set", "nope=1"]) == 2
    assert "Unknown config field" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert "samplers" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse: exit status 2, the message names --jobs
        main(["run", "all", "--jobs", "0"])
    assert "--jobs: expected a positive integer, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--jobs applies to 'run all'"):
        main(["run", "samplers", "--jobs", "2"])


@dataclasses.dataclass(frozen=True)
class Sweep:
    values: tuple[float, ...] = (1.0, 2.0, 3.0)


CALLS = []


@register("_toy-sweep", Sweep, quick=dict(values=(1.0,)), description="test-only study")
def _toy_run(config, out_dir, *, progress=True):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = Results("_toy-sweep", config, out_dir)
    cache = ResultCache(out_dir, config)
    squares = [cache.get_or_compute(f"v={v}", lambda v=v: CALLS.append(v) or v**2) for v in config.values]
    res.check("sum of squares", 14.0, sum(squares), 1e-12)
    fig, ax = plt.subplots()
    ax.plot(config.values, squares)
    res.figure(fig, "squares", "v^2")
    return res


def test_run_study_writes_outputs_and_resumes(tmp_path):
    out = tmp_path / "toy"
    res = run_study("_toy-sweep", out_dir=out, progress=False)
    assert res.passed and CALLS == [1.0, 2.0, 3.0]
    for name in ["config.json", "results.json", "report.md", "report.html", "figures/squares.png"]:
        assert (out / name).exists(), name
    data = json.loads((out / "results.json").read_text())
    assert data["n_checks"] == 1 and data["checks"][0]["passed"] is True
    assert set(data["checks"][0]) >= {"name", "predicted", "measured", "tolerance", "passed"}
    run_study("_toy-sweep", out_dir=out, progress=False)  # an interrupted sweep resumes: nothing recomputed
    assert CALLS == [1.0, 2.0, 3.0]
    quick = run_study("_toy-sweep", out_dir=tmp_path / "q", quick=True, progress=False)
    assert not quick.passed  # the quick preset sums 1 only: the check fails and stays failed
    index = write_index(tmp_path)
    assert "toy/report.html" in index.read_text() and "q/report.html" in index.read_text()
    STUDIES.pop("_toy-sweep")


def test_cli_compilation_cache_is_scoped_to_the_command(tmp_path, monkeypatch):
    """``diffsim run`` caches compiled programs in ``$JAX_COMPILATION_CACHE_DIR`` while it runs and leaves
    JAX's settings and the environment as it found them (``main`` also runs inside other programs)."""
    import jax

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "cache"))
    register("_toy-sweep", Sweep, quick=dict(values=(1.0,)), description="test-only study")(_toy_run)
    try:
        before = jax.config.jax_compilation_cache_dir
        assert main(["run", "_toy-sweep", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
        assert jax.config.jax_compilation_cache_dir == before
        assert "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ
        assert (tmp_path / "cache").is_dir()
        assert main(["run", "_toy-sweep", "--out", str(tmp_path / "o2"), "--no-compile-cache"]) == 0
    finally:
        STUDIES.pop("_toy-sweep", None)


@pytest.mark.slow
def test_run_all_quick_smoke(tmp_path):
    """The main job's quick preset, in a fresh process exactly as a user runs it."""
    # the command's default compilation cache, in a fresh directory (not the CI machine's home)
    env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"))
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "diffsim.cli", "run", "all", "--quick", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    discover()
    index = (out / "index.html").read_text()
    record = json.loads((Path(__file__).parent / "data" / "quick_checks_passing.json").read_text())["studies"]
    regressed = []
    for name in (n for n in STUDIES if not n.startswith("_")):
        assert (out / name / "results.json").exists(), name
        assert f"{name}/report.html" in index
        data = json.loads((out / name / "results.json").read_text())
        assert data["n_checks"] > 0, name
        passing = {c["name"] for c in data["checks"] if c["passed"]}
        regressed += [f"{name}: {c}" for c in record.get(name, []) if c not in passing]
    assert "CRASHED" not in proc.stdout
    assert any((tmp_path / "jax-cache").iterdir()), "the run wrote nothing to its compilation cache"
    assert not regressed, "checks that passed at the quick preset now fail:\n" + "\n".join(regressed)
