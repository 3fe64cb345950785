"""``experiments/any_model_windows.py`` end to end on the tiny diffusers pipeline (in-process)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest


SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "any_model_windows.py"
PROMPT = "0,5,17,33,1,1,1,1"
CLASSIFIER = """
import numpy as np
import jax.numpy as jnp

_W = jnp.asarray(np.random.default_rng(0).normal(size=(64, 3)))


def logits(x):
    return x.reshape(x.shape[0], -1) @ _W.astype(x.dtype)


def sign(x):
    return np.asarray(x.reshape(x.shape[0], -1).mean(axis=1) > 0).astype(int)
"""


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("any_model_windows", SCRIPT)
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


def _argv(model, out, *extra):
    return [
        "--model", str(model), "--out", str(out), "--prompt", PROMPT, "--t-hats", "300,600,900",
        "--n", "6", "--repeats", "2", "--steps", "4", *extra,
    ]  # fmt: skip


def _result(out):
    data = json.loads((out / "results.json").read_text())
    return data["parts"]["windows"]["result"], data["checks"]


def test_runs_end_to_end_and_is_deterministic(script, tiny_pipeline, clf_file, tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        script.main(_argv(tiny_pipeline, out, "--classifier", f"{clf_file}:logits"))
        for f in ("config.json", "results.json", "report.html", "figures/retention.png"):
            assert (out / f).is_file(), f
        runs.append(_result(out))
    (a, checks_a), (b, checks_b) = runs
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    strip = lambda cs: [(c["name"], c["measured"], c["passed"]) for c in cs]  # noqa: E731
    assert strip(checks_a) == strip(checks_b)
    assert a["timesteps"] == [300, 600, 900] and a["schedule"] == [999, 749, 499, 249]
    for sampler in ("ddpm", "ddim"):
        q = a["samplers"][sampler]
        ret = np.asarray(q["retention"])
        assert ret.shape == (3,) and np.all((ret >= 0) & (ret <= 1))
        np.testing.assert_allclose(np.asarray(q["keep_tv"]), 1 - ret, atol=1e-12)
        assert np.all(np.asarray(q["retention_low"]) <= ret + 1e-12)
        assert len(q["membership_score"]) == 6
    assert any("retention is a fraction" in c["name"] and c["passed"] for c in checks_a)


def test_clean_samples_from_file_fractions_and_membership(script, tiny_pipeline, clf_file, tmp_path):
    rng = np.random.default_rng(0)
    train, held = tmp_path / "train.npy", tmp_path / "held.npy"
    np.save(train, rng.normal(size=(4, 1, 8, 8)).astype(np.float32))
    np.save(held, rng.normal(size=(3, 64)).astype(np.float32))
    out = tmp_path / "m"
    argv = _argv(tiny_pipeline, out, "--classifier", f"{clf_file}:sign", "--x0", str(train))
    argv = [*argv, "--heldout", str(held), "--t-hat-units", "fractions"]
    argv[argv.index("300,600,900")] = "0.3,0.9"
    script.main(argv)
    r, _ = _result(out)
    assert r["timesteps"] == [299, 899] and r["n_clean"] == 7
    for q in r["samplers"].values():
        assert 0.0 <= q["membership_auc"] <= 1.0
        assert all(v is None for v in q["soft_retention"])  # discrete features: no soft labels


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ((), "--classifier is required"),
        (("--classifier", "CLF:logits", "--t-hats", "100,600"), "outside the schedule"),
        (("--classifier", "CLF:logits", "--t-hats", "1000"), "outside the schedule"),
        (("--classifier", "CLF:logits", "--t-hats", "0.5,1.5", "--t-hat-units", "fractions"), "fractions"),
        (("--classifier", "CLF:logits", "--t-hats", "300.5"), "integers"),
        (("--classifier", "CLF:nope"), "no attribute"),
        (("--classifier", "CLF:logits", "--x0", "MISSING.npy"), "--x0"),
    ],
)
def test_clear_errors(script, tiny_pipeline, clf_file, tmp_path, extra, match):
    extra = tuple(
        e.replace("CLF", str(clf_file)).replace("MISSING", str(tmp_path / "missing")) for e in extra
    )
    argv = _argv(tiny_pipeline, tmp_path / "e", *extra)
    # later flags win in argparse: the --t-hats given in `extra` replace the default ones
    with pytest.raises((ValueError, FileNotFoundError, AttributeError), match=match):
        script.main(argv)
