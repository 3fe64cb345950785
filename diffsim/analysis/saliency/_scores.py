r"""Scores of saliency maps against ground truth (pointing game, top-q IoU, mass fraction) and the
model-parameter randomisation of the sanity test (Adebayo et al. 2018)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import ArrayLike, Bool, Float


def saliency_scores(
    saliency: Float[ArrayLike, "*b d"],
    region: Bool[ArrayLike, "*b d"] | Bool[ArrayLike, " d"],
    *,
    q: float | None = None,
) -> dict[str, np.ndarray]:
    r"""Scores of saliency maps against a ground-truth region (per map, numpy; one ``(d,)`` region may serve
    every map):

    - ``pointing``: 1 if the most salient pixel lies in the region (pointing game, Zhang et al. 2018);
    - ``iou``: IoU of the top-``q`` fraction of pixels with the region (``q`` defaults to the region's
      fraction of the image, so a perfect map scores 1 and a random one about ``q / (2 - q)``);
    - ``mass``: ``sum_region S^+ / sum S^+`` (mass fraction of the positive part; a uniform map scores the
      region's fraction).

    Args:
        saliency: ``(..., d)`` saliency maps (flattened pixels).
        region: ``(..., d)`` or ``(d,)`` boolean ground-truth regions, each non-empty.
        q: the top fraction of pixels for ``iou``; ``None`` (default) for each region's own fraction.

    Returns:
        ``{"pointing", "iou", "mass"}``, each of the maps' leading shape.
    """
    s = np.asarray(saliency, float)
    r = np.asarray(region, bool)
    if s.shape[-1] != r.shape[-1]:
        raise ValueError(
            f"`saliency` and `region` must have the same last axis, got {s.shape} and {r.shape}."
        )
    s, r = np.broadcast_arrays(s, r)
    d = s.shape[-1]
    frac = r.mean(-1)
    if np.any(frac == 0):
        raise ValueError("Every `region` must contain at least one pixel.")
    k = np.maximum(1, np.round((frac if q is None else np.full_like(frac, float(q))) * d).astype(int))
    ranks = np.argsort(np.argsort(-s, axis=-1, kind="stable"), axis=-1, kind="stable")
    top = ranks < k[..., None]
    inter = (top & r).sum(-1)
    union = (top | r).sum(-1)
    arg = np.argmax(s, axis=-1)
    pointing = np.take_along_axis(r, arg[..., None], -1)[..., 0].astype(float)
    pos = np.clip(s, 0, None)
    tot = pos.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.where(tot > 0, (pos * r).sum(-1) / np.where(tot > 0, tot, 1.0), np.nan)
    return {"pointing": pointing, "iou": inter / union, "mass": mass}


def randomise_weights(net: eqx.Module, key: jax.Array) -> eqx.Module:
    """Adebayo et al. (2018)'s model-parameter randomisation: every inexact array of ``net`` replaced by
    Gaussian noise with the array's own mean and standard deviation (scale kept, learned structure
    destroyed); the ``process`` field is kept. Drawn with numpy from ``key`` (no per-shape compilation).
    A saliency method that passes the sanity test gives maps of the randomised network that do not
    rank-correlate with the trained network's.

    Args:
        net: the network, an Equinox module with a ``process`` field.
        key: PRNG key seeding the numpy draws.
    """
    params, static = eqx.partition(net, eqx.is_inexact_array)
    leaves, tree = jax.tree.flatten(params)
    seed = np.asarray(jr.key_data(key)).ravel().tolist()
    rng = np.random.default_rng(seed)
    new = []
    for v in leaves:
        a = np.asarray(v)
        new.append(jnp.asarray(a.mean() + a.std() * rng.standard_normal(a.shape), a.dtype))
    out = eqx.combine(jax.tree.unflatten(tree, new), static)
    return eqx.tree_at(lambda n: n.process, out, net.process)
