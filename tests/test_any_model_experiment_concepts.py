"""experiments/any_model_concepts.py end to end on the tiny diffusers pipeline (in-process)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest


SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "any_model_concepts.py"
PROMPT = "0,5,17,33,1,1,1,1"
EMPTY = "0,1,1,1,1,1,1,1"
CLASSIFIER = """
import jax.numpy as jnp


def logits(x):
    m = 4.0 * jnp.mean(x.reshape(x.shape[0], -1), axis=1)
    return jnp.stack([m, -m], axis=1)


def scalar(x):
    return jnp.mean(x.reshape(x.shape[0], -1), axis=1, keepdims=True)
"""


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("_any_model_concepts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the script's annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    path = tmp_path_factory.mktemp("clf") / "clf.py"
    path.write_text(CLASSIFIER)
    return path


def _args(model, out, *extra):
    return [
        "--model", str(model), "--out", str(out), "--prompt", PROMPT, "--negative-prompt", EMPTY,
        "--n-samples", "2", "--steps", "3", "--n-masks", "8", "--n-random", "2", "--auc-pixels-per-step", "8",
        "--seed", "3", *extra,
    ]  # fmt: skip


def test_end_to_end_deterministic(script, tiny_pipeline, classifier, tmp_path):
    extra = ("--classifier", f"{classifier}:logits", "--schedule", "early", "--guidance", "3")
    script.main(_args(tiny_pipeline, tmp_path / "a", *extra))
    script.main(_args(tiny_pipeline, tmp_path / "b", *extra))
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    ra, rb = a["parts"]["concepts"]["result"], b["parts"]["concepts"]["result"]
    assert ra == rb  # deterministic under a fixed key
    assert a["n_passed"] == a["n_checks"] == 2, [c for c in a["checks"] if not c["passed"]]
    # Park et al.'s early-dense exponential schedule in integer timesteps (T = 1000, N = 3, lam = 60)
    assert ra["timesteps"][0] == 999 and len(ra["timesteps"]) == 3
    assert np.all(np.diff(ra["timesteps"]) < 0) and np.all(np.diff(ra["log_snr"]) > 0)
    assert set(ra["emergence_curves"]) == {"image", "classifier"}
    assert len(ra["emergence_curves"]["classifier"]) == 3 and len(ra["labels"]) == 2
    for name in ("masking_effect", "masking_prediction", "gradient"):
        maps = np.asarray(ra["saliency_maps"][name])
        assert maps.shape == (2, 8, 8) and np.all(np.isfinite(maps))
    for mode in ("insertion", "deletion"):
        assert set(ra["auc"][mode]) == {"masking_effect", "masking_prediction", "gradient", "random"}
    assert len(ra["auc_fractions"]) == 9  # 64 latent pixels, 8 per step
    assert ra["stream_error"] < 1e-4
    x0 = np.load(tmp_path / "a" / "arrays" / "x0_stream.npy")
    assert x0.shape == (3, 2, 1, 8, 8)
    for fig in ("x0_stream", "emergence", "saliency", "insertion_deletion"):
        assert (tmp_path / "a" / "figures" / f"{fig}.png").is_file()
    assert (tmp_path / "a" / "report.html").is_file()


def test_without_classifier_and_another_seed(script, tiny_pipeline, tmp_path):
    script.main(_args(tiny_pipeline, tmp_path / "c", "--seed", "4", "--saliency-step", "0"))
    r = json.loads((tmp_path / "c" / "results.json").read_text())
    rc = r["parts"]["concepts"]["result"]
    assert set(rc["emergence_curves"]) == {"image"} and rc["labels"] is None
    assert rc["saliency_step"] == 0 and rc["timesteps"] == [999, 666, 332]  # diffusers' trailing spacing
    assert r["n_passed"] == r["n_checks"]


def test_clear_errors(script, tiny_pipeline, classifier, tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(ValueError, match="--prompt is required"):
        script.main(["--model", str(tiny_pipeline), "--out", str(out)])
    with pytest.raises(ValueError, match="--negative-prompt is required"):
        script.main(["--model", str(tiny_pipeline), "--out", str(out), "--prompt", PROMPT])
    with pytest.raises(ValueError, match="--negative-prompt must be"):
        script.main(_args(tiny_pipeline, out, "--negative-prompt", "0,1,1"))
    with pytest.raises(ValueError, match="--schedule"):
        script.main(_args(tiny_pipeline, out, "--schedule", "cosine"))
    with pytest.raises(ValueError, match="--saliency-step"):
        script.main(_args(tiny_pipeline, out, "--saliency-step", "3"))
    with pytest.raises(ValueError, match="--n-masks"):
        script.main(_args(tiny_pipeline, out, "--n-masks", "1"))
    with pytest.raises(AttributeError, match="--classifier"):
        script.main(_args(tiny_pipeline, out, "--classifier", f"{classifier}:nope"))
    with pytest.raises(FileNotFoundError, match="--model"):
        script.main(_args(tmp_path / "missing", out))
    with pytest.raises(ValueError, match="--classifier must return logits"):
        script.main(_args(tiny_pipeline, out, "--classifier", f"{classifier}:scalar"))
    with pytest.raises(ValueError, match="repeats timesteps"):
        script.main(_args(tiny_pipeline, out, "--schedule", "late", "--steps", "30", "--schedule-lam", "0"))
