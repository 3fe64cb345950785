"""The declarative study runner: parts, typed results, grouped and skipped checks, reports and the index,
and the runner's behaviour on damaged or contested state (cache entries, locks, stale temporaries,
unwritable or nested output directories, ``--strict``)."""

import dataclasses
import functools
import json
import logging
import shutil
import stat
import subprocess
import typing
from pathlib import Path

import equinox as eqx
import pytest

from diffsim.cli import main
from diffsim.studies import (
    STUDIES,
    Figure,
    Part,
    ResultCache,
    RunLockedError,
    Study,
    build_config,
    check,
    register_study,
    run_all,
    run_experiment,
    run_study,
    write_index,
)
from diffsim.studies._runner import _locked


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    values: tuple[float, ...] = (1.0, 2.0, 3.0)
    target: float = 14.0


@dataclasses.dataclass(frozen=True)
class Squares:
    squares: dict[str, float]
    total: float
    scratch: object = dataclasses.field(default=None, metadata={"json": False})


CALLS: list[float] = []


def _compute(config, ctx):
    squares = {
        str(v): ctx.cache(f"v={v}", lambda v=v: CALLS.append(v) or v**2)
        for v in ctx.progress(config.values, "v")
    }
    ctx.note("squares of the values")
    return Squares(squares, sum(squares.values()), scratch=object())


def _checks(config, r):
    return [
        check("sum of squares", config.target, r.total, 1e-12),
        check("all positive", True, all(v > 0 for v in r.squares.values()), relation="true"),
        check("needs three values", 3, len(config.values), skip="" if len(config.values) >= 3 else "too few"),
    ]


def _figures(config, r):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([float(k) for k in r.squares], list(r.squares.values()))
    return [Figure("squares", fig, "v^2 against v")]


def _compute_mean(config, ctx):
    return {"mean_square": ctx.results["squares"].total / len(config.values)}


TOY = Study(
    "_toy-declarative",
    ToyConfig,
    parts=[Part("squares", _compute, _checks, _figures), Part("mean", _compute_mean)],
    quick=dict(values=(1.0, 2.0)),
    question="Are the squares what they should be?",
    answer=lambda config, results: f"The squares sum to {results['squares'].total:g}.",
    headline="squares",
)


@pytest.fixture
def toy():
    register_study(TOY)
    CALLS.clear()
    yield TOY
    STUDIES.pop(TOY.name, None)


def test_declarative_study_outputs(toy, tmp_path):
    out = tmp_path / "toy"
    res = run_study(toy.name, out_dir=out, progress=False)
    assert res.passed and CALLS == [1.0, 2.0, 3.0]
    data = json.loads((out / "results.json").read_text())
    assert data["n_checks"] == 3 and data["n_passed"] == 3 and data["n_skipped"] == 0
    assert data["question"] == toy.question and data["answer"] == "The squares sum to 14."
    assert data["parts"]["squares"]["result"] == {
        "squares": {"1.0": 1.0, "2.0": 4.0, "3.0": 9.0},
        "total": 14.0,
    }
    assert data["parts"]["mean"]["result"] == {"mean_square": 14.0 / 3}
    assert {c["part"] for c in data["checks"]} == {"squares"}
    assert data["notes"] == ["squares of the values"]
    report = (out / "report.html").read_text()
    assert report.index(toy.question) < report.index("figures/squares.png") < report.index("sum of squares")
    run_study(toy.name, out_dir=out, progress=False)  # resumes: nothing recomputed
    assert CALLS == [1.0, 2.0, 3.0]
    index = write_index(tmp_path).read_text()
    assert toy.question in index and "toy/figures/squares.png" in index and "3 / 3 checks passed" in index


def test_unregistered_experiment_has_the_study_layout(tmp_path):
    """``run_experiment`` runs a Study object that is not registered into the same files as ``run_study``."""
    assert TOY.name not in STUDIES
    res = run_experiment(TOY, ToyConfig(), tmp_path / "exp", progress=False)
    assert TOY.name not in STUDIES
    for name in ("config.json", "results.json", "report.md", "report.html"):
        assert (tmp_path / "exp" / name).is_file()
    data = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert [c["name"] for c in data["checks"]] == [c.name for c in res.checks]
    assert data["parts"]["squares"]["result"]["total"] == 14.0
    with pytest.raises(TypeError, match="config must be an instance of ToyConfig"):
        run_experiment(TOY, {"values": (1.0,)}, tmp_path / "bad", progress=False)
    with pytest.raises(TypeError, match="study must be"):
        run_experiment("_toy-declarative", ToyConfig(), tmp_path / "bad", progress=False)


