r"""Token mixtures with exact PID values: toy counterparts of the case studies of DiffusionPID (Dewan et al.,
NeurIPS 2024): a context that decides which token is depicted (conditional PID), synonyms, a homonym
resolved (or not) by a second token, and co-hyponyms.

Every mixture is block structured: the image ``x`` is split into blocks of ``block_size`` coordinates,
block ``b`` shows a discrete feature ``v_b`` (a function of the tokens, or a latent variable the prior
couples to them), and its mean is the vertex ``v_b`` of :func:`~diffsim.data.synthetic.spread_points`
``(n_b, block_size, separation)`` (distinct values exactly ``separation`` apart), covariance ``std^2 I``.
In the well-separated limit ``x`` carries exactly the feature tuple ``(v_b)_b``, so the exact PID of
each mixture is the discrete PID of the table ``p(y_1, y_2, v)``
(:func:`~diffsim.analysis.information.well_separated_joint`); the closed forms below are in bits.

- :func:`context_switch` (tokens ``y1, y2, c`` uniform; one block shows ``y1`` if ``c = 0`` and ``y2`` if
  ``c = 1``): PID (``c`` marginalised) ``I_1 = I_2 = 1 - h(3/4) = 0.189``, ``I_12 = 1/2``; CPID given ``c``
  ``I_1 = I_2 = 1/2``, ``I_12 = 1``; pointwise-min and Williams-Beer CPID ``R = 0, U_1 = U_2 = 1/2, S = 0``.
- :func:`synonyms` (``f ~ Bern(p)``, ``y1 = f``, ``y2 = f`` with probability ``agreement``, ``y3`` an
  independent uniform bit; blocks ``[f, y3]``): at ``agreement = 1``, ``R = h(p)``, ``U = S = 0`` for every
  measure (redundancy equals the shared feature's entropy); conditional informations given the other two
  tokens: ``I(X; Y1 | Y2, Y3) = H(f | y2)``, ``I(X; Y2 | Y1, Y3) = 0``, ``I(X; Y3 | Y1, Y2) = 1``.
- :func:`homonym` (``y1``: the homonym present, ``y2``: a context word, uniform; one block shows
  ``0`` (no object) if ``y1 = 0``, else meaning ``1 + y2``): ``I_1 = 1``, ``I_2 = 1/2``, ``I_12 = 3/2``;
  MMI ``[R, U1, U2, S] = [1/2, 1/2, 0, 1/2]``. ``resolved=False`` is a model that ignores the context
  when depicting the homonym (meanings 1 and 2 with probability 1/2 each whatever ``y2``):
  ``I_2 = I_12 - I_1 = 0``, so every measure gives ``S = 0``.
- :func:`co_hyponyms` (``P, c1, c2`` uniform bits; tokens ``y_k = 2 P + c_k`` in ``{0..3}``, two words of
  one parent category; blocks ``[P, c1, c2]``): per block, parent ``R = 1`` (``U = S = 0``), child ``k``
  ``U_k = 1``; on the whole image every min-based measure gives ``[R, U1, U2, S] = [2, 0, 0, 1]`` (the
  child information counted as redundant: the two-bit-copy problem of these measures). ``target`` selects
  the block(s) ``x`` shows (the exact marginal law of those coordinates).
- :func:`bias_sweep_mixture`: the bias sweep (only ``y1`` depicted, ``y2`` tied to it by a prior
  correlation ``rho``) for several correlations at once, a third token ``r`` naming the correlation:
  conditioning on ``r`` (a context) gives each correlation's PID, so one network trained on this law
  covers the whole sweep. Given ``r``: ``R = I(Y1; Y2) = 1 - h((1 + rho)/2)``, ``U1 = 1 - R``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..processes import AbstractProcess
from ..scores.mixture import GaussianMixture
from .synthetic import TokenMixture, _positive, spread_points


__all__ = ["CO_HYPONYM_TARGETS", "bias_sweep_mixture", "co_hyponyms", "context_switch", "homonym", "synonyms"]

CO_HYPONYM_TARGETS = ("image", "parent", "child1", "child2")


def _block_mixture(
    components: Sequence[tuple[float, tuple[int, ...], tuple[int, ...]]],
    n_values: Sequence[int],
    alphabet_sizes: tuple[int, ...],
    names: tuple[str, ...],
    *,
    block_size: int,
    separation: float,
    std: float,
    process: AbstractProcess | None,
    name: str,
    blocks: Sequence[int] | None = None,
) -> TokenMixture:
    """Components ``(weight, tokens, block values)``; only the blocks in ``blocks`` (default all) are
    shown (their coordinates concatenated)."""
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"`block_size` must be a positive integer, got {block_size!r}.")
    sep, sd = _positive(separation, "separation"), _positive(std, "std")
    shown = list(range(len(n_values))) if blocks is None else list(blocks)
    vertices = [spread_points(n, int(block_size), sep) for n in n_values]
    weights, tokens, means, code = [], [], [], []
    for w, tok, vals in components:
        if w <= 0:
            continue
        weights.append(w)
        tokens.append(tok)
        means.append(np.concatenate([vertices[b][vals[b]] for b in shown]))
        code.append(int(np.ravel_multi_index(tuple(vals[b] for b in shown), [n_values[b] for b in shown])))
    w = np.asarray(weights, float)
    mix = GaussianMixture(w / w.sum(), np.asarray(means), sd**2, process=process)
    support = {}
    for i, b in enumerate(shown):
        mask = np.zeros(len(shown) * int(block_size), bool)
        mask[i * int(block_size) : (i + 1) * int(block_size)] = True
        support[f"{b}"] = mask
    tok = np.asarray(tokens, np.int32)
    return TokenMixture(mix, tok, alphabet_sizes, names, np.asarray(code, np.int32), support, name)


def context_switch(
    *,
    block_size: int = 2,
    separation: float = 4.0,
    std: float = 0.5,
    process: AbstractProcess | None = None,
) -> TokenMixture:
    """Tokens ``(y1, y2, c)``, independent uniform bits; one block shows ``y1`` when the context ``c = 0``
    and ``y2`` when ``c = 1`` (module docstring): the context decides which source is depicted, so the
    conditional PID given ``c`` differs from the PID with ``c`` marginalised.

    Args:
        block_size: coordinates of the block.
        separation: distance between the two block means.
        std: per-coordinate standard deviation of every component.
        process: the forward process of the mixture (default: the mixture's default).
    """
    comps = [
        (1 / 8, (y1, y2, c), ((y1 if c == 0 else y2),)) for y1 in (0, 1) for y2 in (0, 1) for c in (0, 1)
    ]
    return _block_mixture(
        comps,
        (2,),
        (2, 2, 2),
        ("y1", "y2", "c"),
        block_size=block_size,
        separation=separation,
        std=std,
        process=process,
        name="context_switch",
    )


def synonyms(
    *,
    shared_probability: float = 0.25,
    agreement: float = 1.0,
    block_size: int = 2,
    separation: float = 4.0,
    std: float = 0.5,
    process: AbstractProcess | None = None,
) -> TokenMixture:
    """Two words for one feature: ``f ~ Bern(shared_probability)``, ``y1 = f``, ``y2 = f`` with probability
    ``agreement`` (a near-synonym below 1), ``y3`` an independent uniform bit (another word); blocks
    ``[f, y3]`` (module docstring).

    Args:
        shared_probability: ``P(f = 1)`` of the shared feature, in ``(0, 1)``.
        agreement: ``P(y2 = f)``, in ``(0, 1]``.
        block_size: coordinates per block.
        separation: distance between the two means of a block.
        std: per-coordinate standard deviation of every component.
        process: the forward process of the mixture.
    """
    p = float(shared_probability)
    if not 0.0 < p < 1.0:
        raise ValueError(f"`shared_probability` must lie in (0, 1), got {shared_probability}.")
    q = float(agreement)
    if not 0.0 < q <= 1.0:
        raise ValueError(f"`agreement` must lie in (0, 1], got {agreement}.")
    comps = []
    for f in (0, 1):
        for y2 in (0, 1):
            for y3 in (0, 1):
                w = (p if f else 1 - p) * (q if y2 == f else 1 - q) * 0.5
                comps.append((w, (f, y2, y3), (f, y3)))
    return _block_mixture(
        comps,
        (2, 2),
        (2, 2, 2),
        ("y1", "y2", "y3"),
        block_size=block_size,
        separation=separation,
        std=std,
        process=process,
        name=f"synonyms(p={p:g}, agreement={q:g})",
    )


def homonym(
    *,
    resolved: bool = True,
    block_size: int = 2,
    separation: float = 4.0,
    std: float = 0.5,
    process: AbstractProcess | None = None,
) -> TokenMixture:
    """A homonym ``y1`` (present or not) whose meaning a context word ``y2`` decides; tokens uniform; one
    block with three values: no object (``y1 = 0``), meaning ``1 + y2`` (``y1 = 1``). With
    ``resolved=False`` the depicted meaning ignores ``y2`` (1 or 2 with probability 1/2 each): the failure
    case (module docstring).

    Args:
        resolved: whether the context word decides the meaning.
        block_size: coordinates of the block (at least 2: the three means form a triangle).
        separation: distance between any two of the three means.
        std: per-coordinate standard deviation of every component.
        process: the forward process of the mixture.
    """
    if not isinstance(resolved, (bool, np.bool_)):
        raise TypeError(f"`resolved` must be a bool, got {type(resolved).__name__}.")
    comps = []
    for y1 in (0, 1):
        for y2 in (0, 1):
            if y1 == 0:
                comps.append((0.25, (y1, y2), (0,)))
            elif resolved:
                comps.append((0.25, (y1, y2), (1 + y2,)))
            else:
                comps += [(0.125, (y1, y2), (1,)), (0.125, (y1, y2), (2,))]
    return _block_mixture(
        comps,
        (3,),
        (2, 2),
        ("homonym", "context"),
        block_size=block_size,
        separation=separation,
        std=std,
        process=process,
        name="homonym" + ("" if resolved else " (unresolved)"),
    )


def co_hyponyms(
    *,
    target: str = "image",
    block_size: int = 2,
    separation: float = 4.0,
    std: float = 0.5,
    process: AbstractProcess | None = None,
) -> TokenMixture:
    """Two words of one parent category: ``P, c1, c2`` independent uniform bits, tokens ``y_k = 2 P + c_k``
    (alphabet 4: parent and child), blocks ``[P, c1, c2]`` (module docstring). ``target`` is the part of
    the image ``x`` shows: ``"image"`` (all blocks), ``"parent"``, ``"child1"`` or ``"child2"`` (that block
    alone: the exact marginal law of its coordinates).

    Args:
        target: one of ``CO_HYPONYM_TARGETS``.
        block_size: coordinates per block.
        separation: distance between the two means of a block.
        std: per-coordinate standard deviation of every component.
        process: the forward process of the mixture.
    """
    if target not in CO_HYPONYM_TARGETS:
        raise ValueError(f"`target` must be one of {CO_HYPONYM_TARGETS}, got {target!r}.")
    blocks = None if target == "image" else [CO_HYPONYM_TARGETS.index(target) - 1]
    comps = [(1 / 8, (2 * p + c1, 2 * p + c2), (p, c1, c2)) for p in (0, 1) for c1 in (0, 1) for c2 in (0, 1)]
    return _block_mixture(
        comps,
        (2, 2, 2),
        (4, 4),
        ("word1", "word2"),
        block_size=block_size,
        separation=separation,
        std=std,
        process=process,
        name=f"co_hyponyms({target})",
        blocks=blocks,
    )


def bias_sweep_mixture(
    correlations: Sequence[float],
    *,
    block_size: int = 4,
    n_blocks: int = 4,
    separation: float = 4.0,
    std: float = 0.5,
    process: AbstractProcess | None = None,
) -> TokenMixture:
    """Tokens ``(y1, y2, r)``: ``r`` uniform over the correlations, ``(y1, y2)`` binary with
    ``p(y1 = y2 | r) = (1 + rho_r)/2``, uniform marginals; ``x`` has ``n_blocks`` blocks of ``block_size``
    coordinates, the first showing ``y1`` (means ``+-separation/2`` per coordinate, as
    :func:`~diffsim.data.synthetic.block_structured` ``("y1", "none", ...)``), the others zero-mean
    (module docstring).

    Args:
        correlations: the prior correlations ``rho``, each in ``(-1, 1)``.
        block_size: coordinates per block.
        n_blocks: number of blocks (the first is depicted).
        separation: per-coordinate distance between the two means of the depicted block.
        std: per-coordinate standard deviation of every component.
        process: the forward process of the mixture.
    """
    rhos = [float(r) for r in correlations]
    if not rhos or any(not -1.0 < r < 1.0 for r in rhos):
        raise ValueError(f"`correlations` must be a non-empty sequence in (-1, 1), got {correlations}.")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, (int, np.integer)) or n_blocks < 1:
        raise ValueError(f"`n_blocks` must be a positive integer, got {n_blocks!r}.")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"`block_size` must be a positive integer, got {block_size!r}.")
    sep, sd = _positive(separation, "separation"), _positive(std, "std")
    d = int(block_size) * int(n_blocks)
    weights, tokens, means = [], [], []
    for r, rho in enumerate(rhos):
        for y1 in (0, 1):
            for y2 in (0, 1):
                mu = np.zeros(d)
                mu[: int(block_size)] = (2 * y1 - 1) * sep / 2
                weights.append((1 + rho if y1 == y2 else 1 - rho) / 4 / len(rhos))
                tokens.append((y1, y2, r))
                means.append(mu)
    mix = GaussianMixture(np.asarray(weights), np.asarray(means), sd**2, process=process)
    tok = np.asarray(tokens, np.int32)
    return TokenMixture(mix, tok, (2, 2, len(rhos)), ("y1", "y2", "r"), tok[:, 0].copy(), {}, "bias_sweep")
