r"""What the sampler sees at each step: predicted clean samples, concept probes, token information rates,
saliency, insertion/deletion games and step schedules.

Source: Park, Ju & Lee, "Explaining generative diffusion models via visual analysis for interpretable
decision-making process" (Expert Systems with Applications 248, 2024; code ``ian-jihoonpark/X-Diffusion``):
DF-RISE (masking saliency), DF-CAM (layer-wise Grad-CAM with classifier-free-guidance-combined gradients),
cross-attention relevance (Chefer et al. 2021 rules), an insertion/deletion "AUC" and an exponential step
scheduler. Here every tool is transplanted to models with known ground truth so that its maps and curves
can be scored; the changes against the released code are listed in ``docs/concepts.md``.

**Time and noise.** ``t`` is the forward diffusion time of a process, ``lambda_t = log(alpha_t^2/sigma_t^2)``
its log-SNR; the reverse sampler runs ``t_max -> t_min`` (``lambda`` increasing). A conditional denoiser of
:mod:`diffsim.scores.conditional` lives in the variance-preserving log-SNR channel ``x_lambda = a x + b eps``
(``a^2 = sigmoid(lambda)``); at time ``t`` its input is ``x_lambda = (a / alpha_t) x_t`` and its noise
prediction is ``E[eps | x_t]`` (:class:`TokenConditionedScore`).

Contents:

1. **Predicted clean samples** (Tweedie ``x0_hat(t, x_t) = E[x_0 | x_t]``) recorded along any trajectory
   as per-particle statistics of :func:`diffsim.simulate` (``save_states=False``): memory
   ``O(S N (d + sum_k A_k))`` for ``S`` saved steps, independent of the number of steps
   (:func:`x0_statistics`, :func:`record_x0`).
2. **Concept probes**: softmax classifiers trained on clean data (JAX/optax, :func:`train_probe`) applied to
   ``x0_hat`` at each step: accuracy and AUROC vs time (:func:`concept_curve`) and an emergence time
   (:func:`emergence_time`); the reference is the exact posterior ``p(y_k | x_t)`` of an analytic
   :class:`~diffsim.scores.conditional.ConditionalMixture` (:func:`exact_token_posterior`). Along an exact
   reverse process ``y_final ~ p(y | x_t)`` (the posterior is a martingale), so the Bayes accuracy of
   predicting the final concept from ``x_t`` has expectation ``E max_y p(y | x_t)``.
3. **Per-token information rate** over log-SNR (the conditional MMSE gap, Kong et al. ICLR 2024):

       rho_k(lambda) = 1/2 E_eps | eps_hat(x_lambda | y_S) - eps_hat(x_lambda | y_{S \ k}) |^2,
       \int rho_k d lambda = i^o(x; y_k | y_{S \ k}),  E_{p(x|y)} i^o = E_{p(x|y)} i  (orthogonality),

   (:func:`token_information_rate`, built on :func:`diffsim.analysis.information.mmse_curves`) and the
   "correlation quantification": the Spearman rank correlation over steps between any relevance curve and
   ``rho_k`` (:func:`correlation_over_steps`).
4. **Saliency at one step** of any function ``f(x_t)`` (e.g. ``x0_hat`` or token ``k``'s effect
   ``g_k = eps_hat(.|y) - eps_hat(.|y \ k)``, :func:`conditional_fn`, :func:`token_effect_fn`):

   - masking (DF-RISE done right, :func:`masking_saliency`): masks ``M_i`` (Bernoulli or RISE-style smooth,
     mean ``p``), inputs ``M_i * x + (1 - M_i) * baseline``, scores between LIKE quantities
     ``s_i = -mean (f(M_i x) - f(x))^2`` (or a local SSIM map of ``f(M_i x)`` against ``f(x)``), and
     ``S = 1/(N p) sum_i M_i s_i`` (returned centred: ``1/(N p) sum_i M_i (s_i - s_bar)``);
   - Jacobian influence ``S_j = sum_i |df_i/dx_j|`` (:func:`jacobian_saliency`);
   - occlusion ``S_j = |f(x) - f(x with patch(j) -> baseline)|^2`` (:func:`occlusion_saliency`);
   - Grad-CAM on the UNet's feature maps with guidance-combined gradients and activations
     ``g = g_u + w (g_c - g_u)``, ``A = A_u + w (A_c - A_u)`` (:func:`grad_cam`, Selvaraju et al. 2017);
   - attention relevance of the UNet's token cross-attention, ``A_bar = mean_heads (grad A * A)^+``
     (Chefer et al. 2021; one cross-attention layer, so the relevance is ``A_bar`` itself,
     :func:`attention_relevance`);
   - scores against ground truth: pointing game, top-q IoU, mass fraction (:func:`saliency_scores`) and
     rank correlation (:func:`spearman`) for the model-randomisation sanity test (Adebayo et al. 2018).
5. **Insertion/deletion** (:func:`insertion_deletion`): reveal (insertion) or remove (deletion) input pixels
   in saliency order, score ``fidelity = 1 - |f(x') - f(x)|^2 / |f(baseline) - f(x)|^2`` (0 at the
   baseline, 1 at ``x``), per-sample normalised trapezoid AUC, a random-order floor and a greedy
   oracle-order ceiling, reported as ``(AUC - random) / (oracle - random)`` per sample (the released code
   min-max normalises the dataset-mean curve instead).
6. **Step schedules** (:func:`step_schedule`): uniform, Park et al.'s exponential early-dense / late-dense
   (:func:`diffsim.sampling.grids.exponential`; the discrete original is :func:`paper_timesteps`),
   uniform in log-SNR, and information-equalising (:func:`information_schedule`, ITD's FIG schedule:
   equal quantiles of a cumulative information density over log-SNR, :func:`information_density`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._validation import as_float_array, check_key, check_positive_int, is_concrete
from ..processes import AbstractProcess
from ..sampling import grids as _grids, simulate
from ..scores._base import AbstractScore
from ..scores.conditional import AbstractConditionalDenoiser, ConditionalMixture, channel_coefficients
from ..scores.mixture import GaussianMixture
from ..scores.networks import UNetScore, convert_parametrisation
from .information import LogSNRScheme, gaussian_mmse, mmse_curves


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

SCHEDULES = ("uniform", "early", "late", "logsnr", "information")
GRAD_CAM_TARGETS = ("guidance_energy", "sum_eps")


# =====================================================================================================
# helpers
# =====================================================================================================
def _check_process(process) -> AbstractProcess:
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
    return process


def _check_model(model) -> AbstractConditionalDenoiser:
    if not isinstance(model, AbstractConditionalDenoiser):
        raise TypeError(
            "`model` must be a conditional denoiser (ConditionalMixture, TokenNetworkDenoiser, ...), "
            f"got {type(model).__name__}."
        )
    return model


def _check_time(process: AbstractProcess, t, name: str = "t") -> Array:
    """A scalar time inside ``(0, t_max]`` of ``process`` (ValueError otherwise)."""
    arr = jnp.asarray(t)
    if arr.ndim != 0:
        raise ValueError(f"`{name}` must be a scalar time, got shape {arr.shape}.")
    process.check_time(arr, name, allow_zero=False)
    return arr


def _image_shape(image_shape, d: int, name: str = "image_shape") -> tuple[int, int]:
    """``(H, W)`` with ``H W = d``; ``None`` means a 1 x d strip."""
    if image_shape is None:
        return (1, d)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2 or shape[0] * shape[1] != d or min(shape) < 1:
        raise ValueError(
            f"`{name}` must be (H, W) with H * W = {d} (the dimension of x), got {tuple(image_shape)}."
        )
    return shape  # type: ignore[return-value]


def _point(x, name: str = "x", dim: int | None = None) -> Array:
    arr = as_float_array(x, name, ndim=1)
    if dim is not None and arr.shape[0] != dim:
        raise ValueError(f"`{name}` must have shape ({dim},), got {arr.shape}.")
    return arr


def step_time(grid: ArrayLike, step: int) -> float:
    """The time ``grid[step]`` of a sampler's grid, validating that ``step`` is a grid index.

    Raises ``ValueError`` for a step outside ``0 .. len(grid) - 1`` (negative indices are not accepted:
    "step" counts from the start of the grid, the noise end of a reverse grid)."""
    ts = np.asarray(grid, float)
    if ts.ndim != 1 or ts.size < 2:
        raise ValueError(f"`grid` must be a 1-D array of at least 2 times, got shape {ts.shape}.")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"`step` must be an integer grid index, got {type(step).__name__}.")
    if not 0 <= int(step) < ts.size:
        raise ValueError(
            f"`step` {step} is outside the grid: it has {ts.size} times (steps 0..{ts.size - 1})."
        )
    return float(ts[int(step)])


# =====================================================================================================
# 0. a token mixture with coarse and fine tokens on known image regions
# =====================================================================================================
def concept_mixture(
    separations: Sequence[float] = (6.0, 1.5),
    *,
    image_shape: Sequence[int] = (4, 4),
    block_shape: Sequence[int] = (2, 2),
    std: float = 0.5,
    prior: ArrayLike | None = None,
    process: AbstractProcess | None = None,
):
    r"""A :class:`~diffsim.data.synthetic.TokenMixture` on ``H x W`` images whose binary token ``y_j``
    moves region ``j`` only: the image is tiled into ``block_shape`` regions (row-major), region ``j <
    len(separations)`` has mean ``(2 y_j - 1) s_j / 2`` in each of its pixels, the remaining regions are
    background (mean 0); covariance ``std^2 I``, one component per token tuple.

    Large ``s_j`` makes a *coarse* concept (decided at low SNR), small ``s_j`` a *fine* one: the two
    components of region ``j`` are ``s_j sqrt(m)`` apart (``m`` pixels per region), so ``p(y_j | x_t)``
    resolves near ``lambda ~ -log(s_j^2 m / 4) + log(1 + ...)``. Built on
    :func:`diffsim.data.synthetic.block_structured` (unit separation, then each block scaled by ``s_j`` and
    its coordinates placed on region ``j``). ``support`` maps each token name to its region's pixel mask.
    """
    from ..data.synthetic import TokenMixture, block_structured

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


# =====================================================================================================
# 1. predicted clean samples along trajectories
# =====================================================================================================
class TokenConditionedScore(AbstractScore):
    r"""A conditional denoiser of :mod:`diffsim.scores.conditional` as a score of ``process``, for the
    samplers:

        eps_hat(t, x_t) = eps(lambda_t, (a_t / alpha_t) x_t | y_S)                (S = mask)
        eps_hat_w       = eps_hat(. | y_U) + w (eps_hat(. | y_S) - eps_hat(. | y_U))  (guidance, U = unconditional_mask)
        score(t, x_t)   = -eps_hat / sigma_t,   x0_hat = (x_t - sigma_t eps_hat) / alpha_t.

    ``guidance=None`` evaluates the condition only (``w = 1``); ``unconditional_mask`` defaults to no slot.
    """

    model: AbstractConditionalDenoiser
    process: AbstractProcess
    tokens: Int[Array, " n"]
    mask: Bool[Array, " n"]
    unconditional_mask: Bool[Array, " n"]
    strength: Array | None

    def __init__(
        self,
        model: AbstractConditionalDenoiser,
        process: AbstractProcess,
        tokens: Int[ArrayLike, " n"] | None = None,
        mask: Bool[ArrayLike, " n"] | None = None,
        *,
        guidance: float | None = None,
        unconditional_mask: Bool[ArrayLike, " n"] | None = None,
    ):
        self.model = _check_model(model)
        self.process = _check_process(process)
        n = model.n_tokens
        tok = np.zeros(n, np.int32) if tokens is None else np.asarray(model.check_tokens(tokens))
        msk = np.zeros(n, bool) if mask is None else np.asarray(model.check_mask(mask))
        umsk = (
            np.zeros(n, bool)
            if unconditional_mask is None
            else np.asarray(model.check_mask(unconditional_mask, "unconditional_mask"))
        )
        if tok.shape != (n,) or msk.shape != (n,) or umsk.shape != (n,):
            raise ValueError(f"`tokens` and masks must be single vectors of {n} slot(s).")
        model.check_condition(tok, msk)
        if guidance is not None:
            model.check_condition(tok, umsk)
            g = float(guidance)
            if not math.isfinite(g):
                raise ValueError(f"`guidance` must be finite, got {guidance}.")
        self.tokens = jnp.asarray(tok, jnp.int32)
        self.mask = jnp.asarray(msk)
        self.unconditional_mask = jnp.asarray(umsk)
        self.strength = None if guidance is None else jnp.asarray(float(guidance))

    @property
    def dim(self) -> int:
        return self.model.dim

    def eps(self, t, x):
        lam = self.process.log_snr(t)
        a, _ = channel_coefficients(lam)
        xl = x * (a / self.process.alpha(t)).astype(x.dtype)
        lam = lam.astype(x.dtype)
        e = self.model.eps(lam, xl, self.tokens, self.mask)
        if self.strength is not None:
            eu = self.model.eps(lam, xl, self.tokens, self.unconditional_mask)
            e = eu + self.strength.astype(x.dtype) * (e - eu)
        return e

    def score(self, t, x):
        return -self.eps(t, x) / self.process.sigma(t).astype(x.dtype)

    def denoise(self, t, x):
        return (x - self.process.sigma(t).astype(x.dtype) * self.eps(t, x)) / self.process.alpha(t).astype(
            x.dtype
        )


def exact_token_posterior(
    model: ConditionalMixture,
    process: AbstractProcess,
    t: ArrayLike,
    x: Float[Array, " d"],
    slots: Sequence[int],
    tokens: Int[ArrayLike, " n"] | None = None,
    mask: Bool[ArrayLike, " n"] | None = None,
) -> tuple[Float[Array, " A"], ...]:
    r"""Exact marginal posteriors ``p(y_k | x_t = x, y_S)`` of the token ``slots`` under an analytic
    :class:`ConditionalMixture` (the component responsibilities at ``x_lambda = (a/alpha_t) x``, summed over
    components sharing a token value). One point ``x`` (traceable; ``vmap`` for batches)."""
    n = model.n_tokens
    tok = jnp.zeros(n, jnp.int32) if tokens is None else jnp.asarray(tokens, jnp.int32)
    msk = jnp.zeros(n, bool) if mask is None else jnp.asarray(mask, bool)
    lam = process.log_snr(t)
    a, _ = channel_coefficients(lam)
    xl = x * (a / process.alpha(t)).astype(x.dtype)
    r = model.posterior(lam.astype(x.dtype), xl, tok, msk)  # (K,)
    out = []
    for s in slots:
        a_s = model.alphabet_sizes[s]
        out.append(jax.ops.segment_sum(r, model.component_tokens[:, s], num_segments=a_s))
    return tuple(out)


class ConceptProbe(eqx.Module):
    r"""A softmax classifier of clean data: ``p(y | x) = softmax(W_2 silu(W_1 z) + b)`` (or linear,
    ``softmax(W z + b)``, when ``hidden = 0``) on standardised inputs ``z = (x - mean) / std`` (mean and
    std of the training data). Trained by :func:`train_probe`; applied to predicted clean samples.
    """

    mean: Float[Array, " d"]
    std: Float[Array, " d"]
    layers: tuple[tuple[Array, Array], ...]
    name: str = eqx.field(static=True)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.layers[-1][1].shape[0])

    def check_dim(self, d: int, what: str = "the input") -> None:
        if int(d) != self.dim:
            raise ValueError(
                f"Probe {self.name!r} was trained on {self.dim}-dimensional data, but {what} has "
                f"dimension {int(d)}: probes apply only to data of the dimension they were trained on."
            )

    def logits(self, x: Float[Array, " d"]) -> Float[Array, " A"]:
        if jnp.ndim(x) != 1:
            raise ValueError(
                f"ConceptProbe.logits takes one point of shape ({self.dim},) (vmap for batches), "
                f"got shape {jnp.shape(x)}."
            )
        self.check_dim(jnp.shape(x)[0])
        h = (x - self.mean.astype(x.dtype)) / self.std.astype(x.dtype)
        for i, (w, b) in enumerate(self.layers):
            h = w.astype(x.dtype) @ h + b.astype(x.dtype)
            if i < len(self.layers) - 1:
                h = jax.nn.silu(h)
        return h

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " A"]:
        """Class probabilities ``p(y | x)``."""
        return jax.nn.softmax(self.logits(x))


@eqx.filter_jit
def _train_probe_scan(probe, x, y, key, steps, batch, lr, wd, noise):
    opt = optax.adamw(lr, weight_decay=wd)

    def loss_fn(layers, k):
        model = eqx.tree_at(lambda p: p.layers, probe, layers)
        k1, k2 = jr.split(k)
        idx = jr.randint(k1, (batch,), 0, x.shape[0])
        xb = x[idx] + noise * jr.normal(k2, (batch, x.shape[1]), x.dtype)
        logits = jax.vmap(model.logits)(xb)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]))

    def body(carry, i):
        layers, st = carry
        loss, g = jax.value_and_grad(loss_fn)(layers, jr.fold_in(key, i))
        upd, st = opt.update(g, st, layers)
        return (optax.apply_updates(layers, upd), st), loss

    (layers, _), losses = jax.lax.scan(body, (probe.layers, opt.init(probe.layers)), jnp.arange(steps))
    return eqx.tree_at(lambda p: p.layers, probe, layers), losses


def train_probe(
    x: Float[ArrayLike, "N d"],
    labels: Int[ArrayLike, " N"],
    *,
    key: jax.Array,
    n_classes: int | None = None,
    hidden: int = 0,
    steps: int = 400,
    batch_size: int = 256,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
    input_noise: float = 0.0,
    name: str = "probe",
) -> ConceptProbe:
    """Train a :class:`ConceptProbe` on clean data ``x`` with integer ``labels`` by minibatch AdamW on the
    cross-entropy (optax; one compiled scan; ``hidden = 0`` gives a linear probe). ``input_noise`` adds
    Gaussian noise of that std to the inputs of each batch (a mild regulariser). Deterministic given ``key``."""
    key = check_key(key)
    xs = as_float_array(x, "x", ndim=2)
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != xs.shape[0]:
        raise ValueError(f"`labels` must have shape ({xs.shape[0]},) (one per row of x), got {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer) or np.any(y < 0):
        raise ValueError("`labels` must be non-negative integers.")
    a = int(y.max()) + 1 if n_classes is None else check_positive_int(n_classes, "n_classes", minimum=2)
    if a < 2:
        raise ValueError("A probe needs at least two classes.")
    if np.any(y >= a):
        raise ValueError(f"`labels` must lie in 0..{a - 1} (n_classes = {a}).")
    hidden = check_positive_int(hidden, "hidden", minimum=0)
    steps = check_positive_int(steps, "steps")
    batch = check_positive_int(batch_size, "batch_size")
    if not (learning_rate > 0 and weight_decay >= 0 and input_noise >= 0):
        raise ValueError("`learning_rate` must be positive, `weight_decay` and `input_noise` non-negative.")
    d = xs.shape[1]
    mean = jnp.mean(xs, axis=0)
    std = jnp.maximum(jnp.std(xs, axis=0), 1e-3)
    rng = np.random.default_rng(
        np.asarray(jr.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
        .ravel()
        .tolist()
    )
    dtype = xs.dtype
    sizes = [d] + ([hidden] if hidden else []) + [a]
    layers = tuple(
        (jnp.asarray(rng.normal(0, 1 / math.sqrt(i), (o, i)), dtype), jnp.zeros(o, dtype))
        for i, o in zip(sizes[:-1], sizes[1:], strict=False)
    )
    probe = ConceptProbe(mean, std, layers, str(name))
    trained, _ = _train_probe_scan(
        probe,
        xs,
        jnp.asarray(y, jnp.int32),
        jr.fold_in(key, 1),
        steps,
        min(batch, xs.shape[0]),
        float(learning_rate),
        float(weight_decay),
        jnp.asarray(input_noise, dtype),
    )
    return trained


class X0Record(eqx.Module):
    """What :func:`record_x0` kept along a trajectory (numpy arrays).

    - ``ts`` ``(S,)`` saved times and ``log_snr`` ``(S,)``;
    - ``x0`` ``(S, N, d)`` predicted clean samples (``None`` with ``keep_x0=False``);
    - ``probs`` ``{probe name: (S, N, A)}`` probe probabilities of ``x0_hat``;
    - ``exact`` ``{slot: (S, N, A_slot)}`` exact posteriors ``p(y_slot | x_t, y_given)`` (analytic models);
    - ``x`` ``(N, d)`` final states.
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
    ``k`` in ``exact_slots`` (``"exact"``). Probes trained on another dimension raise ``ValueError``."""
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
    saved steps). Memory is bounded by the saved steps, not the grid."""
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


