r"""Conditional denoisers over subsets of discrete tokens, in the log-SNR parametrisation.

The information estimators of Kong et al. (ICLR 2023, "Information-theoretic diffusion"; ICLR 2024,
"Interpretable diffusion via information decomposition") and DiffusionPID (Dewan et al., NeurIPS 2024)
compare noise predictions of ONE model conditioned on different subsets of its tokens -- the empty set,
each token, both, plus optional context tokens -- at the same noisy point. This module is that interface.

**Channel.** Everything is indexed by the log-SNR ``lambda`` (Kong et al.'s ``alpha``) of the
variance-preserving channel

    x_lambda = a x + b eps,    a^2 = sigmoid(lambda),  b^2 = sigmoid(-lambda),  eps ~ N(0, I_d),

so ``a^2 / b^2 = e^lambda``. Any diffusion process reaches this channel up to a scale: at the time
``t = process.t_from_log_snr(lambda)`` its state is ``x_t = alpha_t x + sigma_t eps = (alpha_t / a) x_lambda``
and its noise prediction ``E[eps | x_t]`` is the same random variable. Working in ``lambda`` makes the
estimators process-independent.

**Protocol** (:class:`AbstractConditionalDenoiser`)::

    model.eps(log_snr, x, tokens, mask)   # E[eps | x_lambda = x, y_S = tokens_S],  S = {j : mask[j]}

for ONE point ``x`` of shape ``(d,)``, ``tokens`` of shape ``(n,)`` (integer, slot ``j`` in
``0 .. A_j - 1``) and a boolean ``mask`` of shape ``(n,)`` selecting the conditioned slots (the values of
unmasked slots are ignored). Tokens and masks are arrays, so one compiled function evaluates every subset:
:meth:`AbstractConditionalDenoiser.eps_conditions` maps ``(M, n)`` token and mask tables over the SAME
noisy point (common random numbers across conditions). Derived: :meth:`denoise` (``x0_hat = (x - b eps_hat)
/ a``) and :meth:`score` (``-eps_hat / b``).

**Implementations.**

- :class:`ConditionalMixture`: the exact conditional Gaussian mixture. Component ``k`` carries one token
  tuple ``tau_k``; conditioning on ``y_S`` keeps the components with ``tau_{k,S} = y_S`` and renormalises
  their weights, i.e. it MARGINALISES over the missing tokens:

      p(x | y_S) = sum_k pi_k(y_S) N(x; mu_k, Sigma_k),
      pi_k(y_S) = w_k 1[tau_{k,S} = y_S] / sum_j w_j 1[tau_{j,S} = y_S].

  With ``C_k = a^2 Sigma_k + b^2 I`` and responsibilities ``r_k(x) \propto pi_k(y_S) N(x; a mu_k, C_k)``
  (Dewan et al. 2024; the closed form of the reference notes, section 4.1):

      eps_hat(x | y_S) = b sum_k r_k C_k^{-1} (x - a mu_k),

  and exact ``log p_lambda(x | y_S)``, ``log p(x | y_S)`` at the data (``lambda = +inf``), component
  posteriors and token posteriors ``p(y | x_lambda, y_S)`` for every subset.
- :class:`TokenNetworkDenoiser`: an adapter over the token-conditional networks of
  :mod:`diffsim.scores.nn` (trained with token dropout, so each slot's null id means "not given"):
  ``eps(lambda, x, tokens, mask) = net.eps(t, (alpha_t / a) x, where(mask, tokens, null))`` with ``t`` the
  process time of ``lambda`` clipped to ``[t_min, t_max]`` (outside that range the network was never
  trained; :attr:`TokenNetworkDenoiser.log_snr_range` says where it is exact).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._validation import check_key, check_positive_int, is_concrete
from ..processes import AbstractProcess
from .mixture import GaussianMixture
from .nn import AbstractTokenScore


__all__ = [
    "AbstractConditionalDenoiser",
    "ConditionalMixture",
    "TokenNetworkDenoiser",
    "channel_coefficients",
    "subset_mask",
]


def channel_coefficients(log_snr: ArrayLike) -> tuple[Array, Array]:
    r"""``(a, b) = (sqrt(sigmoid(lambda)), sqrt(sigmoid(-lambda)))`` of ``x_lambda = a x + b eps``.

    Both are computed from their own sigmoid (no ``1 - a^2`` cancellation at large ``|lambda|``).

    Args:
        log_snr: the log-SNR ``lambda``, any shape.

    Returns:
        ``(a, b)``, each with the shape of ``log_snr``; ``a^2 + b^2 = 1``.
    """
    lam = jnp.asarray(log_snr)
    return jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))


def subset_mask(n_tokens: int, subset: Sequence[int]) -> Bool[Array, " n"]:
    """Boolean mask of shape ``(n_tokens,)`` that is True on the slots in ``subset``."""
    idx = _check_slots(subset, n_tokens, "subset")
    return jnp.zeros(n_tokens, bool).at[jnp.asarray(idx, int)].set(True) if idx else jnp.zeros(n_tokens, bool)


def _check_slots(slots: Sequence[int], n_tokens: int, name: str) -> tuple[int, ...]:
    out = []
    for s in slots:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"`{name}` must hold integer token slots, got {s!r}.")
        if not 0 <= int(s) < n_tokens:
            raise ValueError(f"`{name}` slot {s} out of range: the model has {n_tokens} token slot(s).")
        out.append(int(s))
    if len(set(out)) != len(out):
        raise ValueError(f"`{name}` contains repeated slots: {out}.")
    return tuple(out)


class AbstractConditionalDenoiser(eqx.Module):
    r"""A noise predictor conditioned on any subset of ``n`` discrete tokens (module docstring).

    Subclasses implement :meth:`eps`, :attr:`dim`, :attr:`alphabet_sizes` and :attr:`token_prior`
    (the joint prior ``p(y_1, ..., y_n)`` of shape ``alphabet_sizes``, or ``None`` when unknown; the
    Williams-Beer measure needs it for Bayes' rule over the token alphabet).
    """

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Dimension ``d`` of one point."""

    @property
    @abc.abstractmethod
    def alphabet_sizes(self) -> tuple[int, ...]:
        """``(A_1, ..., A_n)``: slot ``j`` takes the values ``0 .. A_j - 1``."""

    @property
    @abc.abstractmethod
    def token_prior(self) -> np.ndarray | None:
        """Joint token prior of shape :attr:`alphabet_sizes` (``None`` when the model does not know it)."""

    @abc.abstractmethod
    def eps(
        self, log_snr: ArrayLike, x: Float[Array, " d"], tokens: Int[Array, " n"], mask: Bool[Array, " n"]
    ) -> Float[Array, " d"]:
        r"""``E[eps | x_lambda = x, y_S = tokens_S]`` with ``S = {j : mask[j]}``."""

    # --- derived ------------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return len(self.alphabet_sizes)

    def denoise(
        self, log_snr: ArrayLike, x: Float[Array, " d"], tokens: Int[Array, " n"], mask: Bool[Array, " n"]
    ) -> Float[Array, " d"]:
        """Tweedie's ``E[x | x_lambda = x, y_S] = (x - b eps_hat) / a``."""
        a, b = channel_coefficients(log_snr)
        return (x - b * self.eps(log_snr, x, tokens, mask)) / a

    def score(
        self, log_snr: ArrayLike, x: Float[Array, " d"], tokens: Int[Array, " n"], mask: Bool[Array, " n"]
    ) -> Float[Array, " d"]:
        r"""``\nabla_x log p_lambda(x | y_S) = -eps_hat / b``."""
        _, b = channel_coefficients(log_snr)
        return -self.eps(log_snr, x, tokens, mask) / b

    def eps_conditions(
        self, log_snr: ArrayLike, x: Float[Array, " d"], tokens: Int[Array, "M n"], masks: Bool[Array, "M n"]
    ) -> Float[Array, "M d"]:
        """:meth:`eps` for ``M`` conditions (rows of ``tokens`` / ``masks``) at the SAME noisy point."""
        return jax.vmap(lambda tok, m: self.eps(log_snr, x, tok, m))(tokens, masks)

    def mask(self, subset: Sequence[int]) -> Bool[Array, " n"]:
        """The mask of :meth:`eps` selecting the slots in ``subset`` (validated)."""
        return subset_mask(self.n_tokens, subset)

    # --- validation (before tracing) ----------------------------------------------------------------
    def check_tokens(self, tokens: ArrayLike, name: str = "tokens") -> Int[Array, "*b n"]:
        """Validate a token vector ``(n,)`` or table ``(..., n)`` against :attr:`alphabet_sizes`.

        Raises ``TypeError`` for non-integer tokens and ``ValueError`` for a wrong number of slots or a
        value outside a slot's alphabet (naming the slot). Tracers pass unchecked.
        """
        n = self.n_tokens
        if tokens is None:
            raise TypeError(f"`{name}` must be an integer array with {n} token slot(s), got None.")
        arr = jnp.asarray(tokens)
        if not jnp.issubdtype(arr.dtype, jnp.integer):
            raise TypeError(f"`{name}` must hold integer token ids, got dtype {arr.dtype}.")
        if arr.ndim < 1 or arr.shape[-1] != n:
            raise ValueError(
                f"`{name}` must have {n} token slot(s) in its last axis to match the model's "
                f"alphabet sizes {self.alphabet_sizes}, got shape {arr.shape}."
            )
        if is_concrete(arr):
            vals = np.asarray(arr).reshape(-1, n)
            for j, a in enumerate(self.alphabet_sizes):
                bad = (vals[:, j] < 0) | (vals[:, j] >= a)
                if np.any(bad):
                    raise ValueError(
                        f"`{name}` slot {j} holds {int(vals[:, j][bad][0])}, outside the model's "
                        f"alphabet 0..{a - 1} (alphabet sizes {self.alphabet_sizes})."
                    )
        return arr.astype(jnp.int32)

    def check_mask(self, mask: ArrayLike, name: str = "mask") -> Bool[Array, "*b n"]:
        """Validate a boolean mask ``(..., n)``."""
        arr = jnp.asarray(mask)
        if arr.dtype != jnp.bool_:
            raise TypeError(f"`{name}` must be a boolean array, got dtype {arr.dtype}.")
        if arr.ndim < 1 or arr.shape[-1] != self.n_tokens:
            raise ValueError(
                f"`{name}` must have {self.n_tokens} slot(s) in its last axis, got shape {arr.shape}."
            )
        return arr

    def check_condition(self, tokens: ArrayLike, mask: ArrayLike) -> None:
        """Raise ``ValueError`` if a condition cannot be evaluated (default: only shapes and ranges;
        :class:`ConditionalMixture` also rejects token values of zero prior probability)."""
        self.check_tokens(tokens)
        self.check_mask(mask)


# =====================================================================================================
# exact conditional Gaussian mixture
# =====================================================================================================
class ConditionalMixture(AbstractConditionalDenoiser):
    r"""The exact conditional Gaussian mixture over token subsets (module docstring).

    :meth:`from_token_mixture` builds it from a :class:`diffsim.data.synthetic.TokenMixture`.

    Args:
        mixture: a :class:`~diffsim.scores.GaussianMixture` with ``K`` components; its process is
            irrelevant: everything here is in the log-SNR channel.
        component_tokens: ``(K, n)`` integers, the token tuple of each component, slot ``j`` in
            ``0..A_j - 1``.
        alphabet_sizes: ``(A_1, ..., A_n)``, positive integers.
        token_names: the ``n`` slot names; ``None`` names them ``y1, y2, ...``.
    """

    weights: Float[Array, " K"]
    means: Float[Array, "K d"]
    eigvals: Float[Array, "K d"]
    eigvecs: Float[Array, "K d d"] | None
    component_tokens: Int[Array, "K n"]
    _alphabet_sizes: tuple[int, ...] = eqx.field(static=True)
    token_names: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        mixture: GaussianMixture,
        component_tokens: ArrayLike,
        alphabet_sizes: Sequence[int],
        token_names: Sequence[str] | None = None,
    ):
        if not isinstance(mixture, GaussianMixture):
            raise TypeError(f"`mixture` must be a GaussianMixture, got {type(mixture).__name__}.")
        sizes = tuple(alphabet_sizes)
        for j, a in enumerate(sizes):
            if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 1:
                raise ValueError(f"`alphabet_sizes[{j}]` must be a positive integer, got {a!r}.")
        sizes = tuple(int(a) for a in sizes)
        tok = np.asarray(component_tokens)
        k = mixture.n_components
        if tok.ndim != 2 or tok.shape != (k, len(sizes)):
            raise ValueError(
                f"`component_tokens` must have shape (K, n) = ({k}, {len(sizes)}), got {tok.shape}."
            )
        if tok.size and not np.issubdtype(tok.dtype, np.integer):
            raise TypeError(f"`component_tokens` must hold integers, got dtype {tok.dtype}.")
        for j, a in enumerate(sizes):
            if np.any(tok[:, j] < 0) or np.any(tok[:, j] >= a):
                raise ValueError(f"`component_tokens` slot {j} must lie in 0..{a - 1}.")
        names = tuple(f"y{j + 1}" for j in range(len(sizes))) if token_names is None else tuple(token_names)
        if len(names) != len(sizes):
            raise ValueError(f"`token_names` must name {len(sizes)} slots, got {names}.")
        self.weights = mixture.weights
        self.means = mixture.means
        self.eigvals = mixture.eigvals
        self.eigvecs = mixture.eigvecs
        self.component_tokens = jnp.asarray(tok, jnp.int32)
        self._alphabet_sizes = sizes
        self.token_names = names

    @classmethod
    def from_token_mixture(cls, token_mixture) -> ConditionalMixture:
        """From a :class:`diffsim.data.synthetic.TokenMixture` (mixture, token table, alphabet, names)."""
        for attr in ("mixture", "tokens", "alphabet_sizes"):
            if not hasattr(token_mixture, attr):
                raise TypeError(
                    f"`token_mixture` must be a TokenMixture (missing `{attr}`), "
                    f"got {type(token_mixture).__name__}."
                )
        return cls(
            token_mixture.mixture,
            token_mixture.tokens,
            token_mixture.alphabet_sizes,
            getattr(token_mixture, "token_names", None),
        )

    # --- shape and prior ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def alphabet_sizes(self) -> tuple[int, ...]:
        return self._alphabet_sizes

    @property
    def token_prior(self) -> np.ndarray:
        """``p(y_1, ..., y_n) = sum_k w_k 1[tau_k = y]`` of shape :attr:`alphabet_sizes` (numpy, float64)."""
        p = np.zeros(self.alphabet_sizes)
        np.add.at(p, tuple(np.asarray(self.component_tokens).T), np.asarray(self.weights, float))
        return p

    def check_condition(self, tokens: ArrayLike, mask: ArrayLike) -> None:
        """Shapes, ranges, and that every condition ``y_S`` has positive prior probability (otherwise the
        conditional law does not exist and :meth:`eps` would return NaN)."""
        tok_arr = np.asarray(self.check_tokens(tokens))
        mask_arr = np.asarray(self.check_mask(mask))
        if self.n_tokens == 0 or tok_arr.size == 0:
            return
        tok = tok_arr.reshape(-1, self.n_tokens)
        m = np.broadcast_to(mask_arr, tok_arr.shape).reshape(-1, self.n_tokens)
        comp = np.asarray(self.component_tokens)
        w = np.asarray(self.weights)
        for row, mrow in zip(tok, m, strict=False):
            match = np.all((comp == row[None, :]) | ~mrow[None, :], axis=1)
            if not np.any(match & (w > 0)):
                given = {self.token_names[j]: int(row[j]) for j in np.flatnonzero(mrow)}
                raise ValueError(
                    f"The condition {given} has zero prior probability under the mixture: "
                    f"p(x | y_S) does not exist."
                )

    # --- core ---------------------------------------------------------------------------------------
    def log_weights(self, tokens: Int[Array, " n"], mask: Bool[Array, " n"]) -> Float[Array, " K"]:
        r"""``log pi_k(y_S)``: log prior weights restricted to the components consistent with ``y_S`` and
        renormalised (``-inf`` elsewhere)."""
        common = np.promote_types(self.component_tokens.dtype, tokens.dtype)  # NumPy: never raises
        match = jnp.all(
            (self.component_tokens.astype(common) == tokens.astype(common)[None, :]) | ~mask[None, :], axis=1
        )
        logw = jnp.where(
            match & (self.weights > 0), jnp.log(jnp.where(self.weights > 0, self.weights, 1.0)), -jnp.inf
        )
        return logw - jax.nn.logsumexp(logw)

    def _rotate_in(self, v):
        return v if self.eigvecs is None else jnp.einsum("kij,ki->kj", self.eigvecs, v)

    def _rotate_out(self, v):
        return v if self.eigvecs is None else jnp.einsum("kij,kj->ki", self.eigvecs, v)

    def _parts(self, a, b2, x, tokens, mask):
        """Whitened residuals ``z_k``, variances ``c_k`` and joint log-terms ``log pi_k + log N_k``."""
        c = a**2 * self.eigvals + b2  # (K, d)
        z = self._rotate_in(x[None, :] - a * self.means)
        log_n = -0.5 * jnp.sum(z**2 / c, axis=-1) - 0.5 * jnp.sum(jnp.log(c), axis=-1)
        log_n = log_n - 0.5 * self.dim * math.log(2 * math.pi)
        return z, c, self.log_weights(tokens, mask) + log_n

    def _coefficients(self, log_snr, dtype):
        lam = jnp.asarray(log_snr, dtype)
        return jnp.sqrt(jax.nn.sigmoid(lam)), jax.nn.sigmoid(-lam)

    def eps(self, log_snr, x, tokens, mask):
        r"""``eps_hat = b sum_k r_k C_k^{-1}(x - a mu_k)`` (exact)."""
        a, b2 = self._coefficients(log_snr, x.dtype)
        z, c, logj = self._parts(a, b2, x, tokens, mask)
        r = jax.nn.softmax(logj)
        return jnp.sqrt(b2) * jnp.sum(r[:, None] * self._rotate_out(z / c), axis=0)

    def eps_conditions(self, log_snr, x, tokens, masks):
        r"""All ``M`` conditions at one noisy point in one pass: the component terms ``C_k^{-1}(x - a mu_k)``
        and densities do not depend on the condition, only the weights do, so
        ``eps_hat_m = b sum_k r_{mk} v_k`` is one ``(M, K) x (K, d)`` product (memory ``O(K d + M K)``)."""
        a, b2 = self._coefficients(log_snr, x.dtype)
        z, c, _ = self._parts(a, b2, x, tokens[0], jnp.zeros_like(masks[0]))
        log_n = -0.5 * jnp.sum(z**2 / c, axis=-1) - 0.5 * jnp.sum(jnp.log(c), axis=-1)
        logw = jax.vmap(self.log_weights)(tokens, masks)  # (M, K)
        r = jax.nn.softmax(logw + log_n[None, :], axis=-1)
        return jnp.sqrt(b2) * (r @ self._rotate_out(z / c))

    def log_prob(
        self, log_snr: ArrayLike, x: Float[Array, " d"], tokens: Int[Array, " n"], mask: Bool[Array, " n"]
    ) -> Float[Array, ""]:
        """``log p_lambda(x | y_S)``: the density of ``x_lambda = a x_0 + b eps`` given ``y_S``."""
        a, b2 = self._coefficients(log_snr, x.dtype)
        return jax.nn.logsumexp(self._parts(a, b2, x, tokens, mask)[2])

    def data_log_prob(
        self, x: Float[Array, " d"], tokens: Int[Array, " n"], mask: Bool[Array, " n"]
    ) -> Float[Array, ""]:
        """``log p(x | y_S)`` of clean data (``lambda = +inf``: ``a = 1``, ``b = 0``)."""
        one = jnp.ones((), x.dtype)
        return jax.nn.logsumexp(self._parts(one, 0.0 * one, x, tokens, mask)[2])

    def posterior(
        self, log_snr: ArrayLike, x: Float[Array, " d"], tokens: Int[Array, " n"], mask: Bool[Array, " n"]
    ) -> Float[Array, " K"]:
        """Component responsibilities ``P(k | x_lambda = x, y_S)``."""
        a, b2 = self._coefficients(log_snr, x.dtype)
        return jax.nn.softmax(self._parts(a, b2, x, tokens, mask)[2])

    def _token_table(self, r):
        flat = jnp.ravel_multi_index(tuple(self.component_tokens.T), self.alphabet_sizes, mode="clip")
        p = jax.ops.segment_sum(r, flat, num_segments=int(np.prod(self.alphabet_sizes)))
        return p.reshape(self.alphabet_sizes)

    def token_posterior(
        self, log_snr: ArrayLike, x: Float[Array, " d"], tokens: Int[Array, " n"], mask: Bool[Array, " n"]
    ) -> Float[Array, "*alphabet"]:
        """Joint token posterior ``p(y | x_lambda = x, y_S)``, shape :attr:`alphabet_sizes` (the component
        responsibilities summed over components sharing a token tuple)."""
        return self._token_table(self.posterior(log_snr, x, tokens, mask))

    def data_token_posterior(
        self, x: Float[Array, " d"], tokens: Int[Array, " n"], mask: Bool[Array, " n"]
    ) -> Float[Array, "*alphabet"]:
        """``p(y | x, y_S)`` for clean data ``x`` (Bayes over the exact conditional densities)."""
        one = jnp.ones((), x.dtype)
        return self._token_table(jax.nn.softmax(self._parts(one, 0.0 * one, x, tokens, mask)[2]))

    def padded(self, n_components: int) -> ConditionalMixture:
        """The same law with zero-weight copies of component 0 appended up to ``n_components`` (so that
        models of different ``K`` share compiled shapes; zero-weight components never receive weight)."""
        k = self.n_components
        n_components = check_positive_int(n_components, "n_components")
        if n_components < k:
            raise ValueError(f"`n_components` ({n_components}) must be >= the current K = {k}.")
        extra = n_components - k
        if extra == 0:
            return self

        def rep(v):
            return None if v is None else jnp.concatenate([v, jnp.repeat(v[:1], extra, axis=0)])

        return eqx.tree_at(
            lambda m: (m.weights, m.means, m.eigvals, m.eigvecs, m.component_tokens),
            self,
            (
                jnp.concatenate([self.weights, jnp.zeros(extra, self.weights.dtype)]),
                rep(self.means),
                rep(self.eigvals),
                rep(self.eigvecs),
                rep(self.component_tokens),
            ),
            is_leaf=lambda v: v is None,
        )

    # --- sampling -----------------------------------------------------------------------------------
    def _draw(self, key, comp):
        z = jax.random.normal(key, (comp.shape[0], self.dim), self.means.dtype)
        y = jnp.sqrt(self.eigvals[comp]) * z
        if self.eigvecs is not None:
            y = jnp.einsum("nij,nj->ni", self.eigvecs[comp], y)
        return self.means[comp] + y

    def sample(self, key: jax.Array, n: int) -> tuple[Float[Array, "n d"], Int[Array, "n n_tokens"]]:
        """``n`` draws ``(x, tokens)`` of the joint law (component ``k`` with probability ``w_k``)."""
        n = check_positive_int(n, "n")
        k1, k2 = jax.random.split(check_key(key))
        comp = jax.random.choice(k1, self.n_components, (n,), p=self.weights)
        return self._draw(k2, comp), self.component_tokens[comp]

    def sample_stratified(
        self, key: jax.Array, n_per_component: int
    ) -> tuple[Float[Array, "N d"], Int[Array, "N n_tokens"], Float[Array, " N"]]:
        """``n_per_component`` draws from every component of positive weight, with sample weights
        ``w_k / n_per_component`` (normalised): expectations over the joint law without the sampling noise of
        the component frequencies. Returns ``(x, tokens, sample_weights)``."""
        m = check_positive_int(n_per_component, "n_per_component")
        w = np.asarray(self.weights, float)
        comps = np.repeat(np.flatnonzero(w > 0), m)
        sw = w[comps] / m
        return (
            self._draw(check_key(key), jnp.asarray(comps)),
            self.component_tokens[comps],
            jnp.asarray(sw / sw.sum()),
        )

    def __repr__(self) -> str:
        return (
            f"ConditionalMixture(K={self.n_components}, d={self.dim}, alphabet_sizes={self.alphabet_sizes}, "
            f"tokens={self.token_names})"
        )


