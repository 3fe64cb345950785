r"""Gaussian-mixture constructors shared across studies.

Plain mixtures (:class:`~diffsim.GaussianMixture`):

- :func:`separated_clusters`: ``K`` isotropic clusters whose means are pairwise at least ``separation``
  apart (exactly ``separation`` for nearest neighbours);
- :func:`hierarchy`: a two-level tree, ``n_coarse`` groups far apart, each with ``n_fine`` close
  sub-clusters (labels = coarse group, for ``condition``);
- :func:`ring`: ``K`` clusters equally spaced on a circle.

Token mixtures (:class:`TokenMixture`: a mixture plus the discrete tokens each component carries):

- :func:`pid_gate`: the partial-information-decomposition gates of Dewan et al. (2024, DiffusionPID),
  transplanted to mixtures: tokens ``y1, y2`` binary with prior ``p(y1, y2)``, one component per token
  pair, whose mean codes ``g(y1, y2)``: ``UNQ`` (g = y1), ``XOR`` (g = y1 xor y2), ``RDN`` (y1 = y2 = g),
  ``AND`` (g = y1 and y2), ``COPY`` (g = (y1, y2), four values). Distinct values of ``g`` sit at least
  ``separation`` apart, so in the well-separated limit ``x`` carries exactly ``g``.
- :func:`block_structured`: ``d = n_blocks * block_size`` coordinates split into blocks, each controlled
  by a known function of the tokens (``"y1"``, ``"y2"``, ..., ``"xor"``, ``"and"``, ``"none"``); block
  means are ``+-separation/2`` per coordinate according to the function's value. Blocks that do not
  depend on a token carry no information about it (structural zeros for pixel-wise MI maps).

A :class:`TokenMixture` conditions on any subset of tokens with :meth:`TokenMixture.condition` (the
restricted mixture, weights renormalised: ``p(k | y_S) \propto p(k) 1[tokens_k,S = y_S]``), which is the
exact conditional law ``p(x | y_S)`` because each component carries one token tuple.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._validation import check_key, check_positive_int
from ..processes import AbstractProcess
from ..scores.mixture import GaussianMixture


__all__ = [
    "BLOCK_FUNCTIONS",
    "GATES",
    "TokenMixture",
    "binary_prior",
    "block_structured",
    "hierarchy",
    "pid_gate",
    "ring",
    "separated_clusters",
    "spread_points",
]

GATES = ("UNQ", "XOR", "RDN", "AND", "COPY")
BLOCK_FUNCTIONS = ("xor", "and", "none")  # plus "y1", "y2", ... (token j controls the block)


def _positive(x, name) -> float:
    v = float(x)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"`{name}` must be positive and finite, got {x}.")
    return v


def spread_points(n: int, dim: int, separation: float) -> np.ndarray:
    """``n`` centred points in ``R^dim`` whose nearest-neighbour distance is exactly ``separation``.

    ``dim = 1``: equally spaced on a line; ``dim >= n``: scaled simplex vertices ``(s/sqrt 2) e_k``
    (all pairs at distance ``s``); otherwise a regular ``n``-gon of side ``s`` in the first two axes.
    """
    n = check_positive_int(n, "n")
    dim = check_positive_int(dim, "dim")
    s = _positive(separation, "separation")
    pts = np.zeros((n, dim))
    if n == 1:
        return pts
    if dim == 1:
        pts[:, 0] = (np.arange(n) - (n - 1) / 2) * s
    elif dim >= n:
        pts[np.arange(n), np.arange(n)] = s / math.sqrt(2)
        pts -= pts.mean(axis=0)
    else:
        r = s / (2 * math.sin(math.pi / n))
        ang = 2 * math.pi * np.arange(n) / n
        pts[:, 0], pts[:, 1] = r * np.cos(ang), r * np.sin(ang)
    return pts


def separated_clusters(
    n_clusters: int,
    dim: int,
    *,
    separation: float = 4.0,
    std: float = 0.5,
    weights: Sequence[float] | None = None,
    process: AbstractProcess | None = None,
) -> GaussianMixture:
    """``n_clusters`` isotropic clusters ``N(mu_k, std^2 I)`` with means from :func:`spread_points`
    (nearest-neighbour distance ``separation``); equal weights unless given."""
    means = spread_points(n_clusters, dim, separation)
    std = _positive(std, "std")
    w = np.full(n_clusters, 1.0 / n_clusters) if weights is None else np.asarray(weights, float)
    return GaussianMixture(w, means, std**2, process=process)


def hierarchy(
    n_coarse: int = 2,
    n_fine: int = 2,
    dim: int = 2,
    *,
    coarse_separation: float = 8.0,
    fine_separation: float = 2.0,
    std: float = 0.3,
    process: AbstractProcess | None = None,
) -> GaussianMixture:
    """Two-level hierarchy: coarse centres :func:`spread_points` ``(n_coarse, coarse_separation)``, each
    with ``n_fine`` sub-clusters at offsets :func:`spread_points` ``(n_fine, fine_separation)`` (the fine
    pattern lies along the last axes when ``dim >= 2`` so it is not parallel to the coarse one).

    Component ``k = c * n_fine + f`` (coarse ``c``, fine ``f``), equal weights, ``labels = c``.
    """
    n_coarse = check_positive_int(n_coarse, "n_coarse")
    n_fine = check_positive_int(n_fine, "n_fine")
    dim = check_positive_int(dim, "dim")
    cs, fs = _positive(coarse_separation, "coarse_separation"), _positive(fine_separation, "fine_separation")
    if fs >= cs:
        raise ValueError(f"`fine_separation` ({fs}) must be smaller than `coarse_separation` ({cs}).")
    coarse = spread_points(n_coarse, dim, cs)
    fine = spread_points(n_fine, dim, fs)
    if dim >= 2:
        fine = fine[:, ::-1]  # put the fine pattern on the other axes
    means = (coarse[:, None, :] + fine[None, :, :]).reshape(n_coarse * n_fine, dim)
    k = n_coarse * n_fine
    labels = np.repeat(np.arange(n_coarse), n_fine)
    return GaussianMixture(
        np.full(k, 1.0 / k), means, _positive(std, "std") ** 2, process=process, labels=jnp.asarray(labels)
    )


def ring(
    n_components: int = 8,
    radius: float = 3.0,
    std: float = 0.2,
    *,
    dim: int = 2,
    process: AbstractProcess | None = None,
) -> GaussianMixture:
    """``n_components`` equal-weight clusters on the circle of ``radius`` in the first two axes."""
    k = check_positive_int(n_components, "n_components")
    dim = check_positive_int(dim, "dim", minimum=2)
    r = _positive(radius, "radius")
    ang = 2 * math.pi * np.arange(k) / k
    means = np.zeros((k, dim))
    means[:, 0], means[:, 1] = r * np.cos(ang), r * np.sin(ang)
    return GaussianMixture(np.full(k, 1.0 / k), means, _positive(std, "std") ** 2, process=process)


# =====================================================================================================
# token mixtures
# =====================================================================================================
class TokenMixture(eqx.Module):
    """A Gaussian mixture whose components carry discrete tokens.

    - ``mixture``: the :class:`GaussianMixture` ``p(x) = sum_k w_k N(mu_k, Sigma_k)``; ``w_k`` is the
      prior probability of component ``k``;
    - ``tokens``: ``(K, n)`` int, the token tuple of each component (several components may share one);
    - ``alphabet_sizes``: ``(A_1, ..., A_n)``;
    - ``token_names``: names of the slots (``("y1", "y2")``);
    - ``code``: ``(K,)`` int, what the component's mean encodes (``g`` for gates), or None;
    - ``support``: for block data, ``{block name: (d,) bool mask of its coordinates}``; else empty;
    - ``name``: a short description.
    """

    mixture: GaussianMixture
    tokens: np.ndarray
    alphabet_sizes: tuple[int, ...]
    token_names: tuple[str, ...]
    code: np.ndarray | None = None
    support: Mapping[str, np.ndarray] | None = None
    name: str = ""

    def __post_init__(self):
        tok = np.asarray(self.tokens)
        k = self.mixture.n_components
        if tok.ndim != 2 or tok.shape[0] != k or tok.shape[1] != len(self.alphabet_sizes):
            raise ValueError(f"`tokens` must have shape ({k}, {len(self.alphabet_sizes)}), got {tok.shape}.")
        for j, a in enumerate(self.alphabet_sizes):
            if np.any(tok[:, j] < 0) or np.any(tok[:, j] >= a):
                raise ValueError(f"`tokens` slot {j} must lie in [0, {a - 1}].")

    @property
    def n_tokens(self) -> int:
        return len(self.alphabet_sizes)

    @property
    def dim(self) -> int:
        return self.mixture.dim

    @property
    def prior(self) -> np.ndarray:
        """Joint token prior ``p(y_1, ..., y_n)`` as an array of shape ``alphabet_sizes``."""
        p = np.zeros(self.alphabet_sizes)
        w = np.asarray(self.mixture.weights, float)
        for k in range(self.mixture.n_components):
            p[tuple(self.tokens[k])] += w[k]
        return p

    def _assignment(self, values) -> dict[int, int]:
        if isinstance(values, Mapping):
            items = dict(values)
        else:
            vals = list(values)
            if len(vals) != self.n_tokens:
                raise ValueError(
                    f"Pass one value (or None) per token slot: {self.n_tokens} values, got {len(vals)}."
                )
            items = {j: v for j, v in enumerate(vals) if v is not None}
        out = {}
        for j, v in items.items():
            if isinstance(j, str):
                if j not in self.token_names:
                    raise ValueError(f"Unknown token name {j!r}; tokens are {self.token_names}.")
                j = self.token_names.index(j)
            if not 0 <= int(j) < self.n_tokens:
                raise ValueError(f"Token slot {j} out of range [0, {self.n_tokens}).")
            if not 0 <= int(v) < self.alphabet_sizes[int(j)]:
                raise ValueError(
                    f"Token {self.token_names[int(j)]} value {v} out of range "
                    f"[0, {self.alphabet_sizes[int(j)] - 1}]."
                )
            out[int(j)] = int(v)
        return out

    def component_mask(self, values) -> np.ndarray:
        """Boolean ``(K,)`` mask of components consistent with ``values`` (a dict slot/name -> value, or a
        sequence with ``None`` for unconditioned slots)."""
        assign = self._assignment(values)
        mask = np.ones(self.mixture.n_components, bool)
        for j, v in assign.items():
            mask &= self.tokens[:, j] == v
        return mask

    def condition(self, values) -> GaussianMixture:
        """The exact conditional ``p(x | y_S = values)``: the sub-mixture of consistent components with
        renormalised weights. An empty assignment returns the full mixture."""
        mask = self.component_mask(values)
        if mask.all():
            return self.mixture
        w = np.asarray(self.mixture.weights)
        if not np.any(mask & (w > 0)):
            raise ValueError(f"The token values {values} have zero prior probability.")
        return self.mixture.restrict(np.flatnonzero(mask & (w > 0)))

    def marginal_prior(self, slots: Sequence[int]) -> np.ndarray:
        """Marginal token prior over ``slots`` (in the given order)."""
        slots = [int(s) for s in slots]
        other = tuple(j for j in range(self.n_tokens) if j not in slots)
        p = self.prior.sum(axis=other) if other else self.prior
        kept = sorted(slots)
        return np.transpose(p, [kept.index(s) for s in slots]) if slots else p

    def sample(self, key: jax.Array, n: int) -> tuple[Float[Array, "n d"], Int[Array, "n n_tokens"]]:
        """``n`` draws ``(x, tokens)`` from the joint law."""
        key = check_key(key)
        x, comp = self.mixture.sample(key, n)
        return x, jnp.asarray(self.tokens)[comp]


def binary_prior(correlation: float = 0.0, p1: float = 0.5) -> np.ndarray:
    """Prior of two binary tokens with ``P(y1 = 1) = P(y2 = 1) = p1 = 1/2`` and correlation ``rho``:
    ``p(y1 = y2) = (1 + rho)/2``; returns the ``2 x 2`` table ``[[(1+rho)/4, (1-rho)/4], [...]]``."""
    rho = float(correlation)
    if not -1.0 <= rho <= 1.0:
        raise ValueError(f"`correlation` must lie in [-1, 1], got {correlation}.")
    if float(p1) != 0.5:
        raise ValueError("Only symmetric marginals (p1 = 0.5) are supported.")
    return np.array([[1 + rho, 1 - rho], [1 - rho, 1 + rho]]) / 4.0


def _check_prior(prior, shape) -> np.ndarray:
    p = np.asarray(prior, float)
    if p.shape != shape:
        raise ValueError(f"`prior` must have shape {shape}, got {p.shape}.")
    if np.any(p < 0) or abs(p.sum() - 1) > 1e-8:
        raise ValueError(f"`prior` must be non-negative and sum to one, got sum {p.sum():.6g}.")
    return p


def pid_gate(
    gate: str,
    *,
    dim: int = 2,
    separation: float = 6.0,
    std: float = 0.5,
    prior: np.ndarray | None = None,
    process: AbstractProcess | None = None,
) -> TokenMixture:
    """A PID gate as a token mixture (module docstring): tokens ``(y1, y2)`` binary, one component per
    pair with positive prior, mean :func:`spread_points` ``[g(y1, y2)]``, covariance ``std^2 I``.

    Default prior: uniform over the four pairs; for ``RDN`` uniform over ``(0, 0), (1, 1)``. ``prior``
    (a ``2 x 2`` table, e.g. :func:`binary_prior`) overrides it (RDN requires it to be diagonal).
    ``code`` holds ``g`` per component (``COPY``: ``g = 2 y1 + y2``).
    """
    name = str(gate).upper()
    if name not in GATES:
        raise ValueError(f"Unknown gate {gate!r}; gates are {GATES}.")
    if prior is None:
        prior = np.diag([0.5, 0.5]) if name == "RDN" else np.full((2, 2), 0.25)
    p = _check_prior(prior, (2, 2))
    if name == "RDN" and (p[0, 1] > 0 or p[1, 0] > 0):
        raise ValueError("The RDN gate needs y1 = y2: the prior must vanish off the diagonal.")
    fn = {
        "UNQ": lambda a, b: a,
        "XOR": lambda a, b: a ^ b,
        "RDN": lambda a, b: a,
        "AND": lambda a, b: a & b,
        "COPY": lambda a, b: 2 * a + b,
    }[name]
    n_codes = 4 if name == "COPY" else 2
    pts = spread_points(n_codes, dim, separation)
    tokens, codes, weights = [], [], []
    for a in (0, 1):
        for b in (0, 1):
            if p[a, b] > 0:
                tokens.append((a, b))
                codes.append(fn(a, b))
                weights.append(p[a, b])
    codes_arr = np.asarray(codes, np.int32)
    mix = GaussianMixture(np.asarray(weights), pts[codes_arr], _positive(std, "std") ** 2, process=process)
    return TokenMixture(mix, np.asarray(tokens, np.int32), (2, 2), ("y1", "y2"), codes_arr, {}, name)


def _block_value(fn: str, y: tuple[int, ...]) -> int | None:
    if fn == "none":
        return None
    if fn == "xor":
        return y[0] ^ y[1]
    if fn == "and":
        return y[0] & y[1]
    return y[int(fn[1:]) - 1]


def block_structured(
    blocks: Sequence[str] = ("y1", "y2", "xor", "none"),
    *,
    block_size: int = 4,
    separation: float = 4.0,
    std: float = 0.5,
    prior: np.ndarray | None = None,
    process: AbstractProcess | None = None,
) -> TokenMixture:
    """Block-structured token mixture: ``d = len(blocks) * block_size``; block ``b`` has mean
    ``(2 f_b(y) - 1) separation / 2`` in each of its coordinates (``0`` for ``"none"``), with ``f_b`` one
    of ``"y1"``, ``"y2"``, ... (token ``j`` alone), ``"xor"`` / ``"and"`` (of ``y1, y2``), ``"none"``.

    Tokens are binary; their number is the largest ``j`` named (at least 2). One component per token tuple
    with positive prior (default uniform), covariance ``std^2 I``. ``support`` maps ``"<b>:<f_b>"`` to the
    block's coordinate mask. Blocks are conditionally independent given the tokens.
    """
    blocks = tuple(str(b).lower() for b in blocks)
    if not blocks:
        raise ValueError("`blocks` must name at least one block function.")
    n_tok = 2
    for b in blocks:
        if b in BLOCK_FUNCTIONS:
            continue
        if not (b.startswith("y") and b[1:].isdigit() and int(b[1:]) >= 1):
            raise ValueError(
                f"Unknown block function {b!r}; use 'y1', 'y2', ..., {', '.join(BLOCK_FUNCTIONS)}."
            )
        n_tok = max(n_tok, int(b[1:]))
    size = check_positive_int(block_size, "block_size")
    sep = _positive(separation, "separation")
    shape = (2,) * n_tok
    p = np.full(shape, 1.0 / 2**n_tok) if prior is None else _check_prior(prior, shape)
    d = size * len(blocks)
    tokens, means, weights = [], [], []
    for y in np.ndindex(*shape):
        if p[y] <= 0:
            continue
        mu = np.zeros(d)
        for i, fn in enumerate(blocks):
            v = _block_value(fn, tuple(int(a) for a in y))
            if v is not None:
                mu[i * size : (i + 1) * size] = (2 * v - 1) * sep / 2
        tokens.append(y)
        means.append(mu)
        weights.append(p[y])
    support = {}
    for i, fn in enumerate(blocks):
        m = np.zeros(d, bool)
        m[i * size : (i + 1) * size] = True
        support[f"{i}:{fn}"] = m
    mix = GaussianMixture(np.asarray(weights), np.asarray(means), _positive(std, "std") ** 2, process=process)
    names = tuple(f"y{j + 1}" for j in range(n_tok))
    return TokenMixture(
        mix, np.asarray(tokens, np.int32), shape, names, None, support, "blocks(" + ",".join(blocks) + ")"
    )
