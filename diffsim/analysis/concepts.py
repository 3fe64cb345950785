r"""What the sampler sees at each step: predicted clean samples recorded along trajectories and per-token
information rates; the public face of the concept tools (probes, saliency, schedules are re-exported).

Source: Park, Ju & Lee, "Explaining generative diffusion models via visual analysis for interpretable
decision-making process" (Expert Systems with Applications 248, 2024; code ``ian-jihoonpark/X-Diffusion``),
transplanted to models with known ground truth; the changes against the released code are listed in
``docs/concepts.md``.

**Time and noise.** ``t`` is the forward diffusion time of a process, ``lambda_t = log(alpha_t^2/sigma_t^2)``
its log-SNR; the reverse sampler runs ``t_max -> t_min`` (``lambda`` increasing). A conditional denoiser of
:mod:`diffsim.scores.conditional` is run as a score by
:class:`~diffsim.scores.token_conditioned.TokenConditionedScore`.

Contents of this module:

1. **Predicted clean samples** (Tweedie ``x0_hat(t, x_t) = E[x_0 | x_t]``) recorded along any trajectory
   as per-particle statistics of :func:`diffsim.simulate` (``save_states=False``): memory
   ``O(S N (d + sum_k A_k))`` for ``S`` saved steps, independent of the number of steps
   (:func:`x0_statistics`, :func:`record_x0`), with probe probabilities and exact posteriors
   (:mod:`diffsim.analysis.probes`).
2. **Per-token information rate** over log-SNR (the conditional MMSE gap, Kong et al. ICLR 2024):

       rho_k(lambda) = 1/2 E_eps | eps_hat(x_lambda | y_S) - eps_hat(x_lambda | y_{S \ k}) |^2,
       \int rho_k d lambda = i^o(x; y_k | y_{S \ k}),  E_{p(x|y)} i^o = E_{p(x|y)} i  (orthogonality),

   (:func:`token_information_rate`, built on :func:`diffsim.analysis.information.mmse_curves`) and the
   "correlation quantification": the Spearman rank correlation over steps between any relevance curve and
   ``rho_k`` (:func:`correlation_over_steps`).
3. **Information densities** over log-SNR (:func:`information_density`) for the information-equalising
   step schedule :func:`diffsim.sampling.grids.information_schedule` (ITD's FIG schedule).

Elsewhere, re-exported here: the token mixture :func:`diffsim.data.concepts.concept_mixture`; concept
probes, concept curves, emergence and the closed-form Bayes accuracy (:mod:`diffsim.analysis.probes`);
saliency maps, scores and insertion/deletion games (:mod:`diffsim.analysis.saliency`); step schedules
(:func:`diffsim.sampling.grids.step_schedule`, :func:`~diffsim.sampling.grids.paper_timesteps`,
:func:`~diffsim.sampling.grids.information_schedule`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Int

from .._validation import as_float_array, check_key
from ..data.concepts import concept_mixture as concept_mixture
from ..sampling import simulate
from ..sampling.grids import (
    STEP_SCHEDULES as SCHEDULES,
    information_schedule as information_schedule,
    paper_timesteps as paper_timesteps,
    step_schedule as step_schedule,
)
from ..scores._base import AbstractScore
from ..scores.conditional import AbstractConditionalDenoiser, ConditionalMixture
from ..scores.token_conditioned import TokenConditionedScore as TokenConditionedScore
from ._concept_checks import _check_model, step_time as step_time
from ._ranks import spearman as spearman
from .information import LogSNRScheme, gaussian_mmse, mmse_curves
from .probes import (
    ConceptCurve as ConceptCurve,
    ConceptProbe as ConceptProbe,
    auroc as auroc,
    bayes_accuracy as bayes_accuracy,
    concept_curve as concept_curve,
    emergence_time as emergence_time,
    exact_token_posterior as exact_token_posterior,
    train_probe as train_probe,
)
from .saliency import (
    GRAD_CAM_TARGETS as GRAD_CAM_TARGETS,
    AttentionRelevance as AttentionRelevance,
    ConditionalFn as ConditionalFn,
    ConditionalTokensFn as ConditionalTokensFn,
    GradCAM as GradCAM,
    InsertionDeletion as InsertionDeletion,
    TokenEffectFn as TokenEffectFn,
    attention_relevance as attention_relevance,
    attention_relevance_path as attention_relevance_path,
    bernoulli_masks as bernoulli_masks,
    conditional_fn as conditional_fn,
    conditional_tokens_fn as conditional_tokens_fn,
    grad_cam as grad_cam,
    insertion_deletion as insertion_deletion,
    jacobian_saliency as jacobian_saliency,
    masking_saliency as masking_saliency,
    normalised_auc as normalised_auc,
    occlusion_saliency as occlusion_saliency,
    randomise_weights as randomise_weights,
    saliency_scores as saliency_scores,
    smooth_masks as smooth_masks,
    ssim_map as ssim_map,
    token_effect_energy as token_effect_energy,
    token_effect_fn as token_effect_fn,
)


__all__ = [
    "GRAD_CAM_TARGETS",
    "SCHEDULES",
    "AttentionRelevance",
    "ConceptCurve",
    "ConceptProbe",
    "ConditionalFn",
    "ConditionalTokensFn",
    "GradCAM",
    "InsertionDeletion",
    "TokenConditionedScore",
    "TokenEffectFn",
    "TokenInformationRate",
    "X0Record",
    "attention_relevance",
    "attention_relevance_path",
    "auroc",
    "bayes_accuracy",
    "bernoulli_masks",
    "concept_curve",
    "concept_mixture",
    "conditional_fn",
    "conditional_tokens_fn",
    "correlation_over_steps",
    "emergence_time",
    "exact_token_posterior",
    "grad_cam",
    "information_density",
    "information_schedule",
    "insertion_deletion",
    "jacobian_saliency",
    "masking_saliency",
    "normalised_auc",
    "occlusion_saliency",
    "paper_timesteps",
    "randomise_weights",
    "record_x0",
    "saliency_scores",
    "smooth_masks",
    "spearman",
    "ssim_map",
    "step_schedule",
    "step_time",
    "token_effect_energy",
    "token_effect_fn",
    "token_information_rate",
    "train_probe",
    "x0_statistics",
]


class X0Record(eqx.Module):
    """What :func:`record_x0` kept along a trajectory (numpy arrays).

    Attributes:
        ts: ``(S,)`` saved times.
        log_snr: ``(S,)`` the process's log-SNR at the saved times.
        x0: ``(S, N, d)`` predicted clean samples (``None`` with ``keep_x0=False``).
        probs: ``{probe name: (S, N, A)}`` probe probabilities of ``x0_hat`` (empty without probes).
        exact: ``{slot: (S, N, A_slot)}`` exact posteriors ``p(y_slot | x_t, y_given)`` (analytic models;
            empty without ``exact_slots``).
        x: ``(N, d)`` final states.
    """

    ts: np.ndarray
    log_snr: np.ndarray
    x0: np.ndarray | None
    probs: dict
    exact: dict
    x: np.ndarray


def x0_statistics(
    score: AbstractScore,
    *,
    probes: Sequence[ConceptProbe] = (),
    exact: ConditionalMixture | None = None,
    exact_slots: Sequence[int] = (),
    given_tokens: Int[ArrayLike, " n"] | None = None,
    given_mask: Bool[ArrayLike, " n"] | None = None,
    keep_x0: bool = True,
) -> Callable:
    r"""A per-particle statistic ``stats(t, x_t) -> dict`` for :func:`diffsim.simulate`: Tweedie's
    ``x0_hat = score.denoise(t, x_t)`` (key ``"x0"``, unless ``keep_x0=False``), each probe's probabilities
    of ``x0_hat`` (``"probs"``) and, with an analytic ``exact`` model, ``p(y_k | x_t, y_given)`` for
    ``k`` in ``exact_slots`` (``"exact"``). Probes trained on another dimension raise ``ValueError``.

    Args:
        score: the sampled score (its ``denoise`` gives ``x0_hat``).
        probes: concept probes (:class:`~diffsim.analysis.probes.ConceptProbe`) applied to ``x0_hat``, with
            distinct names.
        exact: an analytic mixture of the same dimension for the exact posteriors; needed when
            ``exact_slots`` is non-empty.
        exact_slots: token slots whose exact posterior ``p(y_k | x_t, y_given)`` to record; empty for none.
        given_tokens: ``(n,)`` token values conditioned on in the exact posteriors (default zeros).
        given_mask: ``(n,)`` which slots of ``given_tokens`` are conditioned on (default none).
        keep_x0: also return ``x0_hat`` itself (key ``"x0"``).

    Returns:
        The function ``stats(t, x) -> dict`` of one particle ``x`` ``(d,)``.
    """
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be an AbstractScore, got {type(score).__name__}.")
    probes = tuple(probes)
    for p in probes:
        if not isinstance(p, ConceptProbe):
            raise TypeError(f"`probes` must hold ConceptProbe instances, got {type(p).__name__}.")
        p.check_dim(score.dim, "the sampler's state")
    names = [p.name for p in probes]
    if len(set(names)) != len(names):
        raise ValueError(f"Probe names must be distinct, got {names}.")
    slots = tuple(int(s) for s in exact_slots)
    tok = msk = None
    if slots:
        if not isinstance(exact, ConditionalMixture):
            raise TypeError("`exact_slots` need an analytic `exact` ConditionalMixture.")
        if exact.dim != score.dim:
            raise ValueError(f"`exact` has dimension {exact.dim}, the score {score.dim}.")
        for s in slots:
            if not 0 <= s < exact.n_tokens:
                raise ValueError(f"`exact_slots` slot {s} out of range for {exact.n_tokens} token slot(s).")
        n = exact.n_tokens
        tok = (
            jnp.zeros(n, jnp.int32)
            if given_tokens is None
            else exact.check_tokens(given_tokens, "given_tokens")
        )
        msk = jnp.zeros(n, bool) if given_mask is None else exact.check_mask(given_mask, "given_mask")
        exact.check_condition(tok, msk)

    def stats(t, x):
        x0 = score.denoise(t, x)
        out: dict[str, Any] = {}
        if keep_x0:
            out["x0"] = x0
        if probes:
            out["probs"] = {p.name: p(x0) for p in probes}
        if slots:
            post = exact_token_posterior(exact, score.process, t, x, slots, tok, msk)
            out["exact"] = {s: p for s, p in zip(slots, post, strict=False)}
        return out

    return stats


def record_x0(
    score: AbstractScore,
    method: str = "ddim",
    grid: ArrayLike | int | None = None,
    *,
    key: jax.Array,
    n: int | None = None,
    x: Float[ArrayLike, "N d"] | None = None,
    save: Any = "all",
    probes: Sequence[ConceptProbe] = (),
    exact: ConditionalMixture | None = None,
    exact_slots: Sequence[int] = (),
    given_tokens=None,
    given_mask=None,
    keep_x0: bool = True,
    chunk_size: int | None = None,
    **method_options,
) -> X0Record:
    """Run ``simulate(score, method, grid, save=save, stats=x0_statistics(...), save_states=False)`` and
    return an :class:`X0Record` (predicted clean samples, probe probabilities and exact posteriors at the
    saved steps). Memory is bounded by the saved steps, not the grid.

    Args:
        score: the sampled score.
        method: a sampler name of the registry (default ``"ddim"``).
        grid: times, a number of steps or ``None`` (the sampler's default), as in :func:`diffsim.simulate`.
        key: PRNG key of the run.
        n: number of particles drawn from the prior (when ``x`` is ``None``).
        x: starting points ``(N, d)`` at ``grid[0]``, or ``None`` to draw ``n`` from the prior.
        save: the saved steps: ``"all"`` (default), ``"final"``, an int stride or grid indices.
        probes: concept probes (:class:`~diffsim.analysis.probes.ConceptProbe`) applied to ``x0_hat``.
        exact: an analytic mixture for the exact posteriors (needed with ``exact_slots``).
        exact_slots: token slots whose exact posteriors to record.
        given_tokens (ArrayLike | None): ``(n,)`` token values conditioned on in the exact posteriors
            (default zeros).
        given_mask (ArrayLike | None): ``(n,)`` which slots of ``given_tokens`` are conditioned on (default
            none).
        keep_x0: keep ``x0_hat`` (with no probes and no exact slots it must be ``True``).
        chunk_size: particles per chunk in :func:`diffsim.simulate` (memory only).
        **method_options (Any): passed to the sampler.
    """
    stats = x0_statistics(
        score,
        probes=probes,
        exact=exact,
        exact_slots=exact_slots,
        given_tokens=given_tokens,
        given_mask=given_mask,
        keep_x0=keep_x0,
    )
    if not keep_x0 and not probes and not tuple(exact_slots):
        raise ValueError("Nothing to record: keep_x0=False and no probes or exact slots.")
    traj = simulate(
        score,
        method,
        grid,
        x=x,
        n=n,
        key=key,
        save=save,
        stats=stats,
        save_states=False,
        chunk_size=chunk_size,
        **method_options,
    )
    st = traj.stats
    ts = np.asarray(traj.ts)
    lam = np.asarray(score.process.log_snr(jnp.asarray(ts)))
    return X0Record(
        ts,
        lam,
        np.asarray(st["x0"]) if keep_x0 else None,
        {k: np.asarray(v) for k, v in st.get("probs", {}).items()},
        {int(k): np.asarray(v) for k, v in st.get("exact", {}).items()},
        np.asarray(traj.x),
    )


class TokenInformationRate(eqx.Module):
    r"""``rho_k(lambda)`` for ``N`` points (numpy; returned by :func:`token_information_rate`).

    Attributes:
        log_snr: ``(L,)`` the log-SNR values.
        weights: ``(L,)`` their trapezoid weights.
        rate: ``(N, L)`` the information rate of each point.
        rate_coords: ``(N, L, d)`` the rate per coordinate (``None`` without ``coordinate_curves``).
        integral: ``(N,)`` ``sum_l w_l rho_k(lambda_l) = i^o(x; y_k | y_given)``.
        slot: the token slot ``k``.
        given: the other conditioned slots.
    """

    log_snr: np.ndarray
    weights: np.ndarray
    rate: np.ndarray
    rate_coords: np.ndarray | None
    integral: np.ndarray
    slot: int = eqx.field(static=True)
    given: tuple[int, ...] = eqx.field(static=True)

    @property
    def mean_rate(self) -> np.ndarray:
        """``(L,)`` the rate averaged over the points."""
        return self.rate.mean(0)


def token_information_rate(
    model: AbstractConditionalDenoiser,
    x: Float[ArrayLike, "N d"],
    tokens: Int[ArrayLike, "N n"],
    key: jax.Array,
    *,
    slot: int,
    log_snr: ArrayLike,
    given: Sequence[int] | None = None,
    n_noise: int = 8,
    coordinate_curves: bool = False,
    chunk_size: int | None = None,
) -> TokenInformationRate:
    r"""Token ``slot``'s information rate over log-SNR (module docstring):

        rho_k(lambda) = 1/2 E_eps | eps_hat(x_lambda | y_S) - eps_hat(x_lambda | y_{S \ k}) |^2,

    ``S = given + {slot}`` (``given`` defaults to every other slot), at the given ``log_snr`` values, with
    ``n_noise`` draws per log-SNR shared by both conditions (common random numbers; Kong et al. 2024's
    orthogonal CMI integrand). Built on :func:`diffsim.analysis.information.mmse_curves` with a fixed
    (trapezoid) log-SNR rule, so ``integral`` is ``i^o(x; y_k | y_given)``.

    Args:
        model: the conditional denoiser.
        x: the points, shape ``(N, d)``.
        tokens: ``(N, n)`` each point's own token values.
        key: PRNG key of the noise draws.
        slot: the token slot ``k`` whose rate is measured.
        log_snr: the log-SNR values (finite, non-empty; flattened).
        given: the other conditioned slots (distinct, without ``slot``); ``None`` (default) for all others.
        n_noise: noise draws per log-SNR.
        coordinate_curves: also return the per-coordinate rate.
        chunk_size: points evaluated at once (memory only; ``None`` chooses).
    """
    model = _check_model(model)
    if (
        isinstance(slot, bool)
        or not isinstance(slot, (int, np.integer))
        or not 0 <= int(slot) < model.n_tokens
    ):
        raise ValueError(f"`slot` must be a token slot in 0..{model.n_tokens - 1}, got {slot!r}.")
    slot = int(slot)
    given_t = (
        tuple(j for j in range(model.n_tokens) if j != slot)
        if given is None
        else tuple(int(g) for g in given)
    )
    if (
        slot in given_t
        or any(not 0 <= g < model.n_tokens for g in given_t)
        or len(set(given_t)) != len(given_t)
    ):
        raise ValueError(f"`given` {given_t} must be distinct token slots other than `slot` {slot}.")
    lam = np.asarray(log_snr, float).reshape(-1)
    if lam.size < 1 or not np.all(np.isfinite(lam)):
        raise ValueError("`log_snr` must be a non-empty array of finite values.")
    scheme = LogSNRScheme.fixed(lam)
    masks = np.zeros((2, model.n_tokens), bool)
    masks[0, list(given_t)] = True
    masks[1, list(given_t) + [slot]] = True
    tok = np.asarray(model.check_tokens(tokens))
    xs = np.asarray(as_float_array(x, "x", ndim=2))
    if tok.shape != (xs.shape[0], model.n_tokens):
        raise ValueError(f"`tokens` must have shape ({xs.shape[0]}, {model.n_tokens}), got {tok.shape}.")
    tok2 = np.broadcast_to(tok[:, None, :], (xs.shape[0], 2, model.n_tokens))
    curves = mmse_curves(
        model,
        xs,
        tok2,
        masks,
        key,
        scheme=scheme,
        n_noise=n_noise,
        pairs=((0, 1),),
        coordinate_curves=coordinate_curves,
        chunk_size=chunk_size,
    )
    rate = curves.orthogonal_integrand(0, 1)  # (N, L)
    coords = None if curves.orth_curve_coords is None else 0.5 * curves.orth_curve_coords[:, 0]
    w = np.asarray(curves.weight[0])
    return TokenInformationRate(np.asarray(curves.log_snr[0]), w, rate, coords, rate @ w, slot, given_t)


def correlation_over_steps(
    relevance: Float[ArrayLike, "N S"] | Float[ArrayLike, " S"],
    rate: Float[ArrayLike, "N S"] | Float[ArrayLike, " S"],
) -> dict[str, Any]:
    """The "correlation quantification": per-sample Spearman correlation over steps between a relevance
    curve (e.g. a token's attention relevance at each step) and the token's information rate at the same
    steps (``(N, S)`` or ``(S,)``, broadcast). Returns ``{"per_sample": (N,), "mean", "se", "n"}``: the
    mean and its standard error are over the samples with a finite correlation, ``n`` their number.

    Args:
        relevance: ``(N, S)`` or ``(S,)`` relevance at each of ``S >= 3`` steps.
        rate: ``(N, S)`` or ``(S,)`` information rate at the same steps.
    """
    r = np.atleast_2d(np.asarray(relevance, float))
    q = np.atleast_2d(np.asarray(rate, float))
    if r.shape[-1] != q.shape[-1]:
        raise ValueError(f"`relevance` and `rate` must share the step axis, got {r.shape} and {q.shape}.")
    if r.shape[-1] < 3:
        raise ValueError("A rank correlation over steps needs at least 3 steps.")
    rho = spearman(r, q)
    ok = rho[np.isfinite(rho)]
    n = int(ok.size)
    return {
        "per_sample": rho,
        "mean": float(ok.mean()) if n else float("nan"),
        "se": float(ok.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        "n": n,
    }


def information_density(
    model: AbstractConditionalDenoiser,
    x: Float[ArrayLike, "N d"],
    tokens: Int[ArrayLike, "N n"],
    key: jax.Array,
    *,
    log_snr: ArrayLike,
    kind: str = "gap",
    n_noise: int = 8,
    variances: ArrayLike | None = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    r"""A density over log-SNR for :func:`information_schedule`, averaged over data points ``x``:

    - ``kind="gap"`` (ITD's FIG integrand): ``1/2 (mmse_G(lambda) - mmse(lambda))^+`` with the
      unconditional eps-MMSE of the model and the Gaussian base ``mmse_G = sum_i sigmoid(lambda + log v_i)``
      (``v`` = eigenvalues of the data covariance by default); its integral is the non-Gaussianity
      ``h_G - h(x)``;
    - ``kind="tokens"``: ``sum_k rho_k(lambda)``, the tokens' information rates (each given the others).

    Args:
        model: the conditional denoiser.
        x: data points, shape ``(N, d)``.
        tokens: ``(N, n)`` their token values (only ``kind="tokens"`` conditions on them).
        key: PRNG key of the noise draws.
        log_snr: the log-SNR values (flattened).
        kind: ``"gap"`` (default) or ``"tokens"``.
        n_noise: noise draws per log-SNR.
        variances: ``v`` of the Gaussian base (``kind="gap"``), scalar or ``(d,)``; ``None`` for the
            eigenvalues of the covariance of ``x``.
        chunk_size: points evaluated at once (memory only; ``None`` chooses).

    Returns:
        ``(L,)`` the density at ``log_snr`` (numpy).
    """
    model = _check_model(model)
    xs = np.asarray(as_float_array(x, "x", ndim=2))
    tok = np.asarray(model.check_tokens(tokens))
    lam = np.asarray(log_snr, float).reshape(-1)
    if kind == "gap":
        v = (
            np.linalg.eigvalsh(np.cov(xs, rowvar=False))
            if variances is None
            else np.broadcast_to(np.asarray(variances, float), (xs.shape[1],))
        )
        v = np.clip(v, 1e-8, None)
        masks = np.zeros((1, model.n_tokens), bool)
        curves = mmse_curves(
            model,
            xs,
            tok[:, None, :],
            masks,
            key,
            scheme=LogSNRScheme.fixed(lam),
            n_noise=n_noise,
            chunk_size=chunk_size,
        )
        base = gaussian_mmse(curves.log_snr[0], v).sum(-1)
        return np.clip(0.5 * (base - curves.mmse[:, 0].mean(0)), 0.0, None)
    if kind == "tokens":
        tot = np.zeros(lam.size)
        for k in range(model.n_tokens):
            r = token_information_rate(
                model,
                xs,
                tok,
                jr.fold_in(check_key(key), k),
                slot=k,
                log_snr=lam,
                n_noise=n_noise,
                chunk_size=chunk_size,
            )
            tot += r.mean_rate
        return tot
    raise ValueError(f"`kind` must be 'gap' or 'tokens', got {kind!r}.")
