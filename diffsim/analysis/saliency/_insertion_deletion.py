r"""Insertion and deletion games with a per-sample normalised AUC, a random-order floor and a greedy
oracle-order ceiling."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import ArrayLike, Float

from ..._validation import as_float_array, check_key, check_positive_int
from .._concept_checks import _image_shape


class InsertionDeletion(eqx.Module):
    """Insertion or deletion game results (numpy; returned by :func:`insertion_deletion`).

    Attributes:
        mode: ``"insertion"`` or ``"deletion"``.
        fractions: ``(K + 1,)`` fraction of pixels revealed (insertion) or removed (deletion).
        curves: ``{method: (N, K + 1)}`` fidelity curves, plus ``"random"`` (mean over random orders) and
            ``"oracle"`` (greedy order; only with ``oracle=True``).
        auc: ``{method: (N,)}`` normalised trapezoid AUC per sample (also for random and oracle).
        score: ``{method: (N,)}`` ``(AUC - random) / (oracle - random)`` per sample (1 = oracle, 0 =
            random; for deletion both differences are negative, so the same formula applies; NaN where
            they coincide); empty without the oracle.
        summary: ``{method: {"auc", "auc_se", "score", "score_se"}}`` means over samples and their
            standard errors (the score entries only with the oracle).
    """

    mode: str
    fractions: np.ndarray
    curves: dict
    auc: dict
    score: dict
    summary: dict


def normalised_auc(curve: Float[ArrayLike, "*b K1"]) -> np.ndarray | float:
    """Normalised trapezoid AUC over equally spaced fractions in ``[0, 1]``:
    ``(sum a - a_0/2 - a_K/2) / K`` (X-Diffusion's formula, applied per curve).

    Args:
        curve: ``(..., K + 1)`` curves sampled at ``K + 1 >= 2`` equally spaced fractions.

    Returns:
        The AUC of each curve, of the leading shape.
    """
    c = np.asarray(curve, float)
    if c.shape[-1] < 2:
        raise ValueError("A curve needs at least 2 points.")
    k = c.shape[-1] - 1
    return (c.sum(-1) - 0.5 * c[..., 0] - 0.5 * c[..., -1]) / k


def _reveal_masks(order, n_pix, stride, k_steps):
    """(K+1, d) masks: row k reveals the first min(k * stride, d) pixels of ``order``."""
    rank = jnp.zeros(n_pix, jnp.int32).at[order].set(jnp.arange(n_pix, dtype=jnp.int32))
    counts = jnp.minimum(jnp.arange(k_steps + 1) * stride, n_pix)
    return rank.astype(counts.dtype)[None, :] < counts[:, None]


def _fidelity(fn, x, ctx, base, inputs):
    """1 - |f(x') - f(x)|^2 / |f(base) - f(x)|^2 for inputs (M, d)."""

    def call(v):
        return fn(v, ctx)

    ref = call(x)
    den = jnp.maximum(jnp.sum((call(base) - ref) ** 2), 1e-12)
    out = jax.lax.map(call, inputs, batch_size=min(256, inputs.shape[0]))
    return 1.0 - jnp.sum((out - ref[None]) ** 2, axis=-1) / den


def _curve_for_order(fn, x, ctx, base, order, insertion, stride, k_steps):
    """Fidelity curve of one pixel order; ``insertion`` is a traced boolean (one compilation for both
    games)."""
    rev = _reveal_masks(order, x.shape[0], stride, k_steps).astype(x.dtype)
    ins = rev * x[None] + (1 - rev) * base[None]
    dele = rev * base[None] + (1 - rev) * x[None]
    return _fidelity(fn, x, ctx, base, jnp.where(insertion, ins, dele))


def _greedy_ranks(fn, x, ctx, base, op, pick, stride, k_steps):
    """Greedy pixel sequence: starting from the baseline (``op="insert"``: taken pixels are set to ``x``) or
    from ``x`` (``op="delete"``: taken pixels are set to the baseline), take at each step the ``stride``
    pixels whose individual move gives the highest (``pick="max"``) or lowest (``"min"``) fidelity. Returns
    ``(d,)`` the step at which each pixel is taken."""
    d = x.shape[0]

    def call(v):
        return fn(v, ctx)

    ref = call(x)
    den = jnp.maximum(jnp.sum((call(base) - ref) ** 2), 1e-12)
    eye = jnp.eye(d, dtype=x.dtype)

    def fid(inp):
        out = jax.lax.map(call, inp, batch_size=min(256, inp.shape[0]))
        return 1.0 - jnp.sum((out - ref[None]) ** 2, axis=-1) / den

    def compose(done):  # done: (d,) 0/1 pixels already taken
        return done * x + (1 - done) * base if op == "insert" else done * base + (1 - done) * x

    def body(carry, k):
        done, rank = carry
        f = fid(jax.vmap(compose)(jnp.clip(done[None, :] + eye, 0, 1)))
        gain = jnp.where(done > 0, -jnp.inf, f if pick == "max" else -f)
        take = jnp.argsort(-gain)[:stride]
        rank = rank.at[take].set(jnp.where(done[take] == 0, k, rank[take]))
        return (done.at[take].set(1.0), rank), None

    init = (jnp.zeros(d, x.dtype), jnp.full(d, k_steps, jnp.int32))
    (_, rank), _ = jax.lax.scan(body, init, jnp.arange(k_steps, dtype=jnp.int32))
    return rank


def _oracle_orders(fn, x, ctx, base, stride, k_steps):
    """Four greedy orders (forward and backward, for each game): ``(4, d)`` pixel orders."""
    fwd_ins = _greedy_ranks(fn, x, ctx, base, "insert", "max", stride, k_steps)  # add the most helpful first
    fwd_del = _greedy_ranks(
        fn, x, ctx, base, "delete", "min", stride, k_steps
    )  # remove the most harmful first
    bwd_ins = _greedy_ranks(
        fn, x, ctx, base, "delete", "max", stride, k_steps
    )  # least harmful removed first = inserted last
    bwd_del = _greedy_ranks(
        fn, x, ctx, base, "insert", "min", stride, k_steps
    )  # least helpful added first = deleted last
    return jnp.stack(
        [
            jnp.argsort(fwd_ins, stable=True),
            jnp.argsort(fwd_del, stable=True),
            jnp.argsort(-bwd_ins, stable=True),
            jnp.argsort(-bwd_del, stable=True),
        ]
    )


@eqx.filter_jit
def _id_batch(fn, xs, ctx, base, orders, insertion, stride, k_steps, n_random, key, oracle):
    def per_sample(i, x, c, b, ords):
        def curve(o):
            return _curve_for_order(fn, x, c, b, o, insertion, stride, k_steps)

        curves = jax.vmap(curve)(ords)
        rand_orders = jax.vmap(lambda k: jr.permutation(k, x.shape[0]))(
            jr.split(jr.fold_in(key, i), n_random)
        )
        rand = jax.vmap(curve)(rand_orders)
        if oracle:  # the four greedy orders, evaluated in this game
            orc = jax.vmap(curve)(_oracle_orders(fn, x, c, b, stride, k_steps))
        else:
            orc = jnp.zeros((4, k_steps + 1), x.dtype)
        return curves, rand, orc

    idx = jnp.arange(xs.shape[0])
    return jax.lax.map(lambda a: per_sample(*a), (idx, xs, ctx, base, orders))


class _IgnoreContext(eqx.Module):
    fn: Callable

    def __call__(self, v, c):
        return self.fn(v)


def insertion_deletion(
    fn: Callable,
    x: Float[ArrayLike, "N d"],
    saliency: Mapping[str, ArrayLike],
    key: jax.Array,
    *,
    mode: str = "insertion",
    context: Any = None,
    baseline: float | ArrayLike = 0.0,
    stride: int = 1,
    n_random: int = 16,
    oracle: bool = True,
    image_shape: Sequence[int] | None = None,
) -> InsertionDeletion:
    r"""Insertion or deletion game for ``N`` inputs (module docstring, section 5).

    The fidelity is ``1 - |f(x') - f(x)|^2 / |f(baseline) - f(x)|^2`` (0 at the baseline, 1 at ``x``).
    Random orders give the floor; the oracle the ceiling: the best, in this game, of four greedy orders built
    with full access to ``f`` (``4 K d`` evaluations per sample): forward (add the ``stride`` pixels that
    raise the fidelity most / remove those that lower it most) and backward (from the other end: remove the
    least harmful pixels first and insert them last / add the least helpful first and delete them last).
    Forward single-pixel steps are myopic when pixels are redundant (a region's evidence needs several of
    its pixels: removing one changes nothing); the backward ones start where each pixel matters alone. The
    oracle is a strong reference, not a proven optimum (the exact optimum is a search over all orders).

    Args:
        fn: ``f(x)`` of one input ``(d,)`` (or ``f(x, c)`` with ``c = context[i]`` when ``context`` is
            given), e.g. the one-step prediction ``x0_hat(t, .)`` at the analysed step.
        x: ``(N, d)`` the inputs.
        saliency: ``{method: maps (N, d) or (N, H, W)}`` (finite; names ``"random"`` and ``"oracle"`` are
            reserved); pixels are ranked by decreasing saliency.
        key: PRNG key of the random orders.
        mode: ``"insertion"`` (default; start from ``baseline``, reveal ``x``) or ``"deletion"`` (start from
            ``x``, set pixels to ``baseline``).
        context: a per-sample pytree with leading axis ``N`` passed to ``fn``; ``None`` (default) calls
            ``f(x)``.
        baseline: the value of hidden pixels, a scalar or ``(d,)`` / ``(N, d)`` (default 0).
        stride: pixels per step (``K = ceil(d / stride)`` steps).
        n_random: random orders per sample (the floor).
        oracle: also run the greedy oracle (the ceiling; needed for ``score``).
        image_shape: ``(H, W)`` of the maps when they are passed as ``(N, H, W)``; ``None`` for flat maps.

    Each sample's AUC is normalised on its own; nothing is min-max normalised across the dataset.
    """
    if mode not in ("insertion", "deletion"):
        raise ValueError(f"`mode` must be 'insertion' or 'deletion', got {mode!r}.")
    key = check_key(key)
    xs = as_float_array(x, "x", ndim=2)
    n, d = xs.shape
    if not isinstance(saliency, Mapping) or not saliency:
        raise TypeError("`saliency` must be a non-empty mapping {method name: maps (N, d)}.")
    for reserved in ("random", "oracle"):
        if reserved in saliency:
            raise ValueError(f"`saliency` may not use the reserved method name {reserved!r}.")
    hw = None if image_shape is None else _image_shape(image_shape, d)
    names = list(saliency)
    orders = []
    for name in names:
        s = np.asarray(saliency[name], float)
        if s.shape == (n, d):
            pass
        elif hw is not None and s.shape == (n,) + tuple(hw):
            s = s.reshape(n, d)
        else:
            want = f"({n}, {d})" + ("" if hw is None else f" or ({n}, {hw[0]}, {hw[1]})")
            raise ValueError(f"saliency[{name!r}] must have shape {want} (one map per input), got {s.shape}.")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"saliency[{name!r}] contains non-finite values.")
        orders.append(np.argsort(-s, axis=1, kind="stable"))
    orders_arr = jnp.asarray(np.stack(orders, axis=1), jnp.int32)  # (N, M, d)
    stride = check_positive_int(stride, "stride")
    n_random = check_positive_int(n_random, "n_random")
    k_steps = -(-d // stride)
    base = jnp.broadcast_to(jnp.asarray(baseline, xs.dtype), (n, d))
    ctx = context
    if ctx is not None:
        leaves = jax.tree.leaves(ctx)
        if any(jnp.shape(v)[0] != n for v in leaves):
            raise ValueError(f"Every leaf of `context` must have leading axis N = {n}.")
    else:
        ctx = jnp.zeros((n,))  # placeholder, ignored
    fn_used = fn if context is not None else _IgnoreContext(fn)
    curves, rand, orc = _id_batch(
        fn_used,
        xs,
        ctx,
        base,
        orders_arr,
        jnp.asarray(mode == "insertion"),
        stride,
        k_steps,
        n_random,
        key,
        bool(oracle),
    )
    curves, rand, orc = np.asarray(curves), np.asarray(rand), np.asarray(orc)
    frac = np.minimum(np.arange(k_steps + 1) * stride, d) / d
    out_curves = {name: curves[:, j] for j, name in enumerate(names)}
    out_curves["random"] = rand.mean(1)
    auc = {name: normalised_auc(c) for name, c in out_curves.items()}
    auc["random"] = normalised_auc(rand).mean(1)  # mean AUC over random orders (= AUC of the mean curve)
    if oracle:
        orc_auc = normalised_auc(orc)  # (N, 4): the greedy orders
        best = np.argmax(orc_auc, 1) if mode == "insertion" else np.argmin(orc_auc, 1)
        out_curves["oracle"] = orc[np.arange(n), best]
        auc["oracle"] = orc_auc[np.arange(n), best]
    score = {}
    if oracle:
        den = auc["oracle"] - auc["random"]
        for name in names + ["random", "oracle"]:
            with np.errstate(invalid="ignore", divide="ignore"):
                score[name] = np.where(
                    np.abs(den) > 1e-9,
                    (auc[name] - auc["random"]) / np.where(np.abs(den) > 1e-9, den, 1.0),
                    np.nan,
                )
    summary = {}
    for name, a in auc.items():
        row = {
            "auc": float(np.mean(a)),
            "auc_se": float(np.std(a, ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        }
        if name in score:
            sc = score[name][np.isfinite(score[name])]
            row["score"] = float(np.mean(sc)) if sc.size else float("nan")
            row["score_se"] = float(np.std(sc, ddof=1) / math.sqrt(sc.size)) if sc.size > 1 else float("nan")
        summary[name] = row
    return InsertionDeletion(mode, frac, out_curves, auc, score, summary)