# =====================================================================================================
# 2. concept curves and emergence
# =====================================================================================================
def _ranks(v: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged) along the last axis."""
    v = np.asarray(v, float)
    order = np.argsort(v, axis=-1, kind="mergesort")
    sv = np.take_along_axis(v, order, -1)
    n = v.shape[-1]
    ranks_sorted = np.broadcast_to(np.arange(1, n + 1, dtype=float), v.shape).copy()
    flat_sv = sv.reshape(-1, n)
    flat_r = ranks_sorted.reshape(-1, n)
    for row in range(flat_sv.shape[0]):
        s = flat_sv[row]
        start = 0
        while start < n:
            end = start + 1
            while end < n and s[end] == s[start]:
                end += 1
            if end - start > 1:
                flat_r[row, start:end] = 0.5 * (start + 1 + end)
            start = end
    out = np.empty_like(ranks_sorted)
    np.put_along_axis(out, order, flat_r.reshape(v.shape), -1)
    return out


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    r"""Area under the ROC curve of ``scores`` for binary ``labels`` (1 positive): the Mann-Whitney statistic
    ``(R_+ - n_+ (n_+ + 1)/2) / (n_+ n_-)`` with average ranks for ties. NaN when a class is absent.

    With probabilities ``(N, A)`` and integer labels, the macro average of the one-vs-rest AUROCs of the
    classes present (both as positives and negatives)."""
    s = np.asarray(scores, float)
    y = np.asarray(labels)
    if s.ndim == 2:
        if y.shape != (s.shape[0],):
            raise ValueError(f"`labels` must have shape ({s.shape[0]},), got {y.shape}.")
        vals = [auroc(s[:, c], (y == c).astype(int)) for c in range(s.shape[1])]
        vals = [v for v in vals if np.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(
            f"`scores` and `labels` must be 1-D of the same length, got {s.shape} and {y.shape}."
        )
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _ranks(s)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True, eq=False)
class ConceptCurve:
    """A concept's detectability along the saved steps of a trajectory.

    ``log_snr``, ``ts`` ``(S,)``; ``accuracy`` ``(S,)`` (argmax = label); ``auroc`` ``(S,)``;
    ``true_prob`` ``(S,)`` mean probability of the label; ``expected_accuracy`` ``(S,)`` mean max
    probability (equal to the accuracy in expectation when the probabilities are calibrated, e.g. the exact
    posterior along an exact reverse process); ``chance`` (largest class frequency of the labels).
    """

    log_snr: np.ndarray
    ts: np.ndarray
    accuracy: np.ndarray
    auroc: np.ndarray
    true_prob: np.ndarray
    expected_accuracy: np.ndarray
    chance: float


def concept_curve(
    probs: Float[ArrayLike, "S N A"],
    labels: Int[ArrayLike, " N"],
    log_snr: ArrayLike,
    ts: ArrayLike | None = None,
) -> ConceptCurve:
    """Accuracy, AUROC, mean label probability and expected accuracy of ``probs`` (probabilities of each
    class at each saved step, from a probe on ``x0_hat`` or an exact posterior) against ``labels`` (usually
    the concept of the final sample)."""
    p = np.asarray(probs, float)
    y = np.asarray(labels)
    if p.ndim != 3:
        raise ValueError(f"`probs` must have shape (S, N, A), got {p.shape}.")
    if y.shape != (p.shape[1],):
        raise ValueError(f"`labels` must have shape ({p.shape[1]},), got {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer) or np.any(y < 0) or np.any(y >= p.shape[2]):
        raise ValueError(f"`labels` must be integers in 0..{p.shape[2] - 1}.")
    lam = np.asarray(log_snr, float)
    if lam.shape != (p.shape[0],):
        raise ValueError(f"`log_snr` must have shape ({p.shape[0]},), got {lam.shape}.")
    t = np.full_like(lam, np.nan) if ts is None else np.asarray(ts, float)
    acc = np.mean(np.argmax(p, -1) == y[None, :], axis=1)
    au = np.asarray([auroc(p[s, :, 1] if p.shape[2] == 2 else p[s], y) for s in range(p.shape[0])])
    true = np.mean(np.take_along_axis(p, y[None, :, None], -1)[..., 0], axis=1)
    exp_acc = np.mean(p.max(-1), axis=1)
    chance = float(np.bincount(y, minlength=p.shape[2]).max() / y.size)
    return ConceptCurve(lam, t, acc, au, true, exp_acc, chance)


def emergence_time(
    curve: ConceptCurve | ArrayLike,
    log_snr: ArrayLike | None = None,
    *,
    level: float = 0.5,
    chance: float | None = None,
    ceiling: float = 1.0,
    field: str = "accuracy",
) -> float:
    r"""The log-SNR at which a concept emerges: normalise the curve ``u = (c - chance) / (ceiling - chance)``
    and return the log-SNR after which ``u`` stays ``>= level`` (linear interpolation between the last
    saved step below the level and the next). Robust to early fluctuations above the level.
    ``nan`` if the curve ends below the level; the first log-SNR if it never falls below it.

    For AUROC curves use ``chance=0.5``; for accuracy the default chance is the curve's majority rate.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"`level` must lie in (0, 1), got {level}.")
    if isinstance(curve, ConceptCurve):
        c = np.asarray(getattr(curve, field), float)
        lam = curve.log_snr
        ch = curve.chance if chance is None else float(chance)
        if field == "auroc" and chance is None:
            ch = 0.5
    else:
        c = np.asarray(curve, float)
        if log_snr is None:
            raise ValueError("Pass `log_snr` with a raw curve.")
        lam = np.asarray(log_snr, float)
        ch = 0.0 if chance is None else float(chance)
    if c.ndim != 1 or lam.shape != c.shape:
        raise ValueError(f"curve and log_snr must be 1-D of one length, got {c.shape} and {lam.shape}.")
    if not ceiling > ch:
        raise ValueError(f"`ceiling` ({ceiling}) must exceed the chance level ({ch}).")
    order = np.argsort(lam)  # increasing log-SNR: the direction of the reverse process
    lam, u = lam[order], (c[order] - ch) / (ceiling - ch)
    ok = np.isfinite(u)
    lam, u = lam[ok], u[ok]
    if u.size == 0 or u[-1] < level:
        return float("nan")
    below = np.flatnonzero(u < level)
    if below.size == 0:
        return float(lam[0])
    i = int(below[-1])
    u0, u1 = u[i], u[i + 1]
    frac = (level - u0) / (u1 - u0) if u1 != u0 else 1.0
    return float(lam[i] + frac * (lam[i + 1] - lam[i]))


