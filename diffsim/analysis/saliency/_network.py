r"""Saliency that reads a UNet's internals: Grad-CAM on its feature maps and the relevance of its token
cross-attention, both combined over the two guidance passes (Park et al. 2024)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from ..._validation import as_float_array
from ...scores import convert_parametrisation
from ...scores.guidance import check_scale
from ...scores.nn import UNetScore, check_tokens
from .._concept_checks import _check_time, _point


GRAD_CAM_TARGETS = ("guidance_energy", "sum_eps")


def _upsample(m: Array, shape: tuple[int, int]) -> Array:
    if tuple(m.shape) == tuple(shape):
        return m
    return jax.image.resize(m, shape, "linear")


def _guidance_energy(eps_u, eps_c):
    return 0.5 * jnp.sum((eps_c - eps_u) ** 2)


def _sum_eps(eps_u, eps_c):
    return jnp.sum(eps_u) + jnp.sum(eps_c)


def _target_fn(target):
    if callable(target):
        return target
    if target == "guidance_energy":
        return _guidance_energy
    if target == "sum_eps":
        return _sum_eps
    raise ValueError(
        f"`target` must be one of {GRAD_CAM_TARGETS} or a callable target(eps_u, eps_c), got {target!r}."
    )


def _check_unet(net) -> UNetScore:
    if not isinstance(net, UNetScore):
        raise TypeError(
            f"This method needs a UNetScore (feature maps and attention), got {type(net).__name__}."
        )
    return net


def _scale(scale, dtype):
    """The guidance scale ``w`` (diffsim convention, ``>= 0`` and finite) as an array of ``dtype``."""
    check_scale(scale)
    return jnp.asarray(scale, dtype)


def _pair_tokens(net, tokens, unconditional):
    tc = check_tokens(tokens, net.alphabet_sizes)
    tu = (
        net.null_tokens
        if unconditional is None
        else check_tokens(unconditional, net.alphabet_sizes, "unconditional")
    )
    if tc.ndim != 1 or tu.ndim != 1:
        raise ValueError("`tokens` and `unconditional` must be single token vectors.")
    return tc, tu


def _eps_out(net, t, x, tok, offsets):
    out = net.raw(t, x, tok, feature_offsets=offsets)
    return convert_parametrisation(net.process, t, x, out, net.parametrisation, "eps")


class GradCAM(eqx.Module):
    """Grad-CAM maps (returned by :func:`grad_cam`).

    Attributes:
        maps: ``(L, H, W)`` one map per layer, ReLU'd and scaled to max 1, on the image grid.
        combined: ``(H, W)`` their sum (Paper D sums the per-layer maps).
        native: ``{layer: map}`` per-layer maps at the layer's own resolution, before scaling.
        layers: the ``L`` layer names, in the order of ``maps``.
    """

    maps: Array
    combined: Array
    native: dict
    layers: tuple[str, ...] = eqx.field(static=True)


def grad_cam(
    net: UNetScore,
    t: float,
    x: Float[ArrayLike, " d"],
    tokens: Int[ArrayLike, " n"],
    *,
    unconditional: Int[ArrayLike, " n"] | None = None,
    scale: float = 1.0,
    layers: Sequence[str] | None = None,
    target: str | Callable = "guidance_energy",
) -> GradCAM:
    r"""Grad-CAM (Selvaraju et al. 2017) on the UNet's feature maps, combined over the two guidance passes
    as in Park et al. (2024): the conditional pass (``tokens``) and the unconditional one
    (``unconditional``, default all null; pass the tokens with one slot nulled for a per-token map) give
    activations ``A_c, A_u`` and gradients ``g_c = dT/dA_c``, ``g_u = dT/dA_u`` of a scalar target
    ``T(eps_u, eps_c)``; then

        g = g_u + w (g_c - g_u),  A = A_u + w (A_c - A_u),  alpha_ch = mean_pixels g_ch,  (w = scale)
        map = ReLU(sum_ch alpha_ch A_ch),

    bilinearly upsampled to the image and scaled to max 1 per layer. Targets: ``"guidance_energy"``
    ``1/2 |eps_c - eps_u|^2`` (the conditional MMSE gap; default), ``"sum_eps"`` (Paper D's
    ``sum(eps_u) + sum(eps_c)``) or a callable. Gradients w.r.t. activations are gradients w.r.t. zero
    ``feature_offsets`` of :meth:`UNetScore.raw`.

    Args:
        net: the token-conditioned :class:`~diffsim.scores.nn.UNetScore`.
        t: the time, in ``(0, t_max]``.
        x: one state, ``(d,)``.
        tokens: ``(n,)`` the conditional pass's tokens.
        unconditional: ``(n,)`` the unconditional pass's tokens; ``None`` (default) for all null tokens.
        scale: guidance scale ``w`` combining the passes (default 1: the conditional pass).
        layers: names of the feature maps used (a subset of ``net.feature_names``); ``None`` for all.
        target: ``"guidance_energy"`` (default), ``"sum_eps"`` or a callable ``T(eps_u, eps_c) -> scalar``.
    """
    net = _check_unet(net)
    tt = _check_time(net.process, t)
    xv = _point(x, dim=net.dim)
    tc, tu = _pair_tokens(net, tokens, unconditional)
    names = tuple(n for n in net.feature_names) if layers is None else tuple(layers)
    bad = [n for n in names if n not in net.feature_names]
    if bad or not names:
        raise ValueError(f"Unknown `layers` {bad or names}; the UNet's feature maps are {net.feature_names}.")
    tfn = _target_fn(target)
    return _grad_cam_jit(net, tt.astype(xv.dtype), xv, tc, tu, _scale(scale, xv.dtype), names, tfn)


@eqx.filter_jit
def _grad_cam_jit(net, t, x, tc, tu, w, names, tfn):
    fc = net.features(t, x, tc)
    fu = net.features(t, x, tu)
    zeros = {n: jnp.zeros_like(fc[n]) for n in names}

    def obj(oc, ou):
        return tfn(_eps_out(net, t, x, tu, ou), _eps_out(net, t, x, tc, oc))

    gc, gu = jax.grad(obj, argnums=(0, 1))(zeros, zeros)
    _, hh, ww = net.image_shape
    maps, native = [], {}
    for n in names:
        g = gu[n] + w * (gc[n] - gu[n])
        a = fu[n] + w * (fc[n] - fu[n])
        alpha = jnp.mean(g, axis=(0, 1))
        cam = jax.nn.relu(jnp.einsum("hwc,c->hw", a, alpha))
        native[n] = cam
        up = _upsample(cam, (hh, ww))
        maps.append(up / jnp.maximum(jnp.max(up), 1e-12))
    maps = jnp.stack(maps)
    return GradCAM(maps, maps.sum(0), native, names)


class AttentionRelevance(eqx.Module):
    r"""Relevance of the UNet's token cross-attention (one layer; returned by :func:`attention_relevance`).
    ``P`` is the number of pixels of the attention layer; the last of the ``n + 1`` keys is the time /
    no-token key; ``A_bar = mean_heads (grad A * A)^+``.

    Attributes:
        weights: ``(P, n + 1)`` head-mean attention ``A`` (guidance-combined).
        product: ``(P, n + 1)`` head-mean ``grad A * A`` before the positive part.
        relevance: ``(n + 1,)`` ``sum_p A_bar[p, k]``.
        maps: ``(n + 1, H, W)`` ``A_bar[:, k]`` upsampled to the image.
        attention_maps: ``(n + 1, H, W)`` the raw head-mean attention, upsampled.
    """

    weights: Array
    product: Array
    relevance: Array
    maps: Array
    attention_maps: Array


def attention_relevance(
    net: UNetScore,
    t: float,
    x: Float[ArrayLike, " d"],
    tokens: Int[ArrayLike, " n"],
    *,
    unconditional: Int[ArrayLike, " n"] | None = None,
    scale: float = 1.0,
    target: str | Callable = "guidance_energy",
) -> AttentionRelevance:
    r"""Chefer et al. (2021)'s gradient-weighted attention relevance on the UNet's token cross-attention
    layer, guidance-combined like :func:`grad_cam`. With a single cross-attention layer (and no text
    encoder or self-attention) the relevance rules reduce to ``R_iq = A_bar = mean_heads (grad A * A)^+``;
    a token's relevance is ``sum_pixels A_bar[:, k]``.

    ``grad A`` is obtained without touching the network's code: with ``G = dT/dh_out`` the gradient at the
    layer's output (a zero feature offset on ``"attention"``), ``h_out = h + W_o (A V) + b_o`` gives
    ``dT/dA[h, p, k] = sum_e (W_o^T G_p)[h, e] V[k, h, e]`` with ``V = W_v keys``.

    Args:
        net: the token-conditioned :class:`~diffsim.scores.nn.UNetScore` (with a cross-attention layer).
        t: the time, in ``(0, t_max]``.
        x: one state, ``(d,)``.
        tokens: ``(n,)`` the conditional pass's tokens.
        unconditional: ``(n,)`` the unconditional pass's tokens; ``None`` (default) for all null tokens.
        scale: guidance scale ``w`` combining the passes (default 1: the conditional pass).
        target: ``"guidance_energy"`` (default), ``"sum_eps"`` or a callable ``T(eps_u, eps_c) -> scalar``.
    """
    net = _check_unet(net)
    if net.attn is None:
        raise ValueError("This UNet has no token cross-attention layer (attention=False or no tokens).")
    tt = _check_time(net.process, t)
    xv = _point(x, dim=net.dim)
    tc, tu = _pair_tokens(net, tokens, unconditional)
    return _attention_jit(net, tt.astype(xv.dtype), xv, tc, tu, _scale(scale, xv.dtype), _target_fn(target))


def _attention_grad(net, t, x, tok, g_out):
    """(A, dT/dA) of one pass, given dT/dh_out (the gradient at the attention layer's output)."""
    feats = net.features(t, x, tok)
    a = feats["attention_weights"]  # (heads, P, K)
    heads = net.attn.n_heads
    hh, ww, ch = g_out.shape
    dh = ch // heads
    emb = jnp.stack([tab[tok[j]] for j, tab in enumerate(net.embed.tokens.tables)]).astype(x.dtype)
    keys = jnp.concatenate([emb, net.time_key[None, :].astype(x.dtype)], axis=0)
    v = jax.vmap(net.attn.v)(keys).reshape(keys.shape[0], heads, dh)  # (K, heads, dh)
    gp = g_out.reshape(hh * ww, ch) @ net.attn.o.weight.astype(x.dtype)  # (P, ch) = (W_o^T G_p)
    gp = gp.reshape(hh * ww, heads, dh)
    grad_a = jnp.einsum("phe,khe->hpk", gp, v)
    return a, grad_a


def _attention_core(net, t, x, tc, tu, w, tfn):
    zc = jnp.zeros_like(net.features(t, x, tc)["attention"])

    def obj(oc, ou):
        return tfn(_eps_out(net, t, x, tu, {"attention": ou}), _eps_out(net, t, x, tc, {"attention": oc}))

    gc, gu = jax.grad(obj, argnums=(0, 1))(zc, zc)
    ac, dac = _attention_grad(net, t, x, tc, gc)
    au, dau = _attention_grad(net, t, x, tu, gu)
    a = au + w * (ac - au)
    da = dau + w * (dac - dau)
    prod = jnp.mean(da * a, axis=0)  # (P, K)
    abar = jax.nn.relu(prod)
    hh, ww = zc.shape[:2]
    _, ih, iw = net.image_shape
    maps = jax.vmap(lambda m: _upsample(m.reshape(hh, ww), (ih, iw)))(abar.T)
    amaps = jax.vmap(lambda m: _upsample(m.reshape(hh, ww), (ih, iw)))(jnp.mean(a, 0).T)
    return AttentionRelevance(jnp.mean(a, 0), prod, abar.sum(0), maps, amaps)


@eqx.filter_jit
def _attention_jit(net, t, x, tc, tu, w, tfn):
    return _attention_core(net, t, x, tc, tu, w, tfn)


@eqx.filter_jit
def _attention_path_jit(net, ts, xs, tc, tu, w, tfn):
    return jax.vmap(lambda t, x: _attention_core(net, t, x, tc, tu, w, tfn).relevance)(ts, xs)


def attention_relevance_path(
    net: UNetScore,
    ts: Float[ArrayLike, " S"],
    xs: Float[ArrayLike, "S d"],
    tokens: Int[ArrayLike, " n"],
    *,
    unconditional: Int[ArrayLike, " n"] | None = None,
    scale: float = 1.0,
    target: str | Callable = "guidance_energy",
) -> Float[Array, "S n1"]:
    """The token relevances ``sum_p A_bar[p, k]`` of :func:`attention_relevance` at every step ``(t_s, x_s)``
    of a path (e.g. a trajectory), vectorised: ``(S, n + 1)`` (last column: the time key).

    Args:
        net: the token-conditioned :class:`~diffsim.scores.nn.UNetScore` (with a cross-attention layer).
        ts: ``(S,)`` the path's times (in ``(0, t_max]``).
        xs: ``(S, d)`` the path's states, one per time.
        tokens: ``(n,)`` the conditional pass's tokens.
        unconditional: ``(n,)`` the unconditional pass's tokens; ``None`` (default) for all null tokens.
        scale: guidance scale ``w`` combining the passes.
        target: ``"guidance_energy"`` (default), ``"sum_eps"`` or a callable ``T(eps_u, eps_c) -> scalar``.
    """
    net = _check_unet(net)
    if net.attn is None:
        raise ValueError("This UNet has no token cross-attention layer (attention=False or no tokens).")
    tv = as_float_array(ts, "ts", ndim=1)
    net.process.check_time(tv, "ts", allow_zero=False)
    xv = as_float_array(xs, "xs", ndim=2)
    if xv.shape != (tv.shape[0], net.dim):
        raise ValueError(
            f"`xs` must have shape ({tv.shape[0]}, {net.dim}) (one state per time), got {xv.shape}."
        )
    tc, tu = _pair_tokens(net, tokens, unconditional)
    return _attention_path_jit(
        net, tv.astype(xv.dtype), xv, tc, tu, _scale(scale, xv.dtype), _target_fn(target)
    )
