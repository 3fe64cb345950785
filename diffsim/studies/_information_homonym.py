"""Part 11 of the ``information`` study (see :mod:`diffsim.studies.information`): the homonym case study on
trained networks, DiffusionPID's failure case ("mole" not resolved by "coworker") in toy form.

Two token networks of one architecture are trained on the homonym (:func:`diffsim.data.homonym`: ``y1`` the
homonym present or not, ``y2`` a context word that decides which of its two meanings is depicted):

- **resolved**: on image-caption pairs where the context word decides the meaning (the law
  ``homonym(resolved=True)``);
- **blind**: on pairs whose context word is not tied to the depicted meaning (``homonym(resolved=False)``:
  meaning 1 or 2 with probability 1/2 whatever ``y2``; the same images and the same token frequencies,
  only the pairing differs). Such a model has seen every context word and never learned that it matters.

Both are then measured **on the same data** (resolved prompts and images, the same samples, log-SNRs and
noise draws), as the paper measures a model on its prompts: the exact predictions are the PID of the
resolved law, ``[R, U1, U2, S] = [1/2, 1/2, 0, 1/2]`` bits for every measure, for the resolved network and
that of a model which ignores the context, ``[0, 1, 0, 0]``, for the blind one (a predictor that does not
read ``y2`` has ``I(X; Y2) = 0`` and ``I(X; Y1, Y2) = I(X; Y1)``; its ``p(x | y1)`` is the data's). The
samples show the failure directly: given the homonym and a context word, the resolved network draws the
meaning the context decides, the blind one either meaning half the time (results, compute, checks).
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.information import (
    PID_MEASURES,
    decompose,
    exact_pid_information,
    pid_information,
    pid_tolerances,
    well_separated_joint,
)
from ..data import homonym
from ..sampling import grids, simulate
from ._information_bias import train_token_mlp
from ._information_cases import _conditional, _discrete, synergy_drop_check
from ._information_config import Config
from ._information_pid import CHUNK, bits, logistic_scheme, max_dev, part_key
from ._runner import Check, PartContext, check


MODELS = ("resolved", "blind")


class TrainedHomonym(eqx.Module):
    """Per network of :data:`MODELS`: PID rows (``network`` and ``network_orthogonal``: the trained
    network; ``engine``: the exact law it was trained on, through the same estimator; ``exact`` and
    ``discrete``: that law's exact values; ``tolerance``: the estimator's Monte-Carlo tolerance on the exact
    law), bits; per network and context word ``y2``: the fraction of samples given ``(y1, y2) = (1, y2)``
    that show the meaning ``1 + y2`` (``context_accuracy``) and that show the homonym at all
    (``homonym_shown``); the networks' final training losses."""

    rows: dict[str, dict[str, Any]]
    context_accuracy: dict[str, list[float]]
    homonym_shown: dict[str, list[float]]
    final_loss: dict[str, float]


def _meaning_means(tm) -> np.ndarray:
    """The block means of the three meanings (none, meaning 1, meaning 2) of :func:`homonym`, from the
    resolved law's components ``(y1, y2) = (0, 0), (0, 1), (1, 0), (1, 1)``."""
    means, tokens = np.asarray(tm.mixture.means, float), np.asarray(tm.tokens)
    index = {tuple(int(v) for v in t): k for k, t in enumerate(tokens)}
    return means[[index[(0, 0)], index[(1, 0)], index[(1, 1)]]]