# =====================================================================================================
# 3. per-token information rate and the correlation quantification
# =====================================================================================================
class TokenInformationRate(eqx.Module):
    r"""``rho_k(lambda)`` for ``N`` points (numpy): ``log_snr`` ``(L,)``, ``weights`` ``(L,)`` (trapezoid),
    ``rate`` ``(N, L)``, ``rate_coords`` ``(N, L, d)`` per coordinate (or None), ``integral`` ``(N,)`` ``=
    sum_l w_l rho_k(lambda_l) = i^o(x; y_k | y_rest)``; ``slot``, ``given`` (the other conditioned slots)."""

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


def spearman(a: ArrayLike, b: ArrayLike, axis: int = -1) -> np.ndarray:
    """Spearman rank correlation of ``a`` and ``b`` along ``axis`` (Pearson correlation of average ranks);
    NaN where either is constant."""
    x, y = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    rx, ry = _ranks(x), _ranks(y)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx**2).sum(-1) * (ry**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def correlation_over_steps(
    relevance: Float[ArrayLike, "N S"], rate: Float[ArrayLike, "N S"]
) -> dict[str, Any]:
    """The "correlation quantification": per-sample Spearman correlation over steps between a relevance
    curve (e.g. a token's attention relevance at each step) and the token's information rate at the same
    steps (``(N, S)`` or ``(S,)``, broadcast). Returns ``{"per_sample": (N,), "mean", "se", "n"}``."""
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


# =====================================================================================================
# 4. saliency at one step
# =====================================================================================================
class ConditionalFn(eqx.Module):
    """``x_t -> x0_hat(t, x_t)`` or ``eps_hat(t, x_t)`` of a score at a fixed time (a pytree: changing the
    time or the tokens does not recompile the saliency methods)."""

    score: AbstractScore
    t: Array
    output: str = eqx.field(static=True)

    def __call__(self, x):
        t = self.t.astype(x.dtype)
        return self.score.denoise(t, x) if self.output == "x0" else self.score.eps(t, x)


class TokenEffectFn(eqx.Module):
    r"""``x_t -> eps_hat(t, x_t | y_S) - eps_hat(t, x_t | y_{S \ k})`` (see :func:`token_effect_fn`)."""

    full: TokenConditionedScore
    less: TokenConditionedScore
    t: Array

    def __call__(self, x):
        t = self.t.astype(x.dtype)
        return self.full.eps(t, x) - self.less.eps(t, x)


class ConditionalTokensFn(eqx.Module):
    """``(x_t, tokens) -> x0_hat(t, x_t | y_S)`` (or ``eps_hat``) with the tokens as an argument, for games
    over samples with different tokens (``insertion_deletion(..., context=tokens)``)."""

    model: AbstractConditionalDenoiser
    process: AbstractProcess
    t: Array
    mask: Array
    output: str = eqx.field(static=True)

    def __call__(self, x, tokens):
        t = self.t.astype(x.dtype)
        lam = self.process.log_snr(t)
        a, _ = channel_coefficients(lam)
        alpha, sigma = self.process.alpha(t).astype(x.dtype), self.process.sigma(t).astype(x.dtype)
        e = self.model.eps(lam.astype(x.dtype), x * (a / alpha).astype(x.dtype), tokens, self.mask)
        return e if self.output == "eps" else (x - sigma * e) / alpha


def conditional_tokens_fn(
    model: AbstractConditionalDenoiser,
    process: AbstractProcess,
    t: float,
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    output: str = "x0",
) -> ConditionalTokensFn:
    """:class:`ConditionalTokensFn` at time ``t`` (validated) conditioning on the slots in ``mask``
    (default: every slot)."""
    model = _check_model(model)
    process = _check_process(process)
    if output not in ("x0", "eps"):
        raise ValueError(f"`output` must be 'x0' or 'eps', got {output!r}.")
    msk = jnp.ones(model.n_tokens, bool) if mask is None else model.check_mask(mask)
    if msk.shape != (model.n_tokens,):
        raise ValueError(f"`mask` must be one vector of {model.n_tokens} slot(s), got shape {msk.shape}.")
    tt = _check_time(process, t)
    return ConditionalTokensFn(model, process, jnp.asarray(tt, jnp.result_type(float)), msk, output)


def conditional_fn(
    model: AbstractConditionalDenoiser | AbstractScore,
    process: AbstractProcess | None,
    t: float,
    tokens: Int[ArrayLike, " n"] | None = None,
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    output: str = "x0",
    guidance: float | None = None,
    unconditional_mask: Bool[ArrayLike, " n"] | None = None,
) -> ConditionalFn:
    """``x_t -> x0_hat(t, x_t | y_S)`` (``output="x0"``) or ``eps_hat`` (``"eps"``) at a fixed time ``t``
    (validated against the process: a time outside ``(0, t_max]`` raises), optionally guided. ``model``
    may also be a plain :class:`AbstractScore` (its own process; tokens ignored)."""
    if output not in ("x0", "eps"):
        raise ValueError(f"`output` must be 'x0' or 'eps', got {output!r}.")
    if isinstance(model, AbstractScore):
        score = model
    else:
        score = TokenConditionedScore(
            model, process, tokens, mask, guidance=guidance, unconditional_mask=unconditional_mask
        )
    tt = _check_time(score.process, t)
    return ConditionalFn(score, jnp.asarray(tt, jnp.result_type(float)), output)


def token_effect_fn(
    model: AbstractConditionalDenoiser,
    process: AbstractProcess,
    t: float,
    tokens: Int[ArrayLike, " n"],
    slot: int,
    *,
    given: Sequence[int] | None = None,
) -> TokenEffectFn:
    r"""Token ``slot``'s effect on the noise prediction at time ``t``:
    ``g_k(x_t) = eps_hat(x_t | y_S) - eps_hat(x_t | y_{S \ k})`` with ``S = given + {slot}`` (``given``
    defaults to every other slot); ``|g_k|^2 / 2`` is the pointwise integrand of :func:`token_information_rate`.
    """
    model = _check_model(model)
    n = model.n_tokens
    if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)) or not 0 <= int(slot) < n:
        raise ValueError(f"`slot` must be a token slot in 0..{n - 1}, got {slot!r}.")
    given_t = tuple(j for j in range(n) if j != slot) if given is None else tuple(int(g) for g in given)
    if int(slot) in given_t or any(not 0 <= g < n for g in given_t):
        raise ValueError(f"`given` {given_t} must be token slots other than `slot` {slot}.")
    full = np.zeros(n, bool)
    full[list(given_t) + [int(slot)]] = True
    less = full.copy()
    less[int(slot)] = False
    s_full = TokenConditionedScore(model, process, tokens, full)
    s_less = TokenConditionedScore(model, process, tokens, less)
    tt = _check_time(s_full.process, t)
    return TokenEffectFn(s_full, s_less, jnp.asarray(tt, jnp.result_type(float)))


