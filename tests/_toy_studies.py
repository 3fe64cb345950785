"""Two small registered studies for the parallel ``run_all`` test (``tests/test_runner.py``): importing this
module registers them, which is also how a worker process of ``run_all(jobs=2)`` finds them."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import jax.random as jr

from diffsim.studies import Part, Study, check, register_study


@dataclass(frozen=True)
class DrawConfig:
    """A seeded Monte-Carlo mean of N(0, 1) draws: a deterministic number that depends on the key."""

    n: int = 2_000
    seed: int = 0
    crash: bool = False


def _compute(config: DrawConfig, ctx) -> dict[str, float]:
    if config.crash:
        raise RuntimeError("this toy study crashes on purpose")
    x = jr.normal(jr.key(config.seed), (config.n,))
    return {"mean": float(jnp.mean(x)), "var": float(jnp.var(x))}


def _checks(config: DrawConfig, r: dict[str, float]):
    return [
        check("mean of N(0, 1) draws", 0.0, r["mean"], 4 / config.n**0.5),
        check("variance of N(0, 1) draws", 1.0, r["var"], 0.1),
    ]


def _study(name: str, **config) -> Study:
    return Study(
        name,
        DrawConfig,
        parts=[Part("draws", _compute, _checks)],
        quick=config,
        question="Are seeded N(0, 1) draws what they should be?",
        answer=lambda config, results: f"Mean {results['draws']['mean']:.4f}.",
    )


register_study(_study("_toy-draws-a", seed=1))
register_study(_study("_toy-draws-b", seed=2, n=3_000))
register_study(_study("_toy-crash", crash=True))