# =====================================================================================================
# adapter over token-conditional networks
# =====================================================================================================
class TokenNetworkDenoiser(AbstractConditionalDenoiser):
    r"""A token-conditional network (:class:`~diffsim.scores.nn.AbstractTokenScore`) as a
    conditional denoiser: unmasked slots are replaced by their null id (unconditioned), and the log-SNR is
    mapped to the network's process time (module docstring).

    **Arguments:** ``net``; optional ``token_prior`` (shape ``net.alphabet_sizes``, non-negative, sums to
    one; needed only by the Williams-Beer PID measure, e.g. the empirical token frequencies of the training
    set).
    """

    net: AbstractTokenScore
    prior: Float[Array, "*alphabet"] | None

    def __init__(self, net: AbstractTokenScore, token_prior: ArrayLike | None = None):
        if not isinstance(net, AbstractTokenScore):
            raise TypeError(
                f"`net` must be a token-conditional network (AbstractTokenScore), got {type(net).__name__}."
            )
        self.net = net
        if token_prior is None:
            self.prior = None
        else:
            p = np.asarray(token_prior, float)
            if p.shape != tuple(net.alphabet_sizes):
                raise ValueError(
                    f"`token_prior` must have shape {tuple(net.alphabet_sizes)} (the network's "
                    f"alphabet sizes), got {p.shape}."
                )
            if np.any(p < 0) or not np.isfinite(p).all() or abs(p.sum() - 1.0) > 1e-6:
                raise ValueError(f"`token_prior` must be non-negative and sum to one, got sum {p.sum():.6g}.")
            self.prior = jnp.asarray(p)

    @property
    def dim(self) -> int:
        return self.net.dim

    @property
    def alphabet_sizes(self) -> tuple[int, ...]:
        return tuple(self.net.alphabet_sizes)

    @property
    def token_prior(self) -> np.ndarray | None:
        return None if self.prior is None else np.asarray(self.prior, float)

    @property
    def process(self) -> AbstractProcess:
        return self.net.process

    @property
    def log_snr_range(self) -> tuple[float, float]:
        """``(lambda(t_max), lambda(t_min))``: the log-SNRs the network was trained on."""
        p = self.net.process
        return float(p.log_snr(p.t_max)), float(p.log_snr(p.t_min))

    def eps(self, log_snr, x, tokens, mask):
        p = self.net.process
        lam = jnp.asarray(log_snr, x.dtype)
        t = jnp.clip(p.t_from_log_snr(lam), p.t_min, p.t_max)
        a = jnp.sqrt(jax.nn.sigmoid(lam))
        x_t = x * (p.alpha(t) / a)
        return self.net.predict(t, x_t, self.net.mask_tokens(tokens, mask), "eps")