def bernoulli_masks(
    key: jax.Array, n: int, shape: int | Sequence[int], p: float = 0.5
) -> Float[Array, "n ..."]:
    """``n`` i.i.d. Bernoulli(``p``) masks of ``shape`` (values 0/1, mean ``p``; DF-RISE's masks)."""
    key = check_key(key)
    n = check_positive_int(n, "n")
    if not 0.0 < float(p) < 1.0:
        raise ValueError(f"`p` must lie in (0, 1), got {p}.")
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    return (jr.uniform(key, (n,) + shape) < p).astype(jnp.result_type(float))


def smooth_masks(
    key: jax.Array, n: int, image_shape: Sequence[int], cells: Sequence[int] = (4, 4), p: float = 0.5
) -> Float[Array, "n H W"]:
    r"""RISE masks (Petsiuk et al. 2018): a ``cells`` grid of Bernoulli(``p``) values, bilinearly upsampled
    to ``(cells + 1) * cell_size`` and cropped to ``image_shape`` at a uniformly random shift in
    ``[0, cell_size)^2``. Values in ``[0, 1]`` with mean ``p`` (interpolation preserves the mean)."""
    key = check_key(key)
    n = check_positive_int(n, "n")
    if not 0.0 < float(p) < 1.0:
        raise ValueError(f"`p` must lie in (0, 1), got {p}.")
    h, w = (int(s) for s in image_shape)
    gh, gw = (check_positive_int(int(c), "cells") for c in cells)
    return _smooth_masks_jit(key, n, h, w, gh, gw, jnp.asarray(p, jnp.result_type(float)))


