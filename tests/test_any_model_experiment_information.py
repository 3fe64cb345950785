"""experiments/any_model_information.py end to end on the tiny diffusers pipeline (in-process)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest


SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "any_model_information.py"
PROMPT = "0,5,17,33,1,1,1,1"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("_any_model_information", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the script's annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _args(model, out, *extra):
    return [
        "--model", str(model), "--out", str(out), "--prompt", PROMPT, "--first", "1", "--second", "2",
        "--n-samples", "2", "--steps", "3", "--n-logsnr", "4", "--n-noise", "1", "--seed", "3", *extra,
    ]  # fmt: skip


def test_end_to_end_deterministic(script, tiny_pipeline, tmp_path):
    script.main(_args(tiny_pipeline, tmp_path / "a"))
    script.main(_args(tiny_pipeline, tmp_path / "b"))
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    ra, rb = a["parts"]["information"]["result"], b["parts"]["information"]["result"]
    assert ra == rb  # deterministic under a fixed key
    assert ra["variants"] == [
        "[0, 1, 1, 33, 1, 1, 1, 1]",
        "[0, 5, 1, 33, 1, 1, 1, 1]",
        "[0, 1, 17, 33, 1, 1, 1, 1]",
        "[0, 5, 17, 33, 1, 1, 1, 1]",
    ]
    assert ra["batched"] is True and ra["n_samples"] == 2
    for key in ("pointwise_min/standard", "pointwise_min/orthogonal", "mmi/standard", "mmi/orthogonal"):
        assert len(ra["pid_bits"][key]) == 4 and np.all(np.isfinite(ra["pid_bits"][key]))
    assert np.asarray(ra["pixel_maps_bits"]["redundancy"]).shape == (8, 8)
    assert np.all(np.asarray(ra["mutual_information_bits"]["orthogonal"]) >= 0)
    assert a["n_passed"] == a["n_checks"] == 3, [c for c in a["checks"] if not c["passed"]]
    assert (tmp_path / "a" / "figures" / "pixel_pid.png").is_file()
    assert (tmp_path / "a" / "report.html").is_file()
    # a different seed changes the estimate
    script.main(_args(tiny_pipeline, tmp_path / "c", "--seed", "4"))
    rc = json.loads((tmp_path / "c" / "results.json").read_text())["parts"]["information"]["result"]
    assert rc["mutual_information_bits"] != ra["mutual_information_bits"]


def test_given_x0_and_pid_mode(script, tiny_pipeline, tmp_path):
    x0 = np.random.default_rng(0).normal(size=(2, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x0.npy", x0)
    script.main(_args(tiny_pipeline, tmp_path / "o", "--x0", str(tmp_path / "x0.npy"), "--mode", "pid"))
    r = json.loads((tmp_path / "o" / "results.json").read_text())["parts"]["information"]["result"]
    assert r["variants"][0] == "[0, 1, 1, 1, 1, 1, 1, 1]" and r["variants"][1] == "[0, 5, 1, 1, 1, 1, 1, 1]"
    assert r["n_samples"] == 2


def test_clear_errors(script, tiny_pipeline, tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(ValueError, match="different token lengths"):
        script.main(
            ["--model", str(tiny_pipeline), "--out", str(out), "--variants", "0,1,1,1", "0,5,1", "0,1,17",
             "0,5,17"]
        )  # fmt: skip
    with pytest.raises(ValueError, match="--first: position 9"):
        script.main(["--model", str(tiny_pipeline), "--out", str(out), "--prompt", PROMPT, "--first", "9",
                     "--second", "2"])  # fmt: skip
    with pytest.raises(ValueError, match="--first"):
        script.main(["--model", str(tiny_pipeline), "--out", str(out), "--prompt", PROMPT, "--first", "cat",
                     "--second", "2"])  # fmt: skip
    with pytest.raises(ValueError, match="--prompt, --first and --second are required"):
        script.main(["--model", str(tiny_pipeline), "--out", str(out), "--prompt", PROMPT])
    with pytest.raises(FileNotFoundError, match="--model"):
        script.main(_args(tmp_path / "missing", out))
    with pytest.raises(FileNotFoundError, match="--x0"):
        script.main(_args(tiny_pipeline, out, "--x0", str(tmp_path / "none.npy")))
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5)))
    with pytest.raises(ValueError, match="--x0: expected clean samples"):
        script.main(_args(tiny_pipeline, out, "--x0", str(tmp_path / "wrong.npy")))
    with pytest.raises(ValueError, match="--n-logsnr must be a positive integer"):
        script.main(_args(tiny_pipeline, out, "--n-logsnr", "0"))