def test_skipped_and_failed_checks_in_report(toy, tmp_path):
    out = tmp_path / "q"
    res = run_study(toy.name, out_dir=out, quick=True, progress=False)
    assert not res.passed  # the quick preset sums 1 + 4: the check fails and stays failed
    data = json.loads((out / "results.json").read_text())
    assert data["n_checks"] == 2 and data["n_passed"] == 1 and data["n_skipped"] == 1
    skipped = [c for c in data["checks"] if c["skipped"]]
    assert len(skipped) == 1 and skipped[0]["skipped"] == "too few" and not skipped[0]["passed"]
    md = (out / "report.md").read_text()
    assert "skipped: too few" in md
    assert md.index("**FAILED**") < md.index("| all positive")  # failures first within a part
    html = (out / "report.html").read_text()
    assert "<details open>" in html  # a part holding a failure is unfolded


def test_strict_exit_status(toy, tmp_path, capsys):
    assert main(["run", toy.name, "--quick", "--no-progress", "--out", str(tmp_path / "a")]) == 0
    assert main(["run", toy.name, "--quick", "--strict", "--no-progress", "--out", str(tmp_path / "b")]) == 3
    assert "--strict" in capsys.readouterr().err
    assert main(["run", toy.name, "--strict", "--no-progress", "--out", str(tmp_path / "c")]) == 0


def test_out_dir_is_respected(toy, tmp_path):
    nested = tmp_path / "A" / "B"
    assert main(["run", toy.name, "--no-progress", "--out", str(nested)]) == 0
    assert (nested / "results.json").exists() and not (tmp_path / "A" / "index.html").exists()
    mode = stat.S_IMODE((nested / "results.json").stat().st_mode)
    assert mode & 0o044 == 0o044, oct(mode)  # readable by group and others, like any output


def test_unwritable_out_is_a_clear_error(toy, tmp_path, capsys):
    blocker = tmp_path / "plainfile"
    blocker.write_text("not a directory")
    assert main(["run", toy.name, "--no-progress", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "cannot write" in err


def test_failed_run_leaves_old_outputs_consistent(toy, tmp_path):
    out = tmp_path / "toy"
    run_study(toy.name, out_dir=out, progress=False)
    before = (out / "config.json").read_text(), (out / "results.json").read_text()

    def boom(config, ctx):
        raise RuntimeError("interrupted")

    register_study(dataclasses.replace(TOY, parts=[Part("squares", boom)]))
    with pytest.raises(RuntimeError, match="interrupted"):
        run_study(toy.name, out_dir=out, overrides={"target": 5.0}, progress=False)
    assert ((out / "config.json").read_text(), (out / "results.json").read_text()) == before


def test_concurrent_run_into_one_directory_is_refused(toy, tmp_path, capsys):
    out = tmp_path / "toy"
    out.mkdir()
    with _locked(out):
        with pytest.raises(RunLockedError, match="another diffsim run"):
            run_study(toy.name, out_dir=out, progress=False)
        assert main(["run", toy.name, "--no-progress", "--out", str(out)]) == 2
        assert "another diffsim run" in capsys.readouterr().err
    assert not (out / "results.json").exists()
    run_study(toy.name, out_dir=out, progress=False)  # once the lock is released the run goes through


def test_stale_temporaries_are_removed(toy, tmp_path):
    out = tmp_path / "toy"
    (out / "figures").mkdir(parents=True)
    stale = [out / ".results.json.abc123.tmp", out / "figures" / ".squares.png.x.tmp"]
    for path in stale:
        path.write_text("half a file")
    run_study(toy.name, out_dir=out, progress=False)
    assert not any(p.exists() for p in stale)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe not utf-8",
        b"[]",
        b"null",
        b"42",
        b'{"key": "k", "value": 1}',
        b'{"key": "other", "version": "0.1.0", "digest": "x", "value": 1}',
        b"{truncated",
    ],
)
def test_damaged_cache_entries_are_misses_named_in_the_log(tmp_path, payload, caplog):
    cache = ResultCache(tmp_path, ToyConfig())
    assert cache.get_or_compute("k", lambda: 1.5) == 1.5
    path = cache._path("k")
    path.write_bytes(payload)
    again = ResultCache(tmp_path, ToyConfig())
    with caplog.at_level(logging.WARNING, logger="diffsim.studies"):
        assert again.get_or_compute("k", lambda: 2.5) == 2.5
    assert again.hits == 0 and again.rejected == [str(path)]
    assert str(path) in caplog.text
    assert ResultCache(tmp_path, ToyConfig()).get_or_compute("k", lambda: 9.0) == 2.5  # rewritten soundly


