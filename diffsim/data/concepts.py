r"""A token mixture on small images whose tokens each move one known image region (coarse and fine
concepts with ground-truth pixel support), for the ``concepts`` study and the saliency tools of
:mod:`diffsim.analysis.saliency`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from jaxtyping import ArrayLike

from ..processes import AbstractProcess
from ..scores.mixture import GaussianMixture
from .synthetic import TokenMixture, block_structured


__all__ = ["concept_mixture"]


def concept_mixture(
    separations: Sequence[float] = (6.0, 1.5),
    *,
    image_shape: Sequence[int] = (4, 4),
    block_shape: Sequence[int] = (2, 2),
    std: float = 0.5,
    prior: ArrayLike | None = None,
    process: AbstractProcess | None = None,
) -> TokenMixture:
    r"""A :class:`~diffsim.data.synthetic.TokenMixture` on ``H x W`` images whose binary token ``y_j``
    moves region ``j`` only: the image is tiled into ``block_shape`` regions (row-major), region ``j <
    len(separations)`` has mean ``(2 y_j - 1) s_j / 2`` in each of its pixels, the remaining regions are
    background (mean 0); covariance ``std^2 I``, one component per token tuple.

    Large ``s_j`` makes a *coarse* concept (decided at low SNR), small ``s_j`` a *fine* one: the two
    components of region ``j`` are ``s_j sqrt(m)`` apart (``m`` pixels per region), so ``p(y_j | x_t)``
    resolves near ``lambda ~ -log(s_j^2 m / 4) + log(1 + ...)``. Built on
    :func:`diffsim.data.synthetic.block_structured` (unit separation, then each block scaled by ``s_j`` and
    its coordinates placed on region ``j``). ``support`` maps each token name to its region's pixel mask.

    Args:
        separations: the per-token separations ``s_j > 0`` (at least two, at most one per region); token
            ``j`` is named ``"y{j+1}"``.
        image_shape: ``(H, W)``.
        block_shape: the region shape ``(h, w)``; it must tile ``image_shape``.
        std: the per-pixel standard deviation of every component.
        prior: the joint token law, shape ``(2,) * len(separations)``, non-negative and summing to one;
            ``None`` is uniform. Token tuples of zero probability get no component.
        process: the forward process of the mixture; ``None`` takes :meth:`~diffsim.processes.VP.ou`.
    """
    seps = [float(s) for s in separations]
    if not seps or any(not (s > 0 and math.isfinite(s)) for s in seps):
        raise ValueError(f"`separations` must be positive and finite, got {tuple(separations)}.")
    h, w = (int(s) for s in image_shape)
    bh, bw = (int(s) for s in block_shape)
    if min(h, w, bh, bw) < 1 or h % bh or w % bw:
        raise ValueError(f"`block_shape` {tuple(block_shape)} must tile `image_shape` {tuple(image_shape)}.")
    rows, cols = h // bh, w // bw
    n_regions = rows * cols
    n_tok = len(seps)
    if n_tok > n_regions:
        raise ValueError(f"{n_tok} tokens need {n_tok} regions; the image has {n_regions}.")
    if n_tok < 2:
        raise ValueError("`separations` must name at least two tokens.")
    blocks = tuple(f"y{j + 1}" for j in range(n_tok)) + ("none",) * (n_regions - n_tok)
    base = block_structured(blocks, block_size=bh * bw, separation=1.0, std=std, prior=prior, process=process)
    size = bh * bw
    perm = np.empty(h * w, int)  # block coordinate i -> image pixel perm[i]
    for b in range(n_regions):
        rb, cb = divmod(b, cols)
        for q in range(size):
            qr, qc = divmod(q, bw)
            perm[b * size + q] = (rb * bh + qr) * w + cb * bw + qc
    scale = np.ones(h * w)
    for j, s in enumerate(seps):
        scale[j * size : (j + 1) * size] = s
    means_block = np.asarray(base.mixture.means, float) * scale[None, :]
    means = np.zeros_like(means_block)
    means[:, perm] = means_block
    mix = GaussianMixture(
        np.asarray(base.mixture.weights), means, float(std) ** 2, process=base.mixture.process
    )
    support = {}
    for j in range(n_tok):
        m = np.zeros(h * w, bool)
        m[perm[j * size : (j + 1) * size]] = True
        support[f"y{j + 1}"] = m
    name = "concepts(" + ",".join(f"{s:g}" for s in seps) + f"; {h}x{w})"
    return TokenMixture(
        mix, np.asarray(base.tokens), base.alphabet_sizes, base.token_names, None, support, name
    )
