"""Parts ``memorisation`` and ``dsm`` of the ``digits`` study (see :mod:`diffsim.studies.digits`): the exact
empirical score (:class:`~diffsim.scores.empirical.EmpiricalScore`) as the memorising reference. Its reverse
flow copies training digits (ratio ``d_1 / d_2`` of nearest to second-nearest training image below 1/3,
Yoon et al. 2023) while the network's samples do not, and it minimises the DSM training objective (Vincent
2011), so the network's loss lies above it. Also the study's keys and processes, shared by its parts."""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.sample_quality import classifier_features, frechet_distance, memorisation_ratio
from ..data.digits import load_digits
from ..processes import VP
from ..sampling import grids, simulate
from ..scores.empirical import EmpiricalScore
from ..training import dsm_loss_terms
from ._figures import digits as figures
from ._runner import Check, Figure, PartContext, check


MEMORISED = 1.0 / 3.0  # d1/d2 below this counts as a copy of a training image (Yoon et al. 2023)

_NOTES = {
    "memorise": "The exact empirical score's reverse flow ends on training points (Karras et al. 2022, "
    "eq. 57; Kadkhodaie et al. 2024), so d1/d2 ~ sigma(t_min) sqrt(d) / d2 << 1/3.",
    "fd": "Unconditional memorising samples are uniform draws of training images, so their FD to the "
    "test set matches that of random training subsets (with replacement) of the same size "
    "({n}); tolerance 3 SD over 20 subsets.",
    "dsm": "L(network) - L(empirical) on the training set with common noise; the empirical score is "
    "the exact minimiser (Vincent 2011), so the gap is >= 0 up to 3 SE.",
}


def _keys(config: Any) -> dict[str, jax.Array]:
    names = ("classifier", "net", "train", "sample", "empirical", "dsm")
    return dict(zip(names, jr.split(jr.key(config.seed), 6), strict=True))


def _process(name: str):
    return {"linear": VP.linear, "cosine": VP.cosine, "ou": VP.ou}[name]()


# --- memorisation: the exact empirical score copies training digits, the network does not ---------------
class Memorisation(eqx.Module):
    """Memorised fractions and median ``d1/d2``, Fréchet distances of the memorising reference."""

    reference: str
    memorised_fraction: dict[str, float]
    ratio_median: dict[str, float]
    frechet_distance_empirical: float
    frechet_distance_train_subsets: dict[str, float]
    ratios: Any = field(
        default=None, metadata={"json": False}
    )  # d1/d2 per sample: network, empirical, real_test
    empirical_samples: Any = field(default=None, metadata={"json": False})


def _empirical_score(config: Any) -> EmpiricalScore:
    x_train, y_train = load_digits().flat("train")
    return EmpiricalScore(jnp.asarray(x_train), process=_process(config.process), labels=jnp.asarray(y_train))


def compute_memorisation(config: Any, ctx: PartContext) -> Memorisation:
    data = load_digits()
    x_train, _ = data.flat("train")
    x_test, _ = data.flat("test")
    clf, feats_test = ctx.results["evaluator"].classifier, ctx.results["evaluator"].features_test
    ref_method = "ddim" if "ddim" in config.samplers else config.samplers[0]
    n_gen = config.n_generated
    grid = grids.logsnr_uniform(_process(config.process), config.n_steps)
    emp_traj = simulate(_empirical_score(config), ref_method, grid, n=n_gen, key=_keys(config)["empirical"])
    emp_samples = np.clip(np.asarray(emp_traj.x), -1.0, 1.0)
    w_ref = 1.0 if 1.0 in config.guidance else config.guidance[0]
    ratios = {
        "network": memorisation_ratio(ctx.results["sampling"].samples[(ref_method, w_ref)], x_train),
        "empirical": memorisation_ratio(emp_samples, x_train),
        "real_test": memorisation_ratio(x_test, x_train),
    }
    fd_emp = frechet_distance(np.asarray(classifier_features(clf, jnp.asarray(emp_samples))), feats_test)
    rng = np.random.default_rng(config.seed)
    feats_train = np.asarray(classifier_features(clf, jnp.asarray(x_train)))
    fd_train = [frechet_distance(feats_train[rng.choice(len(x_train), n_gen)], feats_test) for _ in range(20)]
    return Memorisation(
        reference=f"{ref_method}, w={w_ref:g}",
        memorised_fraction={k: float(np.mean(v < MEMORISED)) for k, v in ratios.items()},
        ratio_median={k: float(np.median(v)) for k, v in ratios.items()},
        frechet_distance_empirical=fd_emp,
        frechet_distance_train_subsets={"mean": float(np.mean(fd_train)), "std": float(np.std(fd_train))},
        ratios=ratios,
        empirical_samples=emp_samples,
    )