def test_plausible_wrong_cache_value_is_detected(tmp_path):
    cache = ResultCache(tmp_path, ToyConfig())
    cache.get_or_compute("k", lambda: {"error": 0.01})
    path = cache._path("k")
    entry = json.loads(path.read_text())
    entry["value"]["error"] = 0.02  # edited by hand or damaged: the digest no longer matches
    path.write_text(json.dumps(entry))
    again = ResultCache(tmp_path, ToyConfig())
    assert again.get_or_compute("k", lambda: {"error": 0.01}) == {"error": 0.01}
    assert "digest" in again.summary() or again.rejected


@pytest.mark.parametrize(
    "study,override,match",
    [
        ("concepts", "saliency_steps=6,99", "saliency_steps"),  # outside the 20-step grid
        ("concepts", "separations=1.5,6.0", "coarse"),
        ("concepts", "n_masks=0", "n_masks"),
        ("information", "n_logsnr=0", "n_logsnr"),
        ("information", "gates=NAND", "Unknown gate"),
        ("information", "correlations=1.0", "correlations"),
        ("samplers", "samplers=ddim,nope", "samplers"),
        ("samplers", "steps=8", "steps"),
    ],
)
def test_study_configs_reject_bad_values_naming_the_field(study, override, match, capsys, tmp_path):
    assert main(["run", study, "--set", override, "--no-progress", "--out", str(tmp_path / study)]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / study / "results.json").exists()


def test_nan_override_rejected(capsys):
    assert main(["run", "samplers", "--set", "order_tolerance=nan"]) == 2
    assert "order_tolerance" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)"
)
def test_report_and_index_render_in_headless_chromium(toy, tmp_path):
    out = tmp_path / "runs"
    run_study(toy.name, out_dir=out / "toy", quick=True, progress=False)
    index = write_index(out)
    for page, must in [(out / "toy" / "report.html", "FAILED"), (index, "checks passed")]:
        shot = tmp_path / f"{page.stem}.png"
        proc = subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--screenshot={shot}",
                "--window-size=1200,1600",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
        )
        assert proc.returncode == 0 and shot.stat().st_size > 10_000, proc.stderr[-2000:]
        dom = subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        assert must in dom and toy.question in dom


def test_no_test_imports_studies_outside_the_runner_tests():
    tests = Path(__file__).parent
    allowed = {"test_cli.py", "test_runner.py", "test_layers.py"}
    offenders = [
        p.name
        for p in tests.glob("test_*.py")
        if p.name not in allowed
        and ("diffsim.studies" in p.read_text() or "from diffsim import studies" in p.read_text())
    ]
    assert not offenders, f"tests importing diffsim.studies: {offenders}"


def test_run_all_in_worker_processes_equals_one_process(tmp_path):
    """``run_all(jobs=2)`` runs each study in a spawned worker: the same results.json numbers and outcomes
    as in this process, a crashing study recorded as its error while the others finish, and the index."""
    import _toy_studies  # noqa: F401 - registers the toy studies (a worker imports it the same way)

    names = ["_toy-draws-a", "_toy-draws-b", "_toy-crash"]
    try:
        lines: list[str] = []
        seq = run_all(tmp_path / "seq", quick=True, progress=False, names=names, echo=lines.append)
        par = run_all(tmp_path / "par", quick=True, progress=False, names=names, echo=lines.append, jobs=2)
    finally:
        for n in names:
            STUDIES.pop(n, None)
    assert list(par) == list(seq) == sorted(names)
    for outcomes in (seq, par):
        assert isinstance(outcomes["_toy-crash"], str)
        assert "RuntimeError: this toy study crashes on purpose" in outcomes["_toy-crash"]
    for name in ["_toy-draws-a", "_toy-draws-b"]:
        a = json.loads((tmp_path / "seq" / name / "results.json").read_text())
        b = json.loads((tmp_path / "par" / name / "results.json").read_text())
        assert a["parts"]["draws"]["result"] == b["parts"]["draws"]["result"]  # (timings differ)
        assert a["checks"] == b["checks"] and a["config"] == b["config"]
        assert par[name].passed == seq[name].passed and len(par[name].counted) == len(seq[name].counted) == 2
        assert par[name].parts["draws"]["result"] == seq[name].parts["draws"]["result"]
    means = [seq[n].parts["draws"]["result"]["mean"] for n in ["_toy-draws-a", "_toy-draws-b"]]
    assert means[0] != means[1]
    assert sum("CRASHED" in line for line in lines) == 2
    assert "_toy-draws-a/report.html" in (tmp_path / "par" / "index.html").read_text()


