"""``experiments/any_model_ridge.py`` end to end on the tiny diffusers pipeline (in-process): the matrix-free
ridge geometry through the PyTorch bridge (reverse-mode Hessian-vector products), deterministic under a fixed
seed, and clear errors."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest


SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "any_model_ridge.py"
PROMPT = "0,5,17,33,1,1,1,1"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("any_model_ridge", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _argv(model, out, *extra):
    return [
        "--model", str(model), "--out", str(out), "--prompt", PROMPT, "--k", "2", "--t", "0.05,0.3",
        "--n", "2", "--steps", "3", "--num-iter", "16", "--dtype", "float64", *extra,
    ]  # fmt: skip


def test_runs_end_to_end_and_is_deterministic(script, tiny_pipeline, tmp_path):
    script.main(_argv(tiny_pipeline, tmp_path / "a"))
    script.main(_argv(tiny_pipeline, tmp_path / "b"))
    for name in ("config.json", "results.json", "report.html", "figures/ridge_spectrum.png"):
        assert (tmp_path / "a" / name).is_file(), name
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["checks"] == b["checks"]
    ra, rb = a["parts"]["ridge"]["result"], b["parts"]["ridge"]["result"]
    assert ra["top_eigvals"] == rb["top_eigvals"]
    assert ra["dim"] == 64 and len(ra["times"]) == 2
    eig = np.asarray(ra["top_eigvals"])
    assert eig.shape == (2, 2, 3) and np.all(np.isfinite(eig))
    assert all(c["passed"] for c in a["checks"]), [c for c in a["checks"] if not c["passed"]]


def test_unconverged_lanczos_is_a_failed_check(script, tiny_pipeline, tmp_path):
    """16 of 64 Krylov vectors leave the Ritz pairs unconverged here: the check says so (it can fail)."""
    res = script.main(_argv(tiny_pipeline, tmp_path / "u", "--num-iter", "4", "--t", "0.05"))
    conv = [c for c in res.checks if "converged" in c.name]
    assert conv and not all(c.passed for c in conv)


def test_clear_errors(script, tiny_pipeline, tmp_path):
    with pytest.raises(ValueError, match="--k"):
        script.main(_argv(tiny_pipeline, tmp_path / "c", "--k", "0"))
    with pytest.raises(ValueError, match="--t"):
        script.main(_argv(tiny_pipeline, tmp_path / "c", "--t", "0.5,1.5"))
    with pytest.raises(ValueError, match="latent dimension"):
        script.main(_argv(tiny_pipeline, tmp_path / "c", "--k", "64"))
    with pytest.raises(FileNotFoundError, match="--model"):
        script.main(_argv(tmp_path / "nowhere", tmp_path / "c"))