@eqx.filter_jit
def _smooth_masks_jit(key, n, h, w, gh, gw, p):
    ch, cw = -(-h // gh), -(-w // gw)
    big = ((gh + 1) * ch, (gw + 1) * cw)
    k1, k2, k3 = jr.split(key, 3)
    grid = (jr.uniform(k1, (n, gh + 1, gw + 1), p.dtype) < p).astype(p.dtype)
    up = jax.vmap(lambda g: jax.image.resize(g, big, "linear"))(grid)
    dy = jr.randint(k2, (n,), 0, ch)
    dx = jr.randint(k3, (n,), 0, cw)
    return jax.vmap(lambda m, a, b: jax.lax.dynamic_slice(m, (a, b), (h, w)))(up, dy, dx)


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    g2 = np.outer(g, g)
    return g2 / g2.sum()


def ssim_map(
    a: Float[ArrayLike, "H W"],
    b: Float[ArrayLike, "H W"],
    *,
    window: int = 5,
    sigma: float = 1.5,
    data_range: float = 2.0,
) -> Float[Array, "H W"]:
    r"""Local structural similarity (Wang et al. 2004) of two images of LIKE quantities, per pixel:

        SSIM = l c s,  l = (2 mu_a mu_b + C1)/(mu_a^2 + mu_b^2 + C1),
        c = (2 s_a s_b + C2)/(s_a^2 + s_b^2 + C2),  s = (s_ab + C3)/(s_a s_b + C3),

    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``C3 = C2/2``, ``L = data_range``; local moments with a
    normalised Gaussian window (renormalised at the borders). The standard terms, unlike the released
    DF-RISE code (whose structure term has a factor 2, whose contrast term squares only one std and whose
    "contrast" mode returns the structure term)."""
    x = jnp.asarray(a)
    y = jnp.asarray(b)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"`a` and `b` must be images of one shape, got {x.shape} and {y.shape}.")
    k = jnp.asarray(_gaussian_window(int(window), float(sigma)), x.dtype)

    def conv(v):
        return jax.scipy.signal.convolve2d(v, k, mode="same")

    norm = conv(jnp.ones_like(x))
    mu_x, mu_y = conv(x) / norm, conv(y) / norm
    vx = jnp.maximum(conv(x * x) / norm - mu_x**2, 0.0)
    vy = jnp.maximum(conv(y * y) / norm - mu_y**2, 0.0)
    cxy = conv(x * y) / norm - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    c3 = c2 / 2
    sx, sy = jnp.sqrt(vx), jnp.sqrt(vy)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    con = (2 * sx * sy + c2) / (vx + vy + c2)
    struct = (cxy + c3) / (sx * sy + c3)
    return lum * con * struct


def _flat_masks(masks, d: int, image_shape) -> Array:
    m = jnp.asarray(masks)
    hw = None if image_shape is None else tuple(_image_shape(image_shape, d))
    if m.ndim == 2 and m.shape[1] == d:
        pass
    elif m.ndim == 3 and hw is not None and tuple(m.shape[1:]) == hw:
        m = m.reshape(m.shape[0], d)
    else:
        want = f"(N, {d})" + ("" if hw is None else f" or (N, {hw[0]}, {hw[1]})")
        raise ValueError(f"`masks` must have shape {want} to match x of dimension {d}, got {tuple(m.shape)}.")
    if m.shape[0] < 2:
        raise ValueError("`masks` must hold at least 2 masks.")
    if is_concrete(m):
        mv = np.asarray(m)
        if not np.all(np.isfinite(mv)) or mv.min() < 0 or mv.max() > 1:
            raise ValueError("`masks` values must lie in [0, 1].")
    return m.astype(jnp.result_type(float))


