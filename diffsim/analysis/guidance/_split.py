r"""The discretisation split of strong guidance (Wu, Chen, Li, Wang & Wei, ICML 2024, section 6).

Three 1-D components ``N(-m, 1)``, ``N(0, 1)``, ``N(m, 1)`` under the OU process, guidance towards the centre
class. With ``a = a_t`` the centre class's noised law is ``N(0, 1)`` and the guided score (diffsim scale
``w``, Wu et al.'s ``eta = w - 1``) is

$$
s_w(t, x) = -x - \eta\, a\, \bar\mu_t(x), \qquad \bar\mu_t(x) = \sum_k p_t(k \mid x)\, \mu_k,
$$

whose guidance part pulls every point towards the centre: the continuous-time flow contracts the centre class
(unimodal output). Linearised at the centre, ``s_w(t, x) ~ -(1 + eta kappa_t) x`` with
``kappa_t = a^2 Var_{k ~ p_t(.|0)}[mu_k]``. One DDIM/DDPM step ``t -> t'`` (``x0 = (x + sigma^2 s)/a``,
``eps = -sigma s``, ``x' = a' x0 + rho eps + c z`` with ``rho = sqrt(sigma'^2 - c^2)``) then has the slope

$$
M = \frac{a'}{a} - (1 + \eta\kappa_t)\, \sigma \Big(\frac{a' \sigma}{a} - \rho\Big)
$$

at the centre, which turns **negative** once ``eta kappa_t`` is large against the step: the step overshoots
the centre. Far from the centre the guidance saturates (``mu_bar`` is bounded), so the step map is increasing
there: a negative slope at the centre means the map **folds**, and the pushed-forward density acquires two
symmetric fold peaks: the centre class splits. The slope of the continuous flow is ``exp(-int ...) > 0``, so
a fold, hence a split, is a pure discretisation effect, and it disappears once every step is short enough.

:func:`centre_step_slopes` computes ``M`` per step by differentiating the sampler's own step (any mixture,
evaluated at ``a_t mu_y``, the point that the mean map keeps when the mixture is symmetric about ``mu_y``);
:func:`split_map` measures bimodality of the sampled outputs by the dip test over strengths and step counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float

from ..._validation import check_key, check_positive_int, check_probability
from ...sampling import DDIM, DDPM, State
from ...scores.guidance import check_scale, guided_mixture
from ...scores.mixture import GaussianMixture
from ._bimodality import dip_test
from ._quantities import _check_problem
from ._sweep import _reverse_grid


__all__ = ["SplitMap", "centre_step_slopes", "split_map"]

_KERNELS = {"ddim": DDIM(), "ddpm": DDPM()}


def _check_sampler(sampler: str) -> None:
    if sampler not in _KERNELS:
        raise ValueError(f"`sampler` must be 'ddim' or 'ddpm', got {sampler!r}.")


def centre_step_slopes(
    mixture: GaussianMixture,
    label: int,
    scale: float,
    n_steps: int,
    sampler: str = "ddim",
    *,
    grid_kind: str = "logsnr",
    kind: str = "classifier",
) -> Float[Array, " n_steps"]:
    r"""Slope ``d x_{i+1} / d x_i`` of each guided DDIM/DDPM step at ``x_i = a_{t_i} mu_y`` (the target class
    centre), by forward-mode differentiation of the sampler's step (the noise term does not depend on ``x``).

    A negative slope means the step map folds at the centre (the step overshoots it), the mechanism of the
    discretisation split (module docstring).

    Args:
        mixture: a 1-D :class:`~diffsim.scores.mixture.GaussianMixture`.
        label: the target class.
        scale: diffsim guidance scale ``w >= 0`` (Wu et al.'s ``eta = w - 1``).
        n_steps: number of steps of the reverse grid.
        sampler: ``"ddim"`` or ``"ddpm"``.
        grid_kind: ``"logsnr"`` or ``"uniform"`` reverse grid.
        kind: ``"classifier"`` or ``"cfg"`` guidance (equal for exact mixtures).

    Returns:
        The ``n_steps`` slopes, in the order of the steps.
    """
    _check_problem(mixture, label)
    if mixture.dim != 1:
        raise ValueError(f"centre_step_slopes needs a 1-D mixture, got d={mixture.dim}.")
    check_scale(scale)
    _check_sampler(sampler)
    score = guided_mixture(mixture, int(label), float(scale), kind=kind)
    p = mixture.process
    grid = _reverse_grid(p, check_positive_int(n_steps, "n_steps"), grid_kind)
    centre = mixture.means[int(np.flatnonzero(np.asarray(mixture.labels) == int(label))[0])]
    return _slopes(score, _KERNELS[sampler], grid, centre)


@eqx.filter_jit
def _slopes(score, kernel, grid, centre):
    p = score.process
    key = jr.key(0)

    def slope(t, t_next):
        def step(x):
            return kernel.step(key, State(x), t, t_next, score).x

        return jax.jacfwd(step)(p.alpha(t) * centre)[0, 0]

    return jax.vmap(slope)(grid[:-1], grid[1:])


def _padded_grid(process, n_steps: int, n_max: int, grid_kind: str) -> tuple[jax.Array, jax.Array]:
    """The ``n_steps`` grid padded with its last time to ``n_max`` steps, and the mask of its real steps."""
    grid = _reverse_grid(process, n_steps, grid_kind)
    pad = jnp.broadcast_to(grid[-1:], (n_max - n_steps,))
    return jnp.concatenate([grid, pad]), jnp.arange(n_max) < n_steps


@eqx.filter_jit
def _padded_outputs(score, kernel, grid, active, x, key):
    """Run ``kernel`` over a padded grid (padded steps leave ``x`` unchanged): one compilation serves every
    step count up to the padded length. Step ``i`` draws its noise from ``fold_in(key, i)``."""

    def body(x, inp):
        i, t, t_next, on = inp
        keys = jr.split(jr.fold_in(key, i), x.shape[0])
        new = jax.vmap(lambda k, xi: kernel.step(k, State(xi), t, t_next, score).x)(keys, x)
        return jnp.where(on, new.astype(x.dtype), x), None

    grid = grid.astype(x.dtype)
    steps = jnp.arange(active.shape[0])
    x, _ = jax.lax.scan(body, x, (steps, grid[:-1], grid[1:], active))
    return x


class SplitMap(eqx.Module):
    """Result of :func:`split_map`; arrays are indexed ``[sampler, scale, step count]``.

    Attributes:
        samplers: the samplers, a subset of ``("ddim", "ddpm")``.
        scales: the diffsim guidance scales ``w``, shape ``(W,)``.
        steps: the step counts, shape ``(S,)``.
        level: the dip test's level.
        n: outputs per cell.
        resolution: the working-precision floor ``1e4 eps max(1, max|mu_k|)``.
        dip: the dip of the outputs, shape ``(len(samplers), W, S)``.
        p_value: the dip test's p-value, same shape.
        bimodal: ``p_value < level`` and not ``collapsed``.
        std: the outputs' standard deviation.
        collapsed: ``std < resolution`` (the output is a point mass to working precision: its spread is
            rounding noise, whose modality says nothing about the law).
        min_slope: the smallest centre step slope (:func:`centre_step_slopes`).
        fold: ``min_slope < 0``, the predicted split.
    """

    samplers: tuple[str, ...]
    scales: np.ndarray
    steps: np.ndarray
    level: float
    n: int
    resolution: float
    dip: np.ndarray
    p_value: np.ndarray
    bimodal: np.ndarray
    std: np.ndarray
    collapsed: np.ndarray
    min_slope: np.ndarray
    fold: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return {
            f.name: (v.tolist() if isinstance(v, np.ndarray) else v)
            for f in dataclasses.fields(self)
            for v in (getattr(self, f.name),)
        }


def split_map(
    mixture: GaussianMixture,
    label: int,
    scales: Sequence[float],
    steps: Sequence[int],
    *,
    key: jax.Array,
    n: int = 1000,
    samplers: Sequence[str] = ("ddim", "ddpm"),
    level: float = 0.01,
    n_null: int = 500,
    grid_kind: str = "logsnr",
    kind: str = "classifier",
) -> SplitMap:
    r"""Bimodality of the guided DDIM/DDPM outputs of a 1-D mixture over strengths and step counts.

    For each sampler, diffsim scale ``w`` and step count, ``n`` outputs of the sampler's own step (the
    :class:`~diffsim.sampling.DDIM` / :class:`~diffsim.sampling.DDPM` kernels of :func:`diffsim.simulate`,
    driven over a grid padded to the largest step count so that one compilation serves all step counts;
    the same prior draws and per-step noise keys in every cell) go through
    :func:`~diffsim.analysis.guidance.dip_test` at ``level``; the centre step slopes give the predicted
    fold. Outputs whose spread is below the working precision's resolution count as collapsed, not as
    bimodal (run in float64 to resolve strongly contracted outputs: float32 resolves spreads down to
    ``~1e-3 max|mu|`` only).

    Args:
        mixture: a 1-D :class:`~diffsim.scores.mixture.GaussianMixture`.
        label: the target class (its single component is unimodal).
        scales: diffsim guidance scales ``w >= 0``.
        steps: step counts of the log-SNR-uniform (or uniform) reverse grid.
        key: JAX key of the prior draws and the sampler noise.
        n: outputs per cell.
        samplers: a subset of ``("ddim", "ddpm")``.
        level: the dip test's level.
        n_null: Monte Carlo draws of the dip test's uniform null.
        grid_kind: ``"logsnr"`` or ``"uniform"``.
        kind: ``"classifier"`` or ``"cfg"``.

    Returns:
        A :class:`SplitMap`.
    """
    _check_problem(mixture, label)
    if mixture.dim != 1:
        raise ValueError(f"split_map needs a 1-D mixture, got d={mixture.dim}.")
    ws = np.asarray(scales, dtype=float)
    if ws.ndim != 1 or ws.size < 1:
        raise ValueError("`scales` must be a non-empty 1-D sequence of guidance scales w.")
    check_scale(ws, "scales")
    ns = [check_positive_int(int(s), "steps") for s in steps]
    if not ns:
        raise ValueError("`steps` must hold at least one step count.")
    if not samplers:
        raise ValueError("`samplers` must hold at least one of 'ddim', 'ddpm'.")
    for s in samplers:
        _check_sampler(s)
    level = check_probability(level, "level")
    n = check_positive_int(n, "n", minimum=4)
    key = check_key(key)
    shape = (len(samplers), ws.size, len(ns))
    out = {nm: np.zeros(shape) for nm in ("dip", "p_value", "std", "min_slope")}
    bimodal = np.zeros(shape, bool)
    p = mixture.process
    k_prior, k_noise = jr.split(key)
    x_T = p.prior_sample(k_prior, (n, 1)).astype(mixture.means.dtype)
    centre = mixture.means[int(np.flatnonzero(np.asarray(mixture.labels) == int(label))[0])]
    n_max = max(ns)
    resolution = (
        1e4 * float(jnp.finfo(mixture.means.dtype).eps) * max(1.0, float(jnp.max(jnp.abs(mixture.means))))
    )
    grids = [_padded_grid(p, n_steps, n_max, grid_kind) for n_steps in ns]
    for i, sampler in enumerate(samplers):
        kernel = _KERNELS[sampler]
        for j, w in enumerate(ws):
            score = guided_mixture(mixture, int(label), float(w), kind=kind)
            for k, (n_steps, (grid, active)) in enumerate(zip(ns, grids, strict=True)):
                x = np.asarray(_padded_outputs(score, kernel, grid, active, x_T, k_noise), np.float64)[:, 0]
                if not np.all(np.isfinite(x)):
                    raise ValueError(f"non-finite {sampler} outputs at w={w:g}, {n_steps} steps.")
                res = dip_test(x, level=level, n_null=n_null)
                out["dip"][i, j, k], out["p_value"][i, j, k] = res.dip, res.p_value
                out["std"][i, j, k] = float(np.std(x))
                bimodal[i, j, k] = res.bimodal and out["std"][i, j, k] >= resolution
                slopes = _slopes(score, kernel, grid, centre)
                out["min_slope"][i, j, k] = float(jnp.min(jnp.where(active, slopes, jnp.inf)))
    return SplitMap(
        samplers=tuple(samplers),
        scales=ws,
        steps=np.asarray(ns),
        level=level,
        n=n,
        resolution=resolution,
        dip=out["dip"],
        p_value=out["p_value"],
        bimodal=bimodal,
        std=out["std"],
        collapsed=out["std"] < resolution,
        min_slope=out["min_slope"],
        fold=out["min_slope"] < 0.0,
    )
