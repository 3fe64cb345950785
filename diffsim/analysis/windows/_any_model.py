r"""Critical windows on any model: the noising-denoising protocol with a classifier on the outputs.

Li & Chen ("Critical windows: non-asymptotic theory for feature emergence in diffusion models", ICML 2024)
measure windows on real models by *noising-denoising*: take a clean sample ``x0``, noise it to ``T_hat`` with
the forward law ``x_{T_hat} = alpha(T_hat) x0 + sigma(T_hat) z``, run the model's reverse sampler from
``T_hat`` back to the end, and ask whether a feature of ``x0`` (its class under a classifier) survives. With
``c(.)`` the classifier's class, the *feature retention* is

    R(T_hat) = P( c(Y) = c(x0) ),    Y = denoise(noise(x0, T_hat)),

averaged over the clean samples and ``n_repeats`` independent re-denoisings of each. At class level the two
total variations of the exact theory (``diffsim.analysis.windows.window_curve``) become

    keep:    TV( law c(Y) | c(x0) = a , delta_a ) = 1 - R_a(T_hat),
    forget:  TV( law c(Y) | c(x0) = a , law c(fresh sample) ) = 1/2 sum_b | P(c(Y) = b | a) - q_b |,

averaged over the original classes ``a`` with their frequencies among the ``x0``; ``q`` is the class
frequency of fresh samples of the same sampler started from the prior. Both are images of the exact TVs
under the classifier, hence lower bounds of them (data processing), equal to them when the classes are
well separated. The critical window is ``[keep, forget]``: ``keep`` the last ``T_hat`` with ``1 - R <=
eps``, ``forget`` the first with the forget TV ``<= eps`` (:func:`~diffsim.analysis.windows.read_window`).

Confidence intervals: the re-denoisings of one sample are correlated (they share ``x0``), so standard errors
are *cluster* standard errors over the clean samples and the intervals are a percentile bootstrap that
resamples clean samples (with all their repeats) and fresh samples.
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
from jaxtyping import Array, ArrayLike

from ..._types import ArrayOrSequence
from ..._validation import as_float_array, check_key, check_positive_int, check_probability
from ...sampling import simulate as _simulate
from ...scores._base import AbstractScore
from ...scores.guidance import AbstractNoisyClassifier
from ._curves import WindowCurve
from ._groups import _check_eps
from ._membership import _area
from ._reading import CriticalWindow, read_window


__all__ = ["FeatureRetention", "feature_retention"]

_SAMPLERS = {"sde": "ddpm", "ode": "ddim"}


class FeatureRetention(eqx.Module):
    r"""Result of :func:`feature_retention`: the feature-retention curve and its critical window.

    Per ``T_hat`` (sorted ascending, ``n_t`` of them; ``N`` clean samples, ``C`` classes seen).

    Attributes:
        t_hats: the noising times, sorted ascending, shape ``(n_t,)``.
        retention: the fraction of re-denoised outputs whose class equals the original's, ``R(T_hat)``,
            shape ``(n_t,)``.
        retention_stderr: cluster standard error of ``retention`` over clean samples.
        retention_low: lower end of the percentile-bootstrap interval at level ``confidence`` (resampling
            clean samples).
        retention_high: upper end of that interval.
        soft_retention: the mean probability the classifier gives the original class,
            ``E[softmax(logits(Y))_{c(x0)}]`` (the soft label of ``window_curve``'s ``retention_init``; NaN
            for a classifier that returns discrete features).
        soft_retention_stderr: cluster standard error of ``soft_retention``.
        keep_curve: a :class:`WindowCurve` whose ``tv`` is the class-level keep TV ``1 - R``
            (``route="classifier"``).
        forget_curve: a :class:`WindowCurve` whose ``tv`` is the class-level forget TV (module docstring,
            bootstrap bias-corrected).
        window: the :class:`CriticalWindow` ``[keep, forget]`` read at ``eps``.
        per_sample: ``(n_t, N)``: each sample's fraction of retained repeats.
        membership_score: ``(N,)``: the normalised area under ``per_sample`` (:func:`membership_scores`
            with ``kind="area"``).
        labels: ``(N,)``: the original classes (codes into ``classes``).
        classes: ``(C,)``: the class values.
        class_retention: ``(n_t, C)``: ``R`` per original class (NaN for a class without samples).
        fresh_frequencies: ``(C,)``: class frequencies of fresh samples.
        sampler: ``"sde"`` or ``"ode"``, as passed.
        method: the sampler method used.
        n_repeats: re-denoisings per clean sample and ``T_hat``.
        n_steps: the ``n_steps`` setting.
        t_end: the end time of every run.
        eps: the tolerance the window was read at.
        confidence: the level of the bootstrap intervals.
        n_bootstrap: the number of bootstrap resamples.
    """

    t_hats: np.ndarray
    retention: np.ndarray
    retention_stderr: np.ndarray
    retention_low: np.ndarray
    retention_high: np.ndarray
    soft_retention: np.ndarray
    soft_retention_stderr: np.ndarray
    keep_curve: WindowCurve
    forget_curve: WindowCurve
    window: CriticalWindow
    per_sample: np.ndarray
    membership_score: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    class_retention: np.ndarray
    fresh_frequencies: np.ndarray
    sampler: str
    method: str
    n_repeats: int
    n_steps: int
    t_end: float
    eps: float
    confidence: float
    n_bootstrap: int


# -----------------------------------------------------------------------------------------------------
# inputs
# -----------------------------------------------------------------------------------------------------
def _flat_x0(score: AbstractScore, x0: Any) -> Array:
    """``x0`` as ``(N, d)``: accepts ``(N, d)`` or ``(N, *event_shape)`` of a score with an event shape."""
    arr = as_float_array(x0, "x0")
    d = score.dim
    event_shape = tuple(getattr(score, "event_shape", (d,)))
    if arr.ndim == 2 and arr.shape[1] == d:
        flat = arr
    elif arr.ndim == 1 + len(event_shape) and tuple(arr.shape[1:]) == event_shape:
        flat = arr.reshape(arr.shape[0], d)
    else:
        raise ValueError(
            f"`x0` must have shape (N, {d}) or (N, *{event_shape}) (clean samples of the score's space), "
            f"got {tuple(arr.shape)}."
        )
    if flat.shape[0] < 2:
        raise ValueError(f"`x0` needs at least 2 clean samples, got {flat.shape[0]}.")
    return flat


def _check_t_hats(process: Any, t_hats: Any, t_end: float) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(t_hats, dtype=float))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("`t_hats` must be a scalar or a non-empty 1-D array of noising times.")
    process.check_time(arr, "t_hats", allow_zero=False)
    if np.any(arr <= t_end):
        raise ValueError(
            f"`t_hats` must exceed the sampler's end time t_end={t_end:g} (the process's time range is "
            f"({t_end:g}, {process.t_max:g}]); got min {arr.min():g}."
        )
    if np.unique(arr).size != arr.size:
        raise ValueError("`t_hats` contains repeated times.")
    return np.sort(arr)


def _check_grid(process: Any, grid: Any) -> str | np.ndarray:
    if isinstance(grid, str):
        if grid not in ("uniform", "logsnr"):
            raise ValueError(f"`grid` must be 'uniform', 'logsnr' or an array of times, got {grid!r}.")
        return grid
    sched = np.asarray(grid, dtype=float)
    if sched.ndim != 1 or sched.size < 1 or not np.all(np.isfinite(sched)):
        raise ValueError("`grid` must be 'uniform', 'logsnr' or a non-empty 1-D array of finite times.")
    if np.any(np.diff(sched) >= 0):
        raise ValueError("`grid` (a schedule of times) must be strictly decreasing.")
    process.check_time(sched, "grid", allow_zero=False)
    return sched


def _reverse_grid(process: Any, t_start: float, t_end: float, n_steps: int, grid: Any, dtype: Any) -> Array:
    """The reverse grid from ``t_start`` to ``t_end``: uniform/log-SNR with ``n_steps`` steps, or the
    schedule's times below ``t_start`` (``t_start`` first, as diffusers' img2img does with ``strength``)."""
    if isinstance(grid, str):
        t0 = jnp.asarray(t_start, dtype)
        if grid == "uniform":
            return jnp.linspace(t0, jnp.asarray(t_end, dtype), n_steps + 1)
        lam = jnp.linspace(process.log_snr(t0), process.log_snr(jnp.asarray(t_end, dtype)), n_steps + 1)
        return process.t_from_log_snr(lam).at[0].set(t0).at[-1].set(t_end)
    below = grid[grid < t_start * (1.0 - 1e-9)]
    if below.size == 0 or below[-1] > t_end * (1.0 + 1e-9):
        below = np.append(below, t_end)
    return jnp.asarray(np.concatenate([[t_start], below]), dtype)


@eqx.filter_jit
def _renoise(process: Any, x0: Array, t: Array, keys: Array) -> Array:
    return jax.vmap(lambda k, xi: process.sample_marginal(k, xi, t))(keys, x0).astype(x0.dtype)


@eqx.filter_jit
def _noisy_log_probs(classifier: AbstractNoisyClassifier, t: Array, x: Array) -> Array:
    if hasattr(classifier, "logits_batch"):
        return classifier.logits_batch(jnp.broadcast_to(t, x.shape[:1]), x)
    if hasattr(classifier, "log_probs"):
        return jax.vmap(lambda xi: classifier.log_probs(t, xi))(x)
    return jax.vmap(lambda xi: jnp.stack([classifier.log_prob(t, xi, c) for c in classifier.classes]))(x)


class _Classify:
    """Applies the user's classifier in batches: ``(B, d) -> (B,)`` discrete features or ``(B, C)`` logits."""

    def __init__(self, classifier: Any, event_shape: tuple[int, ...], t_end: float, batch: int):
        if classifier is None:
            raise ValueError(
                "`classifier` is required: a diffsim noisy classifier (e.g. CallableClassifier) or a "
                "function f(batch (B, *event_shape)) -> logits (B, C) or discrete features (B,)."
            )
        if not (isinstance(classifier, AbstractNoisyClassifier) or callable(classifier)):
            raise TypeError(
                "`classifier` must be a diffsim noisy classifier or a callable, got "
                f"{type(classifier).__name__}."
            )
        self.classifier, self.event_shape, self.t_end, self.batch = classifier, event_shape, t_end, batch
        self.kind: str | None = None
        self.n_classes: int | None = None

    def _call(self, x: Array) -> np.ndarray:
        if isinstance(self.classifier, AbstractNoisyClassifier):
            return np.asarray(_noisy_log_probs(self.classifier, jnp.asarray(self.t_end, x.dtype), x))
        return np.asarray(self.classifier(x.reshape((x.shape[0], *self.event_shape))))

    def __call__(self, x: Array) -> np.ndarray:
        outs = []
        for i in range(0, x.shape[0], self.batch):
            rows = x[i : i + self.batch]
            o = self._call(rows)
            if o.ndim not in (1, 2) or o.shape[0] != rows.shape[0]:
                raise ValueError(
                    "`classifier` must return one row per sample: logits (B, C) or discrete features (B,); "
                    f"got shape {o.shape} for a batch of {rows.shape[0]}."
                )
            outs.append(o)
        out = np.concatenate(outs, axis=0)
        kind = "logits" if out.ndim == 2 else "features"
        if self.kind is None:
            self.kind, self.n_classes = kind, (out.shape[1] if kind == "logits" else None)
        elif kind != self.kind or (kind == "logits" and out.shape[1] != self.n_classes):
            raise ValueError(f"`classifier` returned inconsistent output shapes ({out.shape}).")
        if kind == "logits":
            if out.shape[1] < 2:
                raise ValueError(f"`classifier` logits need at least 2 classes, got shape {out.shape}.")
            if not np.all(np.isfinite(out)):
                raise ValueError("`classifier` returned non-finite logits.")
        return out


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# -----------------------------------------------------------------------------------------------------
# estimators
# -----------------------------------------------------------------------------------------------------
def _forget_tv(hist: np.ndarray, labels: np.ndarray, fresh: np.ndarray, n_classes: int) -> np.ndarray:
    """``sum_a pi_a 1/2 sum_b |mean_{i: l_i = a} hist[:, i, b] - q_b|`` for ``hist`` (n_t, N, C)."""
    q = np.bincount(fresh, minlength=n_classes) / fresh.size
    out = np.zeros(hist.shape[0])
    for a in np.unique(labels):
        sel = labels == a
        out += sel.mean() * 0.5 * np.abs(hist[:, sel].mean(axis=1) - q[None]).sum(axis=-1)
    return out