def masking_saliency(
    fn: Callable[[Array], Array],
    x: Float[ArrayLike, " d"],
    key: jax.Array | None = None,
    *,
    masks: ArrayLike | None = None,
    n_masks: int = 500,
    p: float = 0.5,
    kind: str = "bernoulli",
    image_shape: Sequence[int] | None = None,
    cells: Sequence[int] = (4, 4),
    baseline: float | ArrayLike = 0.0,
    score: str = "mse",
    centred: bool = True,
    batch_size: int = 256,
) -> Float[Array, " d"]:
    r"""DF-RISE done right (module docstring): masks ``M_i`` (given, or ``n_masks`` drawn: ``kind`` =
    ``"bernoulli"`` per pixel or ``"smooth"`` RISE masks on ``image_shape``), masked inputs
    ``x_i = M_i x + (1 - M_i) baseline``, scores between like quantities

    - ``score="mse"``: ``s_i = -mean_j (f(x_i)_j - f(x)_j)^2`` (a scalar per mask);
    - ``score="ssim"``: the local SSIM map of ``f(x_i)`` against ``f(x)`` (per pixel; needs ``f`` to return
      an image of ``image_shape``),

    and ``S = 1/(N p) sum_i M_i s_i`` with ``p`` the mean mask value (RISE's estimator of
    ``E[s | M_j = 1]``). With ``centred`` (default) ``S = 1/(N p) sum_i M_i (s_i - s_bar)``, the covariance
    form: a pixel that does not influence ``f`` scores 0 up to Monte-Carlo error (same ranking as RISE's).
    """
    xv = _point(x)
    d = xv.shape[0]
    if kind not in ("bernoulli", "smooth"):
        raise ValueError(f"`kind` must be 'bernoulli' or 'smooth', got {kind!r}.")
    if score not in ("mse", "ssim"):
        raise ValueError(f"`score` must be 'mse' or 'ssim', got {score!r}.")
    if masks is None:
        key = check_key(key)
        n_masks = check_positive_int(n_masks, "n_masks", minimum=2)
        if kind == "bernoulli":
            masks = bernoulli_masks(key, n_masks, d, p)
        else:
            h, w = _image_shape(image_shape, d)
            masks = smooth_masks(key, n_masks, (h, w), cells, p).reshape(n_masks, d)
    m = _flat_masks(masks, d, image_shape).astype(xv.dtype)
    base = jnp.broadcast_to(jnp.asarray(baseline, xv.dtype), (d,))
    hw = _image_shape(image_shape, d) if score == "ssim" else None
    if score == "ssim":
        out_shape = jax.eval_shape(fn, xv).shape
        if out_shape != (d,):
            raise ValueError(
                f"score='ssim' needs `fn` to return an image of the input's shape ({d},), got {out_shape}."
            )
    return _masking_core(fn, xv, m, base, score, hw, bool(centred), min(int(batch_size), m.shape[0]))


@eqx.filter_jit
def _masking_core(fn, xv, m, base, score, hw, centred, batch):
    d = xv.shape[0]
    ref = fn(xv)
    data_range = jnp.maximum(jnp.max(ref) - jnp.min(ref), 1e-6)

    def one(mi):
        out = fn(mi * xv + (1 - mi) * base)
        if score == "mse":
            return -jnp.mean((out - ref) ** 2)
        return ssim_map(out.reshape(hw), ref.reshape(hw), data_range=data_range).reshape(d)

    s = jax.lax.map(one, m, batch_size=batch)
    pbar = jnp.mean(m)
    if centred:
        s = s - jnp.mean(s, axis=0, keepdims=True)
    if score == "mse":
        return (m * s[:, None]).sum(0) / (m.shape[0] * pbar)
    return (m * s).sum(0) / (m.shape[0] * pbar)


def jacobian_saliency(fn: Callable[[Array], Array], x: Float[ArrayLike, " d"]) -> Float[Array, " d"]:
    r"""Jacobian influence ``S_j = sum_i |d f_i / d x_j|`` (``|J|^T 1``) of ``f`` at ``x`` (forward mode)."""
    return _jacobian_core(fn, _point(x))


@eqx.filter_jit
def _jacobian_core(fn, xv):
    jac = jax.jacfwd(fn)(xv).reshape(-1, xv.shape[0])
    return jnp.abs(jac).sum(0)


def occlusion_saliency(
    fn: Callable[[Array], Array],
    x: Float[ArrayLike, " d"],
    *,
    baseline: float | ArrayLike = 0.0,
    patch: Sequence[int] | None = None,
    image_shape: Sequence[int] | None = None,
) -> Float[Array, " d"]:
    r"""Occlusion (Zeiler & Fergus 2014): ``e(P) = |f(x) - f(x with P -> baseline)|^2`` for every
    ``patch``-sized window ``P`` (stride 1; default a single pixel) and ``S_j`` the mean of ``e`` over the
    windows containing pixel ``j``. For an analytic model with a single-pixel patch this is the exact
    occlusion effect."""
    xv = _point(x)
    d = xv.shape[0]
    h, w = _image_shape(image_shape, d)
    ph, pw = (1, 1) if patch is None else (int(patch[0]), int(patch[1]))
    if not (1 <= ph <= h and 1 <= pw <= w):
        raise ValueError(f"`patch` {patch} must fit the image {(h, w)}.")
    base = jnp.broadcast_to(jnp.asarray(baseline, xv.dtype), (d,))
    wins = []
    for i in range(h - ph + 1):
        for j in range(w - pw + 1):
            mk = np.zeros((h, w), bool)
            mk[i : i + ph, j : j + pw] = True
            wins.append(mk.reshape(d))
    return _occlusion_core(fn, xv, jnp.asarray(np.asarray(wins), xv.dtype), base)


@eqx.filter_jit
def _occlusion_core(fn, xv, wm, base):
    ref = fn(xv)
    eff = jax.lax.map(
        lambda mk: jnp.sum((fn(mk * base + (1 - mk) * xv) - ref) ** 2), wm, batch_size=min(256, wm.shape[0])
    )
    return (wm * eff[:, None]).sum(0) / wm.sum(0)


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


