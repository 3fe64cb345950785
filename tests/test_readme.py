"""The README's Python example runs as written (with fewer particles)."""

import pathlib
import re

import numpy as np


def test_readme_python_example_runs():
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    code = blocks[0].replace("1_000_000", "2_000")
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["traj"].x.shape == (2_000, 2)
    assert np.isfinite(float(ns["score"].log_prob(0.0, ns["traj"].x[0])))
    # guidance towards label 1 (mean [2, 1]) moves the DDIM output's mean towards it
    guided_mean = np.asarray(
        ns["ds"].simulate(ns["guided"], "ddim", 50, n=2_000, key=ns["jax"].random.key(1)).x.mean(0)
    )
    assert guided_mean[0] > 1.8
