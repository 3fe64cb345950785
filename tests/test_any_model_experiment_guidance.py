"""``experiments/any_model_guidance.py`` end to end on the tiny diffusers pipeline (in-process)."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest


SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "any_model_guidance.py"
PROMPT = "0,5,17,33,1,1,1,1"
EMPTY = "0,1,1,1,1,1,1,1"
CLASSIFIER = """
import numpy as np
import jax.numpy as jnp

_W = jnp.asarray(np.random.default_rng(0).normal(size=(64, 3)))


def logits(x):
    return x.reshape(x.shape[0], -1) @ _W.astype(x.dtype)


def wrong_shape(x):
    return x.reshape(x.shape[0], -1)[:, 0]


def features(x):
    return x.reshape(x.shape[0], -1)[:, :4]
"""


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("any_model_guidance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
def clf_file(tmp_path):
    path = tmp_path / "clf.py"
    path.write_text(CLASSIFIER)
    return path


def _argv(model, out, clf_file, *extra):
    return [
        "--model", str(model), "--out", str(out), "--prompt", PROMPT, "--negative-prompt", EMPTY,
        "--scales", "0,1,4", "--classifier", f"{clf_file}:logits", "--n", "12", "--steps", "4",
        *extra,
    ]  # fmt: skip


def test_runs_end_to_end_and_is_deterministic(script, tiny_pipeline, clf_file, tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        script.main(_argv(tiny_pipeline, out, clf_file, "--features", f"{clf_file}:features"))
        for f in ("config.json", "results.json", "report.html", "figures/guidance_sweep.png"):
            assert (out / f).is_file(), f
        runs.append(json.loads((out / "results.json").read_text()))
    a, b = (r["parts"]["sweep"]["result"] for r in runs)
    assert a == b  # deterministic under the fixed seed
    assert runs[0]["checks"] == runs[1]["checks"] and runs[0]["answer"] == runs[1]["answer"]
    assert a["timesteps"] == sorted(a["timesteps"], reverse=True) and len(a["timesteps"]) == 4
    sweep = a["summary"]
    assert sweep["scales"] == [0.0, 1.0, 4.0]
    for sampler in ("ddpm", "ddim"):
        q = sweep["samplers"][sampler]
        assert len(q["confidence"]) == 3 and all(0.0 <= c <= 1.0 for c in q["confidence"])
        assert all(0.0 <= f <= 1.0 for f in q["target_fraction"])
        assert all(v > 0 for v in q["pixel_variance"]) and all(map(math.isfinite, q["knn_entropy"]))
    # guidance acts: the samples at scale 4 differ from the unguided ones
    assert sweep["samplers"]["ddim"]["pixel_variance"][0] != sweep["samplers"]["ddim"]["pixel_variance"][-1]
    assert sweep["feature_dim"] == 4


@pytest.mark.parametrize(
    "extra, error, match",
    [
        (("--scales", "1,-2"), ValueError, "--scales"),
        (("--classifier", "nofile.py:logits"), FileNotFoundError, "--classifier"),
        (("--classifier", "{clf}:missing"), AttributeError, "--classifier"),
        (("--classifier", "{clf}:wrong_shape"), ValueError, "`classifier`"),
        (("--negative-prompt", "0,1,1"), ValueError, "same length"),
        (("--target", "7"), ValueError, "`target`"),
    ],
)
def test_bad_input(script, tiny_pipeline, clf_file, tmp_path, extra, error, match):
    extra = tuple(e.replace("{clf}", str(clf_file)) for e in extra)
    with pytest.raises(error, match=match):
        script.main(_argv(tiny_pipeline, tmp_path / "bad", clf_file, *extra))


def test_missing_model_and_classifier(script, clf_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="--model"):
        script.main(_argv(tmp_path / "none", tmp_path / "o", clf_file))
    argv = _argv(tmp_path / "none", tmp_path / "o", clf_file)
    i = argv.index("--classifier")
    del argv[i : i + 2]
    with pytest.raises(ValueError, match="--classifier"):
        script.main(argv)