def _pair_tokens(net, tokens, unconditional):
    from ..scores.networks import check_tokens

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
    """Grad-CAM maps: ``layers`` (names), ``maps`` ``(L, H, W)`` per layer, ReLU'd and scaled to max 1, on
    the image grid; ``combined`` ``(H, W)`` their sum (Paper D sums the per-layer maps); ``native`` per-layer
    maps at the layer's own resolution (dict)."""

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
    guidance: float = 1.0,
    layers: Sequence[str] | None = None,
    target: str | Callable = "guidance_energy",
) -> GradCAM:
    r"""Grad-CAM (Selvaraju et al. 2017) on the UNet's feature maps, combined over the two guidance passes
    as in Park et al. (2024): the conditional pass (``tokens``) and the unconditional one
    (``unconditional``, default all null; pass the tokens with one slot nulled for a per-token map) give
    activations ``A_c, A_u`` and gradients ``g_c = dT/dA_c``, ``g_u = dT/dA_u`` of a scalar target
    ``T(eps_u, eps_c)``; then

        g = g_u + w (g_c - g_u),  A = A_u + w (A_c - A_u),  alpha_ch = mean_pixels g_ch,
        map = ReLU(sum_ch alpha_ch A_ch),

    bilinearly upsampled to the image and scaled to max 1 per layer. Targets: ``"guidance_energy"``
    ``1/2 |eps_c - eps_u|^2`` (the conditional MMSE gap; default), ``"sum_eps"`` (Paper D's
    ``sum(eps_u) + sum(eps_c)``) or a callable. Gradients w.r.t. activations are gradients w.r.t. zero
    ``feature_offsets`` of :meth:`UNetScore.raw`."""
    net = _check_unet(net)
    tt = _check_time(net.process, t)
    xv = _point(x, dim=net.dim)
    tc, tu = _pair_tokens(net, tokens, unconditional)
    names = tuple(n for n in net.feature_names) if layers is None else tuple(layers)
    bad = [n for n in names if n not in net.feature_names]
    if bad or not names:
        raise ValueError(f"Unknown `layers` {bad or names}; the UNet's feature maps are {net.feature_names}.")
    tfn = _target_fn(target)
    return _grad_cam_jit(net, tt.astype(xv.dtype), xv, tc, tu, jnp.asarray(guidance, xv.dtype), names, tfn)


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
    r"""Relevance of the UNet's token cross-attention (one layer): ``weights`` ``(P, n + 1)`` head-mean
    attention ``A`` (guidance-combined), ``product`` ``(P, n + 1)`` head-mean ``grad A * A`` before the
    positive part, ``relevance`` ``(n + 1,)`` ``= sum_p A_bar[p, k]`` with ``A_bar = mean_heads (grad A * A)^+``
    (the last key is the time / no-token key), ``maps`` ``(n + 1, H, W)`` ``A_bar[:, k]`` upsampled to the
    image, and ``attention_maps`` ``(n + 1, H, W)`` the raw head-mean attention, upsampled."""

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
    guidance: float = 1.0,
    target: str | Callable = "guidance_energy",
) -> AttentionRelevance:
    r"""Chefer et al. (2021)'s gradient-weighted attention relevance on the UNet's token cross-attention
    layer, guidance-combined like :func:`grad_cam`. With a single cross-attention layer (and no text
    encoder or self-attention) the relevance rules reduce to ``R_iq = A_bar = mean_heads (grad A * A)^+``;
    a token's relevance is ``sum_pixels A_bar[:, k]``.

    ``grad A`` is obtained without touching the network's code: with ``G = dT/dh_out`` the gradient at the
    layer's output (a zero feature offset on ``"attention"``), ``h_out = h + W_o (A V) + b_o`` gives
    ``dT/dA[h, p, k] = sum_e (W_o^T G_p)[h, e] V[k, h, e]`` with ``V = W_v keys``.
    """
    net = _check_unet(net)
    if net.attn is None:
        raise ValueError("This UNet has no token cross-attention layer (attention=False or no tokens).")
    tt = _check_time(net.process, t)
    xv = _point(x, dim=net.dim)
    tc, tu = _pair_tokens(net, tokens, unconditional)
    return _attention_jit(
        net, tt.astype(xv.dtype), xv, tc, tu, jnp.asarray(guidance, xv.dtype), _target_fn(target)
    )


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
    guidance: float = 1.0,
    target: str | Callable = "guidance_energy",
) -> Float[Array, "S n1"]:
    """The token relevances ``sum_p A_bar[p, k]`` of :func:`attention_relevance` at every step ``(t_s, x_s)``
    of a path (e.g. a trajectory), vectorised: ``(S, n + 1)`` (last column: the time key)."""
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
        net, tv.astype(xv.dtype), xv, tc, tu, jnp.asarray(guidance, xv.dtype), _target_fn(target)
    )


def token_effect_energy(
    model: AbstractConditionalDenoiser,
    process: AbstractProcess,
    ts: Float[ArrayLike, " S"],
    xs: Float[ArrayLike, "S d"],
    tokens: Int[ArrayLike, " n"],
    slot: int,
    *,
    given: Sequence[int] | None = None,
) -> Float[Array, " S"]:
    r"""The pathwise information rate ``1/2 |eps_hat(x_s | y_S) - eps_hat(x_s | y_{S \ k})|^2`` at every step
    ``(t_s, x_s)`` of a path (the integrand of :func:`token_information_rate` at the path's own states
    instead of an average over fresh noise), vectorised: ``(S,)``."""
    tv = as_float_array(ts, "ts", ndim=1)
    process.check_time(tv, "ts", allow_zero=False)
    xv = as_float_array(xs, "xs", ndim=2)
    if xv.shape[0] != tv.shape[0]:
        raise ValueError(f"`xs` must hold one state per time: {tv.shape[0]} rows, got {xv.shape}.")
    fn = token_effect_fn(model, process, float(tv[0]), tokens, slot, given=given)
    if xv.shape[1] != fn.full.dim:
        raise ValueError(f"`xs` must have {fn.full.dim} columns (the model's dimension), got {xv.shape[1]}.")
    return _effect_path_jit(fn, tv, xv)


@eqx.filter_jit
def _effect_path_jit(fn, ts, xs):
    def one(t, x):
        g = eqx.tree_at(lambda f: f.t, fn, t.astype(fn.t.dtype))(x)
        return 0.5 * jnp.sum(g**2)

    return jax.vmap(one)(ts, xs)


