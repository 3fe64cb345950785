"""Smoke test of benchmarks/throughput.py: every method runs on a tiny problem and samples the same law, the
skip logic records why, the ratio/target/table helpers compute what they say, and an end-to-end run writes
its JSON, markdown and plots. Nothing here is timed."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest


_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


@pytest.fixture(scope="module")
def tp():
    spec = importlib.util.spec_from_file_location("diffsim_benchmark_throughput", _PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_every_method_samples_the_same_mixture(tp):
    """Independent implementations of one SDE: the mass left of zero matches the first component's
    weight (two well-separated components), for every method, within Monte Carlo error."""
    problem = tp.make_problem(2, 2, 40, seed=7)
    assert problem.grid.shape == (41,) and problem.grid[0] > problem.grid[-1]
    n = 1500
    x0 = tp.start_points(problem, n)
    m0 = problem.means[0]
    # the fraction of particles nearer to component 0 than to component 1 estimates its weight
    w0 = float(problem.weights[0])
    tol = 4 * np.sqrt(w0 * (1 - w0) / n) + 0.03
    for method in tp.available_methods():
        x = np.asarray(tp.BUILDERS[method](problem, x0)(), dtype=np.float64)
        assert x.shape == (n, 2), method
        assert np.all(np.isfinite(x)), method
        d0 = np.sum((x - m0) ** 2, axis=1)
        d1 = np.sum((x - problem.means[1]) ** 2, axis=1)
        frac = float(np.mean(d0 < d1))
        assert abs(frac - w0) < tol, (method, frac, w0)


def test_measure_config_records_and_skips(tp):
    plan = tp.Plan(
        methods=("diffsim", "fused_scan", "numpy"),
        reps=2,
        max_run_s=1e-6,
        budget_s=1e9,
        restricted={"fused_scan": lambda d, k, n: False},
    )
    recs = tp.measure_config(
        plan, 2, 3, 200, 10, {"numpy": 1.0}, 1e12, 0.0 + __import__("time").perf_counter(), log=lambda m: None
    )
    by = {r["method"]: r for r in recs}
    assert (
        by["diffsim"]["status"] == "ok" and 1 <= len(by["diffsim"]["times_s"]) <= 2
    )  # long runs: fewer reps
    assert by["diffsim"]["particle_steps_per_s"] == pytest.approx(200 * 10 / by["diffsim"]["time_s"])
    assert by["diffsim"]["finite"]
    assert by["fused_scan"]["status"] == "skipped" and "plan" in by["fused_scan"]["reason"]
    assert by["numpy"]["status"] == "skipped" and by["numpy"]["reason"].startswith("time")
    mem = tp.measure_config(
        tp.Plan(methods=("numpy",), reps=1),
        2,
        3,
        200,
        10,
        {},
        10.0,
        __import__("time").perf_counter(),
        log=lambda m: None,
    )
    assert mem[0]["status"] == "skipped" and mem[0]["reason"].startswith("memory")


def test_ratio_helpers(tp):
    recs = [
        {
            "d": 2,
            "K": 8,
            "N": 10_000,
            "steps": 10,
            "method": "diffsim",
            "status": "ok",
            "particle_steps_per_s": 9.0,
        },
        {
            "d": 2,
            "K": 8,
            "N": 10_000,
            "steps": 10,
            "method": "fused_scan",
            "status": "ok",
            "particle_steps_per_s": 10.0,
        },
        {
            "d": 2,
            "K": 8,
            "N": 10_000,
            "steps": 10,
            "method": "numpy",
            "status": "ok",
            "particle_steps_per_s": 3.0,
        },
        {"d": 2, "K": 8, "N": 10_000, "steps": 10, "method": "torchsde", "status": "skipped", "reason": "x"},
    ]
    (row,) = tp.ratios(recs)
    assert row["fused_scan"] == pytest.approx(0.9) and row["numpy"] == pytest.approx(3.0)
    assert "torchsde" not in row
    tg = tp.check_targets(recs, {"compile_s": 1.0})
    assert tg["fused_target_0.9_met"] and tg["numpy_target_2_met"] and tg["compile_target_3s_met"]
    assert tg["torchsde_target_3_met"] is None
    slopes = tp.scaling_exponents(
        [{"g": 1, "N": n, "time_s": 2e-3 * n, "status": "ok"} for n in (10, 100, 1000)], "g"
    )
    assert slopes[1] == pytest.approx(1.0)


def test_end_to_end_writes_results(tp, tmp_path):
    res = tp.main(
        [
            "--quick",
            "--out",
            str(tmp_path),
            "--name",
            "smoke",
            "--d",
            "2",
            "--k",
            "3",
            "--n",
            "300",
            "--methods",
            "diffsim,fused_scan,numpy",
            "--reps",
            "1",
            "--skip",
            "steps,compile,analysis",
        ]
    )
    data = json.loads((tmp_path / "smoke-quick.json").read_text())
    assert {r["method"] for r in data["throughput"]} == {"diffsim", "fused_scan", "numpy"}
    assert all(r["status"] == "ok" for r in data["throughput"])
    assert len(data["loadavg_start"]) == 3 and data["device"]["platform"] == "cpu"
    table = (tmp_path / "smoke-quick.md").read_text()
    assert "| d | K | N | steps |" in table and "fused_scan" in table
    assert (tmp_path / "smoke-quick_throughput.png").exists() and (
        tmp_path / "smoke-quick_scaling.png"
    ).exists()
    mem = {r["save"]: r for r in res["memory"]}
    # saving every state needs (steps + 1) N d floats; the compiled peak holds them plus O(N d) more
    assert mem["all"]["peak_bytes"] >= mem["all"]["needed_bytes"]
    assert mem["final"]["peak_bytes"] < mem["all"]["peak_bytes"]


def test_matrix_form_mixture_score_is_accurate_in_float32():
    """The optimisation the benchmark pointed to (matrix-form score with a centred expanded square) keeps
    float32 accuracy for a mixture far from the origin with tight components, between and at the modes:
    float32 posterior and score against the float64 per-component (direct) form."""
    import jax
    import jax.numpy as jnp

    import diffsim as ds

    rng = np.random.default_rng(0)
    k, d = 8, 16
    means = 40.0 + rng.normal(size=(k, d))
    var = rng.uniform(0.01, 0.1, size=k)
    w = rng.dirichlet(np.ones(k))
    gm32 = ds.GaussianMixture(
        jnp.asarray(w, jnp.float32), jnp.asarray(means, jnp.float32), jnp.asarray(var, jnp.float32)
    )
    gm64 = ds.GaussianMixture(w, means, var)
    lam = rng.uniform(size=(200, 1))
    x = lam * means[rng.integers(k, size=200)] + (1 - lam) * means[rng.integers(k, size=200)]  # between modes
    x = np.concatenate([x, means + 0.01 * rng.normal(size=(k, d))])  # at the modes
    t = 0.01

    def direct_score(gm, tt, xx):
        r, s_rot, _ = gm._score_parts(tt, xx)
        return jnp.sum(r[:, None] * gm._rotate_out(s_rot), axis=0)

    post32 = jax.vmap(lambda z: gm32.posterior(jnp.float32(t), z))(jnp.asarray(x, jnp.float32))
    score32 = jax.vmap(lambda z: gm32.score(jnp.float32(t), z))(jnp.asarray(x, jnp.float32))
    assert post32.dtype == jnp.float32 and score32.dtype == jnp.float32
    post64 = jax.vmap(lambda z: jax.nn.softmax(gm64.component_log_prob(t, z) + jnp.log(gm64.weights)))(x)
    score64 = jax.vmap(lambda z: direct_score(gm64, t, z))(x)
    np.testing.assert_allclose(np.asarray(post32), np.asarray(post64), atol=2e-4)
    err = np.linalg.norm(np.asarray(score32) - np.asarray(score64), axis=1)
    scale = np.linalg.norm(np.asarray(score64), axis=1) + np.sqrt(d / 0.1)
    assert np.max(err / scale) < 1e-4, np.max(err / scale)


def test_ridge_matrix_free_benchmark_smoke(tmp_path):
    """benchmarks/ridge_matrix_free.py at its smoke size: it writes its JSON, times both routes and the two
    agree (the timing itself is not checked)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "ridge_matrix_free.py"
    spec = importlib.util.spec_from_file_location("diffsim_benchmark_ridge_matrix_free", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--smoke", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "ridge_matrix_free-smoke.json").read_text())
    (rec,) = data["records"]
    assert rec["matrix_free"]["time_per_point_s"] > 0 and rec["dense"]["time_per_point_s"] > 0
    assert rec["agreement"]["same_mask"] and rec["agreement"]["n_valid_dense"] >= 1
    assert rec["agreement"]["max_abs_projector_error"] < 1e-6
    assert rec["agreement"]["max_rel_newton_error"] < 1e-6


def test_samplers_benchmark_smoke(tmp_path):
    """benchmarks/samplers.py at its smoke size: it writes its JSON and markdown, times every new sampler
    through ``simulate`` (and the fused scan for Euler ancestral), and, where k-diffusion is installed, its
    LMS (deterministic, same sigmas and denoiser) agrees with diffsim's in float32."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "samplers.py"
    spec = importlib.util.spec_from_file_location("diffsim_benchmark_samplers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data = mod.main(["--smoke", "--out", str(tmp_path)])
    stem = f"samplers-{data['device']['name']}-smoke"
    assert json.loads((tmp_path / f"{stem}.json").read_text())["records"] == data["records"]
    assert "| `lms` |" in (tmp_path / f"{stem}.md").read_text()
    recs = {r["sampler"]: r for r in data["records"]}
    assert set(recs) == set(mod.SAMPLERS)
    assert all(r["time_per_step_s"]["diffsim"] > 0 for r in recs.values())
    assert recs["euler_ancestral"]["time_per_step_s"]["fused_scan"] > 0
    if "k_diffusion" in recs["lms"]["time_per_step_s"]:
        assert recs["lms"]["max_abs_diff_k_diffusion"] < 1e-4
    else:
        assert recs["lms"]["k_diffusion"].startswith("skipped")
    for name in ("euler_ancestral", "dpmpp_2m_sde", "unipc", "lms"):  # the diffusers schedulers' loops
        rec = recs[name]
        if "diffusers" in rec["time_per_step_s"]:
            assert rec["time_per_step_s"]["diffusers"] > 0
            # another grid, the same mixture: the output means are of one size (timing, not parity)
            assert abs(rec["mean_output"]["diffusers"] - rec["mean_output"]["diffsim"]) < 1.0
        else:
            assert rec["diffusers"].startswith("skipped")
    assert recs["dpmpp_3m_sde"]["diffusers"].startswith("no diffusers scheduler")