def test_run_all_rejects_bad_jobs_and_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        run_all(tmp_path, jobs=0, names=[])
    with pytest.raises(ValueError, match="names: unknown studies"):
        run_all(tmp_path, names=["no-such-study"])


#: numeric config fields for which -1 (and 0 for integers) is a legitimate value: seeds, locations, shifts,
#: a digit label, counts that may be zero
_NUMBERS_ANY_SIGN = {
    "seed",
    "info_lo",
    "info_hi",
    "schedule_lam",
    "random_centre",
    "random_offset",
    "logsnr_loc",
    "normal_shift",
    "warmup_steps=0",
    "n_plot_trajectories=0",
    "latent_digit=0",
}


def test_every_numeric_study_field_is_validated_by_its_config():
    """-1 (and 0 for an integer) in any numeric field of any study config is rejected when the config is
    built, by an error naming the field, unless the field legitimately takes it (the list above)."""
    import typing

    from diffsim.studies import build_config, discover

    discover()
    unvalidated, unnamed = [], []
    for name, spec in sorted(STUDIES.items()):
        if name.startswith("_"):
            continue
        hints = typing.get_type_hints(spec.config_cls)
        for f in dataclasses.fields(spec.config_cls):
            if hints[f.name] not in (int, float):
                continue
            for bad in (-1, 0) if hints[f.name] is int else (-1.0,):
                if f.name in _NUMBERS_ANY_SIGN or f"{f.name}={bad}" in _NUMBERS_ANY_SIGN:
                    continue
                try:
                    build_config(spec, {f.name: bad})
                except ValueError as err:
                    if f"`{f.name}`" not in str(err) and f.name not in str(err):
                        unnamed.append(f"{name}.{f.name}={bad}: {err}")
                else:
                    unvalidated.append(f"{name}.{f.name}={bad}")
    assert not unvalidated, f"accepted: {unvalidated}"
    assert not unnamed, f"errors not naming the field: {unnamed}"


# -----------------------------------------------------------------------------------------------------
# one kind of result container (tests/test_result_containers.py checks the faces)
# -----------------------------------------------------------------------------------------------------
def _part_result_type(compute):
    while isinstance(compute, functools.partial):
        compute = compute.func
    return typing.get_type_hints(compute).get("return")


def test_part_results_are_modules():
    """Every part of every registered study names its result type, and it is an ``eqx.Module``."""
    from diffsim.studies import discover

    seen = {}
    for name, spec in discover().items():
        if spec.study is None:
            continue
        for config in (spec.config_cls(), build_config(spec, quick=True)):
            for part in spec.study.parts_for(config):
                seen[f"{name}/{part.name}"] = _part_result_type(part.compute)
    assert len(seen) >= 30
    bad = {k: v for k, v in seen.items() if not (isinstance(v, type) and issubclass(v, eqx.Module))}
    assert bad == {}


def test_study_records_are_modules_and_configs_frozen_dataclasses():
    from diffsim.studies import Check, StudySpec, discover

    assert issubclass(Check, eqx.Module) and issubclass(Figure, eqx.Module)
    c = check("x", 1.0, 1.0, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.part = "p"  # type: ignore[misc]
    for cls in (Part, Study, StudySpec, *(spec.config_cls for spec in discover().values())):
        assert dataclasses.is_dataclass(cls) and not issubclass(cls, eqx.Module), cls
        assert cls.__dataclass_params__.frozen, cls