def compute_trained_homonym(config: Config, ctx: PartContext) -> TrainedHomonym:
    c, key = config, part_key(config, 15)
    laws = {"resolved": homonym(resolved=True, block_size=2), "blind": homonym(resolved=False, block_size=2)}

    def compute():
        nets, losses = {}, {}
        for i, name in enumerate(MODELS):
            nets[name], losses[name] = train_token_mlp(
                laws[name], ctx, jr.fold_in(key, i), steps=c.trained_homonym_steps,
                n_train=c.trained_homonym_n_train, cache_dir=c.cache_dir,
                name=f"information-homonym-{name}-mlp",
            )  # fmt: skip
        exact = {name: _conditional(laws[name]) for name in MODELS}
        # the same data for both: resolved prompts and images, the same log-SNRs and noise draws
        x, y, w = exact["resolved"].sample_stratified(jr.fold_in(key, 2), c.cases_per_component)
        w = np.asarray(w)
        k = jr.fold_in(key, 3)
        kw = dict(scheme=logistic_scheme(c), n_noise=c.n_noise, sample_weights=w, chunk_size=CHUNK)
        rows = {}
        for name in MODELS:
            law = exact[name]
            est_law, est_net = pid_information(law, x, y, k, **kw), pid_information(nets[name], x, y, k, **kw)
            ex = exact_pid_information(law, x, y, sample_weights=w)
            tol = pid_tolerances(est_law, ex, w, n_se=c.n_se, floor_bits=c.tolerance_floor_bits)
            joint = well_separated_joint(law)
            rows[name] = {
                m: {
                    "network": bits(decompose(est_net, m).terms),
                    "network_orthogonal": bits(decompose(est_net, m, estimator="orthogonal").terms),
                    "engine": bits(decompose(est_law, m).terms),
                    "exact": bits(decompose(ex, m).terms),
                    "tolerance": round(tol[m], 4),
                    "discrete": _discrete(joint, m, False),
                }
                for m in PID_MEASURES
            }
        # samples given the homonym and each context word, from the same initial noise for both networks
        means = _meaning_means(laws["resolved"])
        grid = grids.logsnr_uniform(laws["resolved"].mixture.process, c.trained_homonym_sample_steps)
        accuracy, shown = {}, {}
        for name in MODELS:
            accuracy[name], shown[name] = [], []
            for y2 in (0, 1):
                score = nets[name].net.bind(jnp.asarray([1, y2], dtype=jnp.int32))
                out = simulate(
                    score, "ddim", grid, n=c.trained_homonym_samples, key=jr.fold_in(key, 10 + y2),
                    final_denoise=True,
                )  # fmt: skip
                xs = np.asarray(out.x, float)
                meaning = np.argmin(((xs[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
                accuracy[name].append(float(np.mean(meaning == 1 + y2)))
                shown[name].append(float(np.mean(meaning > 0)))
        return {
            "rows": rows,
            "context_accuracy": accuracy,
            "homonym_shown": shown,
            "final_loss": losses,
        }

    r = ctx.cache("cases-trained-homonym", compute)
    return TrainedHomonym(r["rows"], r["context_accuracy"], r["homonym_shown"], r["final_loss"])


def checks_trained_homonym(config: Config, r: TrainedHomonym) -> list[Check]:
    out = []
    closed = {"resolved": [0.5, 0.5, 0.0, 0.5], "blind": [0.0, 1.0, 0.0, 0.0]}
    for name in MODELS:
        rows = r.rows[name]
        dev = max(max_dev(rows[m]["discrete"], closed[name]) for m in PID_MEASURES)
        out.append(
            check(
                f"trained homonym ({name}): exact PID of the law it was trained on, on the resolved data = "
                f"{closed[name]} for every measure (max |dev|, bits)",
                0.0,
                dev,
                1e-9,
            )
        )
        out.append(
            check(
                f"trained homonym ({name}): engine on the exact law = exact (max |dev| per measure "
                f"{', '.join(PID_MEASURES)}; bits)",
                [0.0] * len(PID_MEASURES),
                [max_dev(rows[m]["engine"], rows[m]["exact"]) for m in PID_MEASURES],
                [rows[m]["tolerance"] for m in PID_MEASURES],
            )
        )
        for m in PID_MEASURES:
            out.append(
                check(
                    f"trained homonym ({name} network): {m} [R, U1, U2, S] = exact PID of its training law "
                    "(bits)",
                    rows[m]["discrete"],
                    rows[m]["network"],
                    rows[m]["tolerance"],
                    note="standard estimator on the resolved data; tolerance: the Monte-Carlo tolerance of "
                    "the estimator on the exact law (same samples, log-SNRs and noise draws), so a miss is "
                    "model error. Orthogonal estimator: "
                    f"{np.round(rows[m]['network_orthogonal'], 3).tolist()}.",
                )
            )
    for m in PID_MEASURES:
        out.append(
            synergy_drop_check(
                f"trained homonym: {m} synergy of the network that resolves the homonym minus the blind "
                "network's (S resolved - S blind, bits)",
                r.rows["resolved"][m],
                r.rows["blind"][m],
                "network",
                note="the same data, log-SNRs and noise draws for both networks; exact 1/2 - 0.",
            )
        )
    n = 2 * config.trained_homonym_samples  # both context words
    se = math.sqrt(0.25 / n)
    acc = {name: float(np.mean(r.context_accuracy[name])) for name in MODELS}
    out.append(
        check(
            "trained homonym: the blind network draws the meaning the context decides half the time "
            "(fraction of samples given the homonym and a context word)",
            0.5,
            acc["blind"],
            4 * se,
            note=f"{n} DDIM samples; tolerance 4 binomial SE at 1/2; homonym shown at all: "
            f"{np.round(r.homonym_shown['blind'], 3).tolist()} (per context word).",
        )
    )
    out.append(
        check(
            "trained homonym: the resolved network draws it half a sample more often than the blind one "
            "(difference of the fractions)",
            0.5,
            acc["resolved"] - acc["blind"],
            4 * se,
            note=f"resolved network per context word {np.round(r.context_accuracy['resolved'], 3).tolist()}; "
            f"tolerance 4 binomial SE at 1/2 (the blind fraction's; the exact resolved fraction is 1).",
        )
    )
    return out