def saliency_scores(
    saliency: Float[ArrayLike, "*b d"], region: Bool[ArrayLike, "*b d"], *, q: float | None = None
) -> dict[str, np.ndarray]:
    r"""Scores of saliency maps against a ground-truth region (per map, numpy):

    - ``pointing``: 1 if the most salient pixel lies in the region (pointing game, Zhang et al. 2018);
    - ``iou``: IoU of the top-``q`` fraction of pixels with the region (``q`` defaults to the region's
      fraction of the image, so a perfect map scores 1 and a random one about ``q / (2 - q)``);
    - ``mass``: ``sum_region S^+ / sum S^+`` (mass fraction of the positive part; a uniform map scores the
      region's fraction).
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


# =====================================================================================================
# 5. insertion / deletion
# =====================================================================================================
@dataclass(frozen=True, eq=False)
class InsertionDeletion:
    """Insertion or deletion game results (numpy).

    - ``mode``; ``fractions`` ``(K + 1,)`` fraction of pixels revealed (insertion) or removed (deletion);
    - ``curves`` ``{method: (N, K + 1)}`` fidelity curves, plus ``"random"`` (mean over random orders) and
      ``"oracle"`` (greedy order);
    - ``auc`` ``{method: (N,)}`` normalised trapezoid AUC per sample (also for random and oracle);
    - ``score`` ``{method: (N,)}`` ``(AUC - random) / (oracle - random)`` per sample (1 = oracle, 0 =
      random; for deletion both differences are negative, so the same formula applies);
    - ``summary`` ``{method: {"auc", "auc_se", "score", "score_se"}}`` means over samples.
    """

    mode: str
    fractions: np.ndarray
    curves: dict
    auc: dict
    score: dict
    summary: dict


def normalised_auc(curve: Float[ArrayLike, "*b K1"]) -> np.ndarray:
    """Normalised trapezoid AUC over equally spaced fractions in ``[0, 1]``:
    ``(sum a - a_0/2 - a_K/2) / K`` (X-Diffusion's formula, applied per curve)."""
    c = np.asarray(curve, float)
    if c.shape[-1] < 2:
        raise ValueError("A curve needs at least 2 points.")
    k = c.shape[-1] - 1
    return (c.sum(-1) - 0.5 * c[..., 0] - 0.5 * c[..., -1]) / k


def _reveal_masks(order, n_pix, stride, k_steps):
    """(K+1, d) masks: row k reveals the first min(k * stride, d) pixels of ``order``."""
    rank = jnp.zeros(n_pix, jnp.int32).at[order].set(jnp.arange(n_pix, dtype=jnp.int32))
    counts = jnp.minimum(jnp.arange(k_steps + 1) * stride, n_pix)
    return rank[None, :] < counts[:, None]


def _fidelity(fn, x, ctx, base, inputs):
    """1 - |f(x') - f(x)|^2 / |f(base) - f(x)|^2 for inputs (M, d)."""
    call = lambda v: fn(v, ctx)
    ref = call(x)
    den = jnp.maximum(jnp.sum((call(base) - ref) ** 2), 1e-12)
    out = jax.lax.map(call, inputs, batch_size=min(256, inputs.shape[0]))
    return 1.0 - jnp.sum((out - ref[None]) ** 2, axis=-1) / den


def _curve_for_order(fn, x, ctx, base, order, insertion, stride, k_steps):
    """Fidelity curve of one pixel order; ``insertion`` is a traced boolean (one compilation for both games)."""
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
    call = lambda v: fn(v, ctx)
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

    - ``fn``: ``f(x)`` (or ``f(x, c)`` with ``c = context[i]``, a per-sample pytree with leading axis
      ``N``), e.g. the one-step prediction ``x0_hat(t, .)`` at the analysed step;
    - ``saliency``: ``{method: maps (N, d) or (N, H, W)}``; pixels are ranked by decreasing saliency;
    - ``mode``: ``"insertion"`` (start from ``baseline``, reveal ``x``) or ``"deletion"`` (start from ``x``,
      set pixels to ``baseline``); ``stride`` pixels per step (``K = ceil(d / stride)`` steps);
    - fidelity ``1 - |f(x') - f(x)|^2 / |f(baseline) - f(x)|^2`` (0 at the baseline, 1 at ``x``);
    - ``n_random`` random orders per sample give the floor; the oracle (``oracle=True``) the ceiling: the
      best, in this game, of four greedy orders built with full access to ``f`` (``4 K d`` evaluations per
      sample): forward (add the ``stride`` pixels that raise the fidelity most / remove those that lower it
      most) and backward (from the other end: remove the least harmful pixels first and insert them last /
      add the least helpful first and delete them last). Forward single-pixel steps are myopic when pixels
      are redundant (a region's evidence needs several of its pixels: removing one changes nothing); the
      backward ones start where each pixel matters alone. The oracle is a strong reference, not a proven
      optimum (the exact optimum is a search over all orders).

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


# =====================================================================================================
# 6. step schedules
# =====================================================================================================
def paper_timesteps(
    n_steps: int = 30, lam: float = 60.0, dense: str = "early", n_train_steps: int = 1000
) -> np.ndarray:
    r"""Park, Ju & Lee (2024)'s exponential scheduler exactly as in the released code, in discrete DDPM
    timesteps (``T = n_train_steps``): ``a = exp(ln T / (N + lam))``;

    - ``"early"`` (semantic): ``t_i = T - floor(a^{i + 1 + lam})``, ``i = 0..N-1``, with ``T - 1``
      prepended and the last entry dropped (``999, 893, 884, 875, ..., 206, 143, 74`` for the defaults);
    - ``"late"`` (delicate): ``floor(a^{i + 1 + lam})`` sorted in decreasing order (clipped to ``T - 1``).

    The continuous counterpart used by the samplers is :func:`diffsim.sampling.grids.exponential`."""
    n = check_positive_int(n_steps, "n_steps", minimum=2)
    big_t = check_positive_int(n_train_steps, "n_train_steps", minimum=2)
    if dense not in ("early", "late"):
        raise ValueError(f"`dense` must be 'early' or 'late', got {dense!r}.")
    if not lam >= 0:
        raise ValueError(f"`lam` must be >= 0, got {lam}.")
    a = math.exp(math.log(big_t) / (n + lam))
    pw = np.floor(a ** (np.arange(n) + 1 + lam)).astype(int)
    if dense == "early":
        ts = big_t - pw
        return np.concatenate([[big_t - 1], ts[:-1]])
    return np.sort(np.minimum(pw, big_t - 1))[::-1].copy()


def information_schedule(
    process: AbstractProcess,
    n_steps: int,
    log_snr: ArrayLike,
    density: ArrayLike,
    *,
    floor: float = 0.1,
    t_start: float | None = None,
    t_end: float | None = None,
) -> Float[Array, " n1"]:
    r"""An information-equalising reverse grid (ITD's FIG schedule, Kong et al. 2023): with a non-negative
    density ``q(lambda)`` on a log-SNR grid (linearly interpolated, zero outside it) mixed with a uniform
    floor, ``q_f = (1 - floor) q / \int q + floor / (lambda_1 - lambda_0)`` on ``[lambda_0, lambda_1] =
    [lambda(t_start), lambda(t_end)]``, the ``n_steps + 1`` times sit at equal quantiles of
    ``F(lambda) = \int_{lambda_0}^{lambda} q_f``: each step carries the same share of the information.
    The floor (default 10%) keeps steps everywhere (the density may vanish where nothing is decided)."""
    process = _check_process(process)
    n = check_positive_int(n_steps, "n_steps")
    if not 0.0 <= float(floor) <= 1.0:
        raise ValueError(f"`floor` must lie in [0, 1], got {floor}.")
    lam = np.asarray(log_snr, float).reshape(-1)
    q = np.asarray(density, float).reshape(-1)
    if lam.shape != q.shape or lam.size < 2:
        raise ValueError(
            f"`log_snr` and `density` must be 1-D of one length >= 2, got {lam.shape} and {q.shape}."
        )
    if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(q))) or np.any(q < 0):
        raise ValueError("`density` must be finite and non-negative (and `log_snr` finite).")
    order = np.argsort(lam)
    lam, q = lam[order], q[order]
    t0, t1 = _grids.reverse_endpoints(process, t_start, t_end)
    l0, l1 = float(process.log_snr(t0)), float(process.log_snr(t1))
    fine = np.linspace(l0, l1, 4001)
    qf = np.interp(fine, lam, q, left=0.0, right=0.0)
    mass = np.trapezoid(qf, fine) if hasattr(np, "trapezoid") else np.trapz(qf, fine)
    if mass <= 0 and floor < 1:
        floor = 1.0  # no information anywhere: fall back to uniform in log-SNR
    qf = (1 - floor) * (qf / mass if mass > 0 else 0 * qf) + floor / (l1 - l0)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (qf[1:] + qf[:-1]) * np.diff(fine))])
    cdf /= cdf[-1]
    targets = np.linspace(0.0, 1.0, n + 1)
    lam_t = np.interp(targets, cdf, fine)
    ts = np.array(process.t_from_log_snr(jnp.asarray(lam_t)), dtype=float)
    ts[0], ts[-1] = t0, t1
    ts = np.minimum.accumulate(ts)  # guard against round-off
    if not np.all(np.diff(ts) < 0):
        raise ValueError("The information schedule is degenerate (repeated times); increase `floor`.")
    return jnp.asarray(ts)


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


def step_schedule(
    process: AbstractProcess,
    n_steps: int,
    kind: str = "uniform",
    *,
    lam: float = 60.0,
    log_snr: ArrayLike | None = None,
    density: ArrayLike | None = None,
    floor: float = 0.1,
    t_start: float | None = None,
    t_end: float | None = None,
) -> Float[Array, " n1"]:
    """A reverse time grid of ``n_steps`` steps: ``"uniform"`` in ``t``; ``"early"`` / ``"late"``: Park et
    al.'s exponential early-dense / late-dense schedule (:func:`diffsim.sampling.grids.exponential`, ``lam``);
    ``"logsnr"``: uniform in log-SNR; ``"information"``: :func:`information_schedule` of ``density`` on
    ``log_snr``."""
    process = _check_process(process)
    if kind not in SCHEDULES:
        raise ValueError(f"Unknown schedule {kind!r}; schedules are {SCHEDULES}.")
    if kind == "uniform":
        return _grids.uniform(process, n_steps, t_start, t_end)
    if kind in ("early", "late"):
        return _grids.exponential(process, n_steps, lam, kind, t_start, t_end)
    if kind == "logsnr":
        return _grids.logsnr_uniform(process, n_steps, t_start, t_end)
    if log_snr is None or density is None:
        raise ValueError(
            "The 'information' schedule needs `log_snr` and `density` (see information_density)."
        )
    return information_schedule(process, n_steps, log_snr, density, floor=floor, t_start=t_start, t_end=t_end)