def _delta_stderr(v: np.ndarray) -> np.ndarray:
    """Cluster standard error of the mean over axis 1 of ``v`` (n_t, N)."""
    return v.std(axis=1, ddof=1) / math.sqrt(v.shape[1])


def feature_retention(
    score: AbstractScore,
    x0: ArrayLike,
    t_hats: ArrayOrSequence,
    *,
    classifier: AbstractNoisyClassifier | Callable[..., Any] | None,
    key: jax.Array,
    n_repeats: int = 8,
    sampler: str = "sde",
    method: str | None = None,
    n_steps: int = 50,
    grid: str | Sequence[float] | ArrayLike = "uniform",
    t_end: float | None = None,
    final_denoise: bool = False,
    labels: ArrayLike | None = None,
    eps: float = 0.05,
    n_fresh: int | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    chunk_size: int | None = None,
    classifier_batch: int = 4096,
    **method_options: Any,
) -> FeatureRetention:
    r"""Li & Chen (2024)'s noising-denoising protocol on any diffsim score, read by a classifier.

    For every ``T_hat`` of ``t_hats`` and every clean sample ``x0_i`` (``n_repeats`` times): noise exactly,
    ``x_{T_hat} = alpha(T_hat) x0_i + sigma(T_hat) z`` (the process's forward law), run ``method`` from
    ``T_hat`` to ``t_end`` with :func:`diffsim.simulate` (one call per ``T_hat`` over all ``N n_repeats``
    rows), classify the output and record whether its class equals the original's. The retention
    ``R(T_hat)``, the class-level keep/forget TVs and the critical window ``[keep, forget]`` at ``eps``
    follow (module docstring); ``n_fresh`` prior samples run through the same sampler give the class
    frequencies ``q`` of the forget TV.

    Randomness: ``key`` splits into the forward noise, the reverse noise, the fresh samples and the
    bootstrap; row ``i n_repeats + r`` uses the forward normals of ``fold_in(k_noise, row)`` at *every*
    ``T_hat`` and the same reverse-noise key (common random numbers: smooth curves; fixed key, same result).

    Args:
        score: any diffsim score (an exact mixture, a trained network, an adapted external model).
        x0: clean samples ``(N, d)`` or ``(N, *event_shape)``.
        t_hats: noising times, forward time of ``score.process`` in ``(t_end, t_max]``.
        classifier: a diffsim noisy classifier (``log_probs`` evaluated at ``t_end``; e.g.
            :class:`~diffsim.scores.adapters.CallableClassifier`, or the exact
            :class:`~diffsim.scores.guidance.MixtureClassifier`), or any function ``f(batch (B,
            *event_shape)) -> logits (B, C)`` (class = argmax) or ``-> features (B,)`` (compared for
            equality). Required.
        key: PRNG key.
        n_repeats: re-denoisings per clean sample and ``T_hat`` (>= 1).
        sampler: ``"sde"`` (default method ``"ddpm"``, the reverse SDE) or ``"ode"`` (``"ddim"``, the
            probability-flow ODE).
        method: any sampler name of :func:`diffsim.simulate` (overrides the default of ``sampler``).
        n_steps: steps of a ``"uniform"``/``"logsnr"`` grid from ``T_hat`` to ``t_end``.
        grid: ``"uniform"``, ``"logsnr"``, or a decreasing schedule of times (e.g. a diffusers pipeline's
            ``times(timesteps)``): each run uses ``T_hat`` followed by the schedule's times below it.
        t_end: the end time (default the schedule's last time, else ``process.t_min``).
        final_denoise: end with the denoiser (as diffusers and k-diffusion do).
        labels: optional original classes ``(N,)`` (logits classifiers: class indices); default the
            classifier's class of ``x0``.
        eps: tolerance of the window.
        n_fresh: prior samples for the forget TV's ``q`` (default ``N n_repeats``).
        confidence: level of the bootstrap intervals.
        n_bootstrap: bootstrap resamples.
        chunk_size: :func:`diffsim.simulate`'s ``chunk_size`` (memory).
        classifier_batch: rows per classifier call.
        **method_options: options of the sampler method (e.g. ``eta`` for DDIM).

    Returns:
        A :class:`FeatureRetention`.
    """
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim score, got {type(score).__name__}.")
    key = check_key(key)
    n_repeats = check_positive_int(n_repeats, "n_repeats")
    n_steps = check_positive_int(n_steps, "n_steps")
    if sampler not in _SAMPLERS:
        raise ValueError(f"`sampler` must be 'sde' or 'ode', got {sampler!r}.")
    method = _SAMPLERS[sampler] if method is None else method
    eps = _check_eps(eps)
    confidence = check_probability(confidence, "confidence")
    n_bootstrap = check_positive_int(n_bootstrap, "n_bootstrap", minimum=10)
    classifier_batch = check_positive_int(classifier_batch, "classifier_batch")
    process = score.process
    grid = _check_grid(process, grid)
    if t_end is None:
        t_end = float(grid[-1]) if not isinstance(grid, str) else float(process.t_min)
    process.check_time(t_end, "t_end", allow_zero=False)
    t_end = float(t_end)
    ts = _check_t_hats(process, t_hats, t_end)
    x = _flat_x0(score, x0)
    n = x.shape[0]
    n_fresh = n * n_repeats if n_fresh is None else check_positive_int(n_fresh, "n_fresh", minimum=2)
    event_shape = tuple(getattr(score, "event_shape", (score.dim,)))
    classify = _Classify(classifier, event_shape, t_end, classifier_batch)

    # original classes
    out0 = classify(x)
    if labels is None:
        orig = np.argmax(out0, axis=1) if classify.kind == "logits" else out0
    else:
        orig = np.asarray(labels)
        if orig.shape != (n,):
            raise ValueError(f"`labels` must have shape (N,) = ({n},), got {orig.shape}.")
        if classify.kind == "logits":
            if (
                not np.issubdtype(orig.dtype, np.integer)
                or orig.min() < 0
                or orig.max() >= classify.n_classes
            ):
                raise ValueError(f"`labels` must be class indices in [0, {classify.n_classes}).")

    # noising-denoising: one simulate call per T_hat over all N x n_repeats rows
    k_noise, k_rev, k_fresh, k_boot = jr.split(key, 4)
    rows = jnp.repeat(x, n_repeats, axis=0)
    keys = jax.vmap(lambda i: jr.fold_in(k_noise, i))(jnp.arange(rows.shape[0]))
    sim = dict(key=k_rev, chunk_size=chunk_size, final_denoise=final_denoise, **method_options)
    outs = []
    for t_hat in ts:
        x_t = _renoise(process, rows, jnp.asarray(t_hat, x.dtype), keys)
        g = _reverse_grid(process, float(t_hat), t_end, n_steps, grid, x.dtype)
        outs.append(classify(_simulate(score, method, g, x=x_t, **sim).x))
    g_fresh = _reverse_grid(process, float(process.t_max), t_end, n_steps, grid, x.dtype)
    k_prior, sim["key"] = jr.split(k_fresh)
    x_prior = process.prior_sample(k_prior, (n_fresh, score.dim)).astype(x.dtype)  # the states' dtype
    fresh_out = classify(_simulate(score, method, g_fresh, x=x_prior, **sim).x)

    # classes as codes
    if classify.kind == "logits":
        classes = np.arange(classify.n_classes)
        codes_orig = orig.astype(int)
        codes_out = np.stack([np.argmax(o, axis=1) for o in outs]).reshape(ts.size, n, n_repeats)
        codes_fresh = np.argmax(fresh_out, axis=1)
        soft = np.stack(
            [np.exp(_log_softmax(o))[np.arange(o.shape[0]), np.repeat(codes_orig, n_repeats)] for o in outs]
        ).reshape(ts.size, n, n_repeats)
        soft_per = soft.mean(axis=2)
        soft_ret, soft_se = soft_per.mean(axis=1), _delta_stderr(soft_per)
    else:
        allv = np.concatenate([orig.reshape(-1), np.concatenate(outs).reshape(-1), fresh_out.reshape(-1)])
        classes, inv = np.unique(allv, return_inverse=True)
        codes_orig = inv[:n]
        codes_out = inv[n : n + ts.size * n * n_repeats].reshape(ts.size, n, n_repeats)
        codes_fresh = inv[n + ts.size * n * n_repeats :]
        soft_ret = soft_se = np.full(ts.size, np.nan)
    n_classes = classes.size

    # retention, its cluster standard error and bootstrap interval
    match = codes_out == codes_orig[None, :, None]
    per_sample = match.mean(axis=2)  # (n_t, N)
    retention = per_sample.mean(axis=1)
    ret_se = _delta_stderr(per_sample)
    hist = np.stack([(codes_out == c).mean(axis=2) for c in range(n_classes)], axis=-1)  # (n_t, N, C)
    forget_raw = _forget_tv(hist, codes_orig, codes_fresh, n_classes)
    rng = np.random.default_rng(np.asarray(jr.key_data(k_boot)).astype(np.uint64).tolist())
    boot_ret = np.empty((n_bootstrap, ts.size))
    boot_forget = np.empty((n_bootstrap, ts.size))
    for b in range(n_bootstrap):
        idx = rng.integers(0, n, n)
        fidx = rng.integers(0, n_fresh, n_fresh)
        boot_ret[b] = per_sample[:, idx].mean(axis=1)
        boot_forget[b] = _forget_tv(hist[:, idx], codes_orig[idx], codes_fresh[fidx], n_classes)
    alpha = 1.0 - confidence
    ret_lo, ret_hi = np.quantile(boot_ret, [alpha / 2, 1 - alpha / 2], axis=0)
    forget_tv = 2.0 * forget_raw - boot_forget.mean(axis=0)  # bootstrap bias correction of |.|
    forget_se = boot_forget.std(axis=0, ddof=1)

    class_ret = np.full((ts.size, n_classes), np.nan)
    for c in range(n_classes):
        if np.any(codes_orig == c):
            class_ret[:, c] = per_sample[:, codes_orig == c].mean(axis=1)
    nan = np.full(ts.size, np.nan)

    def curve(tv, se):
        return WindowCurve(
            ts, tv, se, retention, ret_se, retention, ret_se, nan, (), (), sampler, "classifier", t_end
        )

    keep_curve, forget_curve = curve(1.0 - retention, ret_se), curve(forget_tv, forget_se)
    wk, wf = read_window(keep_curve, eps), read_window(forget_curve, eps)
    window = CriticalWindow(wk.upper, wf.lower, wk.upper_stderr, wf.lower_stderr, eps)
    return FeatureRetention(
        t_hats=ts,
        retention=retention,
        retention_stderr=ret_se,
        retention_low=ret_lo,
        retention_high=ret_hi,
        soft_retention=soft_ret,
        soft_retention_stderr=soft_se,
        keep_curve=keep_curve,
        forget_curve=forget_curve,
        window=window,
        per_sample=per_sample,
        membership_score=_area(ts, per_sample),
        labels=codes_orig,
        classes=classes,
        class_retention=class_ret,
        fresh_frequencies=np.bincount(codes_fresh, minlength=n_classes) / n_fresh,
        sampler=sampler,
        method=str(method),
        n_repeats=n_repeats,
        n_steps=n_steps,
        t_end=t_end,
        eps=eps,
        confidence=confidence,
        n_bootstrap=n_bootstrap,
    )