def checks_memorisation(config: Any, r: Memorisation) -> list[Check]:
    mem, fd_train = r.memorised_fraction, r.frechet_distance_train_subsets
    copies = (
        f"{r.reference}: memorised fraction of network samples {mem['network']:.3f} vs empirical "
        f"{mem['empirical']:.3f} (real test digits: {mem['real_test']:.3f})."
    )
    fd_note, fd_tol = _NOTES["fd"].format(n=config.n_generated), round(3 * fd_train["std"] + 1e-6, 4)
    names = [
        "EmpiricalScore samples memorise (d1/d2 < 1/3)",
        "network samples memorise less than the empirical score",
        "FD(empirical-score samples) = FD(training subsets)",
    ]
    return [
        check(names[0], 0.95, mem["empirical"], 0.0, relation="ge", note=_NOTES["memorise"]),
        check(names[1], mem["empirical"], mem["network"], 0.0, relation="le", note=copies),
        check(names[2], fd_train["mean"], r.frechet_distance_empirical, fd_tol, note=fd_note),
    ]


def figures_memorisation(config: Any, r: Memorisation) -> list[Figure]:
    return [figures.memorisation(config, r, MEMORISED)]


# --- the DSM loss: the empirical score minimises the training objective ---------------------------------
class Dsm(eqx.Module):
    """DSM loss on the training set per time ``t``."""

    loss: dict[str, dict[str, float]]  # per t: network, empirical, standard error of the paired difference


@eqx.filter_jit
def _dsm_terms(score, ts, x0, eps, tokens, weighting):
    return dsm_loss_terms(score, ts, x0, eps, tokens, weighting=weighting)


def compute_dsm(config: Any, ctx: PartContext) -> Dsm:
    x_train, _ = load_digits().flat("train")
    model, emp, k_dsm = ctx.results["model"].ema, _empirical_score(config), _keys(config)["dsm"]
    null = jnp.full((x_train.shape[0], 1), 10, jnp.int32)
    xt = jnp.asarray(x_train)
    out = {}
    for i, t in enumerate(config.dsm_times):
        eps = jr.normal(jr.fold_in(k_dsm, i), xt.shape, xt.dtype)
        ts = jnp.full((xt.shape[0],), t, xt.dtype)
        l_net = np.asarray(_dsm_terms(model, ts, xt, eps, null, config.weighting))
        l_emp = np.asarray(_dsm_terms(emp, ts, xt, eps, None, config.weighting))
        diff = l_net - l_emp
        out[f"{t:g}"] = {
            "network": float(l_net.mean()),
            "empirical": float(l_emp.mean()),
            "se": float(np.std(diff) / math.sqrt(diff.size)),
            "gap": float(diff.mean()),
        }
    return Dsm(out)


def checks_dsm(config: Any, r: Dsm) -> list[Check]:
    out = []
    for t in config.dsm_times:
        row = r.loss[f"{t:g}"]
        name = f"empirical score minimises the training DSM loss (t={t:g})"
        out.append(check(name, 0.0, row["gap"], round(3 * row["se"], 6), relation="ge", note=_NOTES["dsm"]))
    return out
