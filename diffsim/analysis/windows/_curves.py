r"""Window curves ``TV(p^{S_init, T_hat}, p^{S_targ})``: route (a), the exact reweighting identity, and
route (b), direct simulation of noising-denoising."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import ArrayLike

from ..._types import ArrayOrSequence
from ..._validation import check_key, check_positive_int
from ...sampling import flow as _flow, noise_denoise as _noise_denoise, simulate as _simulate
from ...scores.mixture import GaussianMixture
from ._groups import (
    _check_mixture,
    _check_sampler,
    _mask,
    _nested,
    _project,
    _restrict,
    _times,
    _weight,
    _working,
)
from ._strata import _gh_nodes, _points, _rowwise, _strat_estimate, _strata


_MAX_GH_DIM = 2
_GH_NODES = {1: 64, 2: 20}


class WindowCurve(eqx.Module):
    r"""``TV(p^{S_init, T_hat}, p^{S_targ})`` and retentions as functions of ``T_hat``.

    - ``tv``, ``tv_stderr``: the total variation between the output and ``p^{S_targ}`` (at ``t_out``);
    - ``retention_init`` / ``retention_targ``: ``E_out[P_{t_out}(S | Y)]`` for ``S = S_init, S_targ`` (the
      probability that the output belongs to the group, with soft labels), with standard errors;
    - ``mass``: ``E_p[g]/W_init`` (must be 1: a check of the identity's normalisation; route (a) only);
    - ``route``: ``"identity"`` (route (a)) or ``"simulation"`` (route (b)); ``sampler``: ``"sde"``/``"ode"``.

    Attributes:
        t_hats: the noising times ``T_hat``, shape ``(n,)``, in the order they were given.
        tv: ``TV(p^{S_init, T_hat}, p^{S_targ}_{t_out})`` at each ``T_hat``, shape ``(n,)``.
        tv_stderr: standard error of ``tv``, shape ``(n,)``.
        retention_init: ``E_out[P_{t_out}(S_init | Y)]``, shape ``(n,)``.
        retention_init_stderr: standard error of ``retention_init``.
        retention_targ: ``E_out[P_{t_out}(S_targ | Y)]``, shape ``(n,)``.
        retention_targ_stderr: standard error of ``retention_targ``.
        mass: ``E_p[g]/W_init`` per ``T_hat`` (1 up to sampling error; NaN for route (b)).
        s_init: the sorted component indices of ``S_init``.
        s_targ: the sorted component indices of ``S_targ``.
        sampler: ``"sde"`` (reverse SDE) or ``"ode"`` (probability-flow ODE).
        route: ``"identity"`` (route (a)) or ``"simulation"`` (route (b)).
        t_out: the output time at which the law is compared with ``p^{S_targ}``.
    """

    t_hats: np.ndarray
    tv: np.ndarray
    tv_stderr: np.ndarray
    retention_init: np.ndarray
    retention_init_stderr: np.ndarray
    retention_targ: np.ndarray
    retention_targ_stderr: np.ndarray
    mass: np.ndarray
    s_init: tuple[int, ...]
    s_targ: tuple[int, ...]
    sampler: str
    route: str
    t_out: float


@eqx.filter_jit
def _posteriors_block(gm, t, mask, x):
    return jax.vmap(lambda xi: gm.group_posterior(t, xi, mask))(x)


def _posteriors(gm, t, x, mask) -> np.ndarray:
    """``P_t(S | x)`` for every row of ``x`` (NumPy)."""
    return _rowwise(_posteriors_block, (gm, jnp.asarray(t, gm.means.dtype), mask), (x,))


def _rotate_nodes(gm, z):
    """``U_k^T z`` for every component: ``(..., d) -> (..., K, d)``."""
    if gm.eigvecs is None:
        return jnp.broadcast_to(z[..., None, :], z.shape[:-1] + (gm.n_components, gm.dim))
    return jnp.einsum("kij,...i->...kj", gm.eigvecs, z)


def _noised_group_posterior(gm, mask, t_hat, a, b, x, z):
    r"""``P_{t_hat}(S | a x + b z)`` for points ``x`` (n, d) and nodes ``z`` (M, d) or per point (n, M, d).

    Uses that ``log N_k(a x + b z)`` is quadratic in ``z``: with ``u_k = U_k^T(a x - alpha mu_k)``,
    ``v_k = b U_k^T z`` and ``c_k = alpha^2 lambda_k + sigma^2`` (all at ``t_hat``),
    ``sum_j (u + v)_j^2 / c_j = |u|_c^2 + 2 <u, v>_c + |v|_c^2``: batched matrix products instead of a
    rotation per (point, node, component).
    """
    p = gm.process
    ah = p.alpha(t_hat)
    c = ah**2 * gm.eigvals + p.sigma2(t_hat)  # (K, d)
    base = jnp.log(gm.weights) - 0.5 * jnp.sum(jnp.log(c), axis=-1)  # (K,)
    mu_rot = gm.means if gm.eigvecs is None else jnp.einsum("kij,ki->kj", gm.eigvecs, gm.means)  # U_k^T mu_k
    u = _rotate_nodes(gm, a * x) - ah * mu_rot[None]  # (n, K, d)
    v = b * _rotate_nodes(gm, z)
    uu = jnp.sum(u**2 / c[None], axis=-1)  # (n, K)
    if z.ndim == 2:  # shared nodes
        uv = jnp.einsum("nkd,mkd->nmk", u / c[None], v)
        vv = jnp.sum(v**2 / c[None], axis=-1)[None]  # (1, M, K)
    else:
        uv = jnp.einsum("nkd,nmkd->nmk", u / c[None], v)
        vv = jnp.sum(v**2 / c[None, None], axis=-1)  # (n, M, K)
    logits = base[None, None, :] - 0.5 * (uu[:, None, :] + 2.0 * uv + vv)
    post = jax.nn.softmax(logits, axis=-1)
    return post @ mask.astype(post.dtype)  # (n, M)


@eqx.filter_jit
def _g_quadrature_block(gm, mask, t_hat, a, b, nodes, weights, xb):
    """``g(x) = sum_m w_m P_{t_hat}(S | a x + b z_m)`` with shared quadrature nodes."""
    return _noised_group_posterior(gm, mask, t_hat, a, b, xb, nodes) @ weights


@eqx.filter_jit
def _g_monte_carlo_block(gm, mask, t_hat, a, b, key, n_inner, xb, ib):
    """Antithetic Monte Carlo ``g`` from two independent halves (for the split-half bias correction).

    Sample ``i`` uses the normals of ``fold_in(key, idx_i)`` at every ``t_hat`` (common random numbers);
    the halves are ``{z[:q], -z[:q]}`` and ``{z[q:], -z[q:]}`` (antithetic pairs stay in one half).
    """
    quarter = n_inner // 4
    d = xb.shape[1]
    z = jax.vmap(lambda i: jr.normal(jr.fold_in(key, i), (2 * quarter, d), xb.dtype))(ib)  # (n, 2q, d)
    zs = jnp.stack([z, -z], axis=1).reshape(z.shape[0], 2, 2, quarter, d).transpose(0, 2, 1, 3, 4)
    zs = zs.reshape(z.shape[0], 4 * quarter, d)  # first 2q: half 1, last 2q: half 2
    post = _noised_group_posterior(gm, mask, t_hat, a, b, xb, zs)  # (n, 4q)
    return jnp.stack([post[:, : 2 * quarter].mean(1), post[:, 2 * quarter :].mean(1)], axis=1)


def _pow2_floor(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


class _InnerExpectation:
    """Evaluates ``g(x) = E[P_{t_hat}(S_init | X_{t_hat}) | X_{t_out} = x]`` by quadrature or Monte Carlo."""

    def __init__(self, gm, mask, inner, n_inner, key, chunk, n_gh=None):
        self.gm, self.mask, self.chunk = gm, mask, chunk
        if inner == "auto":
            inner = "quadrature" if gm.dim <= _MAX_GH_DIM else "monte_carlo"
        if inner == "quadrature":
            if gm.dim > _MAX_GH_DIM:
                raise ValueError(
                    f"`inner='quadrature'` needs dimension <= {_MAX_GH_DIM} (after reduction), "
                    f"got {gm.dim}; use 'monte_carlo'."
                )
            n_gh = _GH_NODES[gm.dim] if n_gh is None else check_positive_int(n_gh, "n_gh", minimum=2)
            self.nodes, self.weights = _gh_nodes(gm.dim, n_gh, gm.means.dtype)
        elif inner == "monte_carlo":
            self.n_inner = 4 * max(1, check_positive_int(n_inner, "n_inner", minimum=4) // 4)
            self.key = key
        else:
            raise ValueError(f"`inner` must be 'auto', 'quadrature' or 'monte_carlo', got {inner!r}.")
        self.kind = inner

    def __call__(self, t_out, t_hat, x, idx):
        """Return ``(g, g_half1, g_half2)``; the halves equal ``g`` for quadrature."""
        p = self.gm.process
        dt = self.gm.means.dtype
        a, b = p.transition(jnp.asarray(t_out, dt), jnp.asarray(t_hat, dt))
        chunk = self.chunk
        k = self.gm.n_components
        th = jnp.asarray(t_hat, dt)
        if self.kind == "quadrature":
            chunk = _pow2_floor(max(1, min(chunk, 4_000_000 // (k * self.nodes.shape[0]))))
            g = _rowwise(
                _g_quadrature_block, (self.gm, self.mask, th, a, b, self.nodes, self.weights), (x,), chunk
            )
            return g, g, g
        chunk = _pow2_floor(max(1, min(chunk, 2_000_000 // (k * self.n_inner * self.gm.dim))))
        halves = _rowwise(
            _g_monte_carlo_block,
            (self.gm, self.mask, th, a, b, self.key, self.n_inner),
            (x, jnp.asarray(idx)),
            chunk,
        )
        return 0.5 * (halves[:, 0] + halves[:, 1]), halves[:, 0], halves[:, 1]


def _curve_inputs(
    gm: Any,
    s_init: Any,
    s_targs: Sequence[Any],
    t_hats: ArrayOrSequence,
    key: Any,
    sampler: str,
    t_out: float,
    *,
    allow_zero_out: bool = True,
) -> tuple[GaussianMixture, list[tuple[np.ndarray, np.ndarray]], str, jax.Array, np.ndarray]:
    """Validated inputs shared by both routes: the mixture, ``(S_init, S_targ)`` index pairs (one per target),
    the sampler, the key and the ``T_hat`` grid (every ``T_hat`` above ``t_out``)."""
    gm = _check_mixture(gm)
    pairs = [_nested(gm, s_init, st) for st in s_targs]
    sampler = _check_sampler(sampler)
    key = check_key(key)
    gm.process.check_time(t_out, "t_out", allow_zero=allow_zero_out)
    ts = _times(gm.process, t_hats, "t_hats", allow_zero=False, above=float(t_out))
    return gm, pairs, sampler, key, ts


def _window_curve_of(
    ts: np.ndarray,
    r: dict,
    mass: np.ndarray,
    idx_i: np.ndarray,
    idx_t: np.ndarray,
    sampler: str,
    route: str,
    t_out: float,
) -> WindowCurve:
    """A :class:`WindowCurve` from the estimates ``r`` (keys ``tv, tv_se, ri, ri_se, rt, rt_se``)."""
    return WindowCurve(
        ts,
        r["tv"],
        r["tv_se"],
        r["ri"],
        r["ri_se"],
        r["rt"],
        r["rt_se"],
        mass,
        tuple(idx_i.tolist()),
        tuple(idx_t.tolist()),
        sampler,
        route,
        t_out,
    )


def window_curve(
    gm: GaussianMixture,
    s_init: Sequence[int] | ArrayLike,
    s_targ: Sequence[int] | ArrayLike,
    t_hats: ArrayOrSequence,
    *,
    key: jax.Array,
    sampler: str = "sde",
    n_outer: int = 20_000,
    inner: str = "auto",
    n_inner: int = 64,
    n_gh: int | None = None,
    t_out: float = 0.0,
    reduce: bool = True,
    chunk_size: int = 4096,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> WindowCurve:
    r"""Route (a): the exact window curve ``TV(p^{S_init, T_hat}, p^{S_targ})`` from the reweighting identity.

    ``TV = 1/2 E_{x ~ p_{t_out}} |g(x)/W_init - P_{t_out}(S_targ|x)/W_targ|`` with (module docstring)

    - SDE: ``g(x) = E[P_{T_hat}(S_init | X_{T_hat}) | X_{t_out} = x]``, ``X_{T_hat} = a x + b Z`` with the
      exact kernel ``(a, b) = process.transition(t_out, T_hat)``; the inner expectation by tensor
      Gauss-Hermite quadrature (dimension <= 2 after :func:`spherical_reduction`; ``n_gh`` nodes per axis,
      default 64 in 1-D and 20 in 2-D) or antithetic Monte Carlo with ``n_inner`` normals per point.
      Monte Carlo makes ``|.|`` biased upwards by ``O(1/n_inner)``;
      the estimate is corrected by ``2 TV_M - TV_{M/2}`` (split halves).
    - ODE: ``g(x) = P_{T_hat}(S_init | Phi_{t_out -> T_hat}(x))`` with :func:`diffsim.flow` (chained over the
      sorted ``t_hats``).

    The outer expectation uses ``n_outer`` exact samples of ``p_{t_out}``, stratified over components and
    shared by all ``T_hat`` (common random numbers). ``t_out`` is the time at which the output is compared
    with ``p^{S_targ}`` (0: data; use the sampler's end time to compare with simulations).

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`); its exact score drives the
            reverse process.
        s_init: the starting group ``S_init``: component indices or a boolean mask of shape ``(K,)``.
        s_targ: the target group ``S_targ``, a superset of ``s_init``, in the same form.
        t_hats: the noising times ``T_hat``, a scalar or 1-D array, each above ``t_out``.
        key: PRNG key for the outer samples and the inner Monte Carlo.
        sampler: ``"sde"`` (reverse SDE, default) or ``"ode"`` (probability-flow ODE).
        n_outer: number of exact outer samples of ``p_{t_out}`` (at least 8).
        inner: how ``g`` is computed for the SDE: ``"auto"`` (quadrature in dimension <= 2 after reduction,
            else Monte Carlo), ``"quadrature"`` or ``"monte_carlo"``; unused for the ODE.
        n_inner: Monte Carlo normals per outer point (rounded down to a multiple of 4, at least 4).
        n_gh: Gauss-Hermite nodes per axis (at least 2); ``None`` uses 64 in 1-D and 20 in 2-D.
        t_out: the output time (0 by default: the data).
        reduce: apply :func:`spherical_reduction` when the components share one ``s^2 I``.
        chunk_size: outer points per compiled batch (capped further by memory estimates).
        rtol: relative tolerance of the ODE flow map (``sampler="ode"`` only).
        atol: absolute tolerance of the ODE flow map (``sampler="ode"`` only).

    Returns:
        A :class:`WindowCurve` with ``route="identity"``.
    """
    gm, [(idx_i, idx_t)], sampler, key, ts = _curve_inputs(gm, s_init, [s_targ], t_hats, key, sampler, t_out)
    n_outer = check_positive_int(n_outer, "n_outer", minimum=8)
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    work, _ = _working(gm, reduce)
    dt = work.means.dtype
    k_outer, k_inner = jr.split(key)
    st = _strata(work, k_outer, n_outer, np.asarray(work.weights, float))
    x = _points(work, st, t_out)
    idx = jnp.arange(x.shape[0])
    m_i, m_t = _mask(work, idx_i), _mask(work, idx_t)
    w_i, w_t = _weight(work, idx_i), _weight(work, idx_t)
    t_out_arr = jnp.asarray(t_out, dt)
    p_init0 = np.asarray(_posteriors(work, t_out_arr, x, m_i), float)
    p_targ0 = np.asarray(_posteriors(work, t_out_arr, x, m_t), float)
    inner_fn = (
        _InnerExpectation(work, m_i, inner, n_inner, k_inner, chunk_size, n_gh) if sampler == "sde" else None
    )

    order = np.argsort(ts)
    res = {k: np.zeros(ts.size) for k in ("tv", "tv_se", "ri", "ri_se", "rt", "rt_se", "mass")}
    x_flow, t_prev = x, float(t_out)
    for j in order:
        t_hat = float(ts[j])
        if sampler == "sde":
            g, g1, g2 = (np.asarray(v, float) for v in inner_fn(t_out, t_hat, x, idx))
        else:
            x_flow = _flow(work, x_flow, t_prev, t_hat, rtol=rtol, atol=atol)
            t_prev = t_hat
            g = np.asarray(_posteriors(work, jnp.asarray(t_hat, dt), x_flow, m_i), float)
            g1 = g2 = g

        def u(gg):
            return np.abs(gg / w_i - p_targ0 / w_t)

        h = 0.5 * (2.0 * u(g) - 0.5 * (u(g1) + u(g2)))  # split-half bias correction (exact when g1 = g2 = g)
        res["tv"][j], res["tv_se"][j] = _strat_estimate(h, st)
        res["ri"][j], res["ri_se"][j] = _strat_estimate(g * p_init0 / w_i, st)
        res["rt"][j], res["rt_se"][j] = _strat_estimate(g * p_targ0 / w_i, st)
        res["mass"][j] = _strat_estimate(g / w_i, st)[0]
    return _window_curve_of(ts, res, res["mass"], idx_i, idx_t, sampler, "identity", float(t_out))


def simulated_window_curve(
    gm: GaussianMixture,
    s_init: Sequence[int] | ArrayLike,
    s_targ: Sequence[int] | ArrayLike,
    t_hats: ArrayOrSequence,
    *,
    key: jax.Array,
    **options: Any,
) -> WindowCurve:
    r"""Route (b) for one target ``s_targ``: :func:`simulated_window_curves` with ``s_targs=[s_targ]``.

    ``options`` are the keyword options of :func:`simulated_window_curves` (``sampler``, ``n_particles``,
    ``n_steps``, ``method``, ``grid``, ``t_out``, ``n_reference``, ``inner``, ``n_inner``, ``chunk_size`` and
    the sampler method's own options), with the same defaults. Compare with :func:`window_curve` at the same
    ``t_out``.

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`); its exact score drives the
            reverse process.
        s_init: the starting group ``S_init``: component indices or a boolean mask of shape ``(K,)``.
        s_targ: the target group ``S_targ``, a superset of ``s_init``.
        t_hats: the noising times ``T_hat``, a scalar or 1-D array, each above ``t_out``.
        key: PRNG key for the starting points, the simulations and the reference samples.

    Returns:
        A :class:`WindowCurve` with ``route="simulation"``.
    """
    return simulated_window_curves(gm, s_init, [s_targ], t_hats, key=key, **options)[0]


def simulated_window_curves(
    gm: GaussianMixture,
    s_init: Sequence[int] | ArrayLike,
    s_targs: Sequence[Sequence[int] | ArrayLike],
    t_hats: ArrayOrSequence,
    *,
    key: jax.Array,
    sampler: str = "sde",
    n_particles: int = 20_000,
    n_steps: int = 200,
    method: str | None = None,
    grid: str = "uniform",
    t_out: float | None = None,
    n_reference: int = 20_000,
    inner: str = "auto",
    n_inner: int = 64,
    chunk_size: int = 4096,
    **method_options: Any,
) -> tuple[WindowCurve, ...]:
    r"""Route (b): simulate noising-denoising with :func:`diffsim.noise_denoise` and measure the output.

    ``n_particles`` points of ``p^{S_init}`` are noised exactly to ``T_hat`` and denoised to ``t_out``
    (default ``process.t_min``) with ``method`` (``"ddpm"`` for ``sampler="sde"``, ``"dpm_solver_2m"`` for
    ``"ode"``) on ``n_steps`` steps. With the exact posteriors at ``t_out``:

    - retentions: sample means of ``P_{t_out}(S | Y)``;
    - TV: ``q(A) - p^{S_targ}_{t_out}(A)`` for ``A = {y: g(y)/W_init > P_{t_out}(S_targ|y)/W_targ}``, where
      ``q(A)`` is the fraction of simulated outputs in ``A`` and ``p^{S_targ}(A) = E_p[P(S_targ|x) 1_A(x)]
      / W_targ`` uses ``n_reference`` exact samples. For the SDE, ``g`` is evaluated as in
      :func:`window_curve`; for the ODE, ``g(Y) = P_{T_hat}(S_init | X_{T_hat})`` with the simulation's own
      starting point (the sampler's inverse map) and the reference set is evaluated on simulated outputs of
      ``p_{T_hat}``. For any ``A`` this is a lower bound on the TV of the simulated law; it equals the TV when
      ``A`` is the optimal set.

    Every target of ``s_targs`` (each containing ``s_init``) is measured on the same simulations (one
    noising-denoising run per ``T_hat``); :func:`simulated_window_curve` is the one-target form. Compare
    with :func:`window_curve` at the same ``t_out``.

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`); its exact score drives the
            reverse process.
        s_init: the starting group ``S_init``: component indices or a boolean mask of shape ``(K,)``.
        s_targs: a non-empty list (or tuple) of target groups, each a superset of ``s_init``.
        t_hats: the noising times ``T_hat``, a scalar or 1-D array, each above ``t_out``.
        key: PRNG key for the starting points, the simulations and the reference samples.
        sampler: ``"sde"`` (default) or ``"ode"``; selects the default ``method`` and how ``g`` is evaluated.
        n_particles: simulated particles per ``T_hat`` (at least 8).
        n_steps: reverse steps from ``T_hat`` to ``t_out``.
        method: sampler method name; ``None`` uses ``"ddpm"`` (SDE) or ``"dpm_solver_2m"`` (ODE).
        grid: time grid of the reverse run, ``"uniform"`` or ``"logsnr"``.
        t_out: end time of the simulations (must be positive); ``None`` uses ``process.t_min``.
        n_reference: exact reference samples for ``p^{S_targ}(A)`` (at least 8).
        inner: how ``g`` is computed for the SDE, as in :func:`window_curve`.
        n_inner: Monte Carlo normals per point for ``g`` (SDE only).
        chunk_size: points per compiled batch for ``g``.

    Returns:
        One :class:`WindowCurve` per target, in the order of ``s_targs``.
    """
    if isinstance(s_targs, (str, bytes)) or not isinstance(s_targs, (list, tuple)) or not s_targs:
        raise ValueError("`s_targs` must be a non-empty list of component groups.")
    gm = _check_mixture(gm)
    p = gm.process
    t_out = p.t_min if t_out is None else float(t_out)
    gm, pairs, sampler, key, ts = _curve_inputs(
        gm, s_init, s_targs, t_hats, key, sampler, t_out, allow_zero_out=False
    )
    idx_i = pairs[0][0]
    n_particles = check_positive_int(n_particles, "n_particles", minimum=8)
    n_reference = check_positive_int(n_reference, "n_reference", minimum=8)
    if method is None:
        method = "ddpm" if sampler == "sde" else "dpm_solver_2m"
    work, basis = _working(gm, True)
    dt = gm.means.dtype
    m_i, w_i = _mask(work, idx_i), _weight(work, idx_i)
    targets = [(_mask(work, it), _weight(work, it)) for _, it in pairs]
    k_init, k_sim, k_ref, k_inner, k_inner_ref = jr.split(key, 5)
    x0, _ = _restrict(gm, idx_i).sample(k_init, n_particles)
    inner_fn = _InnerExpectation(work, m_i, inner, n_inner, k_inner, chunk_size) if sampler == "sde" else None
    inner_ref = (
        _InnerExpectation(work, m_i, inner, n_inner, k_inner_ref, chunk_size) if sampler == "sde" else None
    )
    t_out_arr = jnp.asarray(t_out, dt)
    if sampler == "sde":
        st_ref = _strata(work, k_ref, n_reference, np.asarray(work.weights, float))
        x_ref = _points(work, st_ref, t_out)
        pt_ref_all = [np.asarray(_posteriors(work, t_out_arr, x_ref, m_t), float) for m_t, _ in targets]
    else:
        st_ref = _strata(gm, k_ref, n_reference, np.asarray(gm.weights, float))

    res = [{k: np.zeros(ts.size) for k in ("tv", "tv_se", "ri", "ri_se", "rt", "rt_se")} for _ in targets]
    for j, t_hat in enumerate(ts):
        t_hat = float(t_hat)
        traj = _noise_denoise(
            gm,
            x0,
            t_hat,
            key=k_sim,
            method=method,
            n_steps=n_steps,
            grid=grid,
            t_end=t_out,
            save=[0, n_steps],
            **method_options,
        )
        y = _project(jnp.asarray(traj.x), basis)
        pi_y = np.asarray(_posteriors(work, t_out_arr, y, m_i), float)
        if sampler == "sde":
            g_y = np.asarray(inner_fn(t_out, t_hat, y, jnp.arange(y.shape[0]))[0], float)
            g_ref = np.asarray(inner_ref(t_out, t_hat, x_ref, jnp.arange(x_ref.shape[0]))[0], float)
            pt_ref_list = pt_ref_all
        else:
            x_start = _project(jnp.asarray(traj.xs[0]), basis)
            g_y = np.asarray(_posteriors(work, jnp.asarray(t_hat, dt), x_start, m_i), float)
            xs_ref = _points(gm, st_ref, t_hat)  # exact draws of p_{t_hat} in the full space
            grid_ref = _reference_grid(p, t_hat, t_out, n_steps, grid, dt)
            y_ref = _project(
                jnp.asarray(_simulate(gm, method, grid_ref, x=xs_ref, key=k_sim, **method_options).x), basis
            )
            g_ref = np.asarray(_posteriors(work, jnp.asarray(t_hat, dt), _project(xs_ref, basis), m_i), float)
            pt_ref_list = [np.asarray(_posteriors(work, t_out_arr, y_ref, m_t), float) for m_t, _ in targets]
        for r, (m_t, w_t), pt_ref in zip(res, targets, pt_ref_list, strict=False):
            pt_y = np.asarray(_posteriors(work, t_out_arr, y, m_t), float)
            in_a = (g_y / w_i > pt_y / w_t).astype(float)
            nu, nu_se = _strat_estimate(pt_ref * (g_ref / w_i > pt_ref / w_t) / w_t, st_ref)
            r["tv"][j] = in_a.mean() - nu
            r["tv_se"][j] = math.sqrt(in_a.var(ddof=1) / in_a.size + nu_se**2)
            r["ri"][j], r["ri_se"][j] = pi_y.mean(), pi_y.std(ddof=1) / math.sqrt(pi_y.size)
            r["rt"][j], r["rt_se"][j] = pt_y.mean(), pt_y.std(ddof=1) / math.sqrt(pt_y.size)
    return tuple(
        _window_curve_of(ts, r, np.full(ts.size, np.nan), idx_i, it, sampler, "simulation", t_out)
        for r, (_, it) in zip(res, pairs, strict=False)
    )


def _reference_grid(process, t_hat, t_out, n_steps, grid, dtype):
    if grid == "uniform":
        return jnp.linspace(t_hat, t_out, n_steps + 1, dtype=dtype)
    if grid == "logsnr":
        lam = jnp.linspace(
            process.log_snr(jnp.asarray(t_hat, dtype)),
            process.log_snr(jnp.asarray(t_out, dtype)),
            n_steps + 1,
        )
        return process.t_from_log_snr(lam).at[0].set(t_hat).at[-1].set(t_out)
    raise ValueError(f"Unknown grid kind {grid!r}; use 'uniform' or 'logsnr'.")


def compare_routes(
    gm: GaussianMixture,
    s_init: Sequence[int] | ArrayLike,
    s_targs: Sequence[Sequence[int] | ArrayLike],
    t_hats: ArrayOrSequence,
    *,
    key: jax.Array,
    sampler: str = "sde",
    n_particles: int = 20_000,
    n_steps: int = 200,
    **curve_options: Any,
) -> tuple[tuple[WindowCurve, WindowCurve], ...]:
    """Route (a) beside route (b) for each target of ``s_targs``, both at the simulation's end time
    ``t_out = process.t_min``: ``((identity, simulation), ...)``.

    Route (b) is :func:`simulated_window_curves` with ``n_particles`` particles (and as many reference
    samples) on ``n_steps`` steps, key ``fold_in(key, 2)``; route (a) is :func:`window_curve` with
    ``curve_options``, key ``fold_in(key, 1)``. The inner Monte Carlo size ``n_inner`` (default 64) is shared.

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`); its exact score drives the
            reverse process.
        s_init: the starting group ``S_init``: component indices or a boolean mask of shape ``(K,)``.
        s_targs: a non-empty list of target groups, each a superset of ``s_init``.
        t_hats: the noising times ``T_hat``, each above ``process.t_min``.
        key: PRNG key; the two routes use keys folded from it.
        sampler: ``"sde"`` (default) or ``"ode"``, for both routes.
        n_particles: particles and reference samples of route (b).
        n_steps: reverse steps of route (b).

    Returns:
        One ``(identity, simulation)`` pair of :class:`WindowCurve` per target, in the order of ``s_targs``.
    """
    sims = simulated_window_curves(
        gm,
        s_init,
        s_targs,
        t_hats,
        key=jr.fold_in(key, 2),
        sampler=sampler,
        n_particles=n_particles,
        n_steps=n_steps,
        n_reference=n_particles,
        n_inner=curve_options.get("n_inner", 64),
    )
    t_out = gm.process.t_min
    return tuple(
        (
            window_curve(
                gm, s_init, st, t_hats, key=jr.fold_in(key, 1), sampler=sampler, t_out=t_out, **curve_options
            ),
            b,
        )
        for st, b in zip(s_targs, sims, strict=True)
    )
