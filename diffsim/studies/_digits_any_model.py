r"""Parts of the ``digits`` study that run the model-agnostic analyses on its trained UNet and classifier.

No retraining: every part takes the UNet (``ctx.results["model"].ema``) and the evaluator classifier
(``ctx.results["evaluator"].classifier``) of the earlier parts (docs/digits.md, "The trained UNet as any
model").

1. ``class_windows``: Li & Chen (ICML 2024)'s noising-denoising protocol
   (:func:`~diffsim.analysis.windows.feature_retention`) on real training and held-out digits with the
   unconditional branch of the UNet, reverse SDE (DDPM) and ODE (DDIM); retention curve, window ``[keep,
   forget]`` and the membership-inference AUC between training and held-out digits.
2. ``sd_protocol``: the Stable Diffusion protocol's structure: a diffusers-style discrete DDPM schedule
   (:func:`~diffsim.analysis.windows.ddpm_alphas_cumprod`), the UNet adapted as a model of integer timesteps
   (:class:`~diffsim.scores.adapters.CallableScore`, ``time_input="timestep"``), a clean digit noised with
   diffusers' ``add_noise`` to ``k`` inference steps before the end and re-denoised over the last ``k``
   steps with classifier-free guidance (:func:`~diffsim.analysis.windows.renoise_retention`).
3.-4. ``guidance_sweep`` and ``class_information`` live in ``_digits_any_model_info``.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.windows import (
    ddpm_alphas_cumprod,
    feature_retention,
    membership_auc,
    renoise_denoise,
)
from ..data.digits import load_digits
from ..processes import VP
from ..sampling import grids, sweep_fn
from ..scores import ClassifierFreeGuidance
from ..scores.adapters import CallableScore
from ._figures import digits_any_model as figures
from ._runner import Check, Figure, Part, PartContext, check


__all__ = ["PARTS", "QUICK", "check_config"]

_SALT = 1017  # keys of these parts: fold_in(key(seed), _SALT), independent of the earlier parts' keys

QUICK = dict(
    windows_n_digits=12,
    windows_repeats=3,
    windows_t_hats=(0.05, 0.2, 0.4, 0.6, 1.0),
    windows_steps=6,
    sd_inference_steps=10,
    sd_ks=(2, 5, 10),
    sd_repeats=2,
    sd_per_class=2,
    sweep_scales=(0.0, 1.0, 3.0),
    sweep_targets=(3,),
    sweep_n=48,
    information_n=2,
    information_logsnr=8,
)


def check_config(config: Any) -> None:
    """Validate the fields of these parts (called by the study's ``Config.__post_init__``)."""
    names = ("windows_n_digits", "windows_repeats", "windows_steps", "sd_inference_steps", "sd_repeats")
    for name in (*names, "sd_per_class"):
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
    for name in ("sweep_n", "information_n", "information_logsnr"):
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"`{name}` must be an integer >= 2, got {v!r}.")
    ts = config.windows_t_hats
    if not ts or any(not 0.0 < t <= 1.0 for t in ts) or list(ts) != sorted(set(ts)):
        raise ValueError(f"`windows_t_hats` must be increasing times in (0, 1], got {ts}.")
    n = config.sd_inference_steps
    if (
        not config.sd_ks
        or any(not 1 <= k <= n for k in config.sd_ks)
        or len(set(config.sd_ks)) != len(config.sd_ks)
    ):
        raise ValueError(
            f"`sd_ks` must be distinct step counts in [1, sd_inference_steps={n}], got {config.sd_ks}."
        )
    if config.sd_beta_schedule not in ("linear", "scaled_linear"):
        raise ValueError(
            f"`sd_beta_schedule` must be 'linear' or 'scaled_linear', got {config.sd_beta_schedule!r}."
        )
    if not math.isfinite(config.sd_guidance) or config.sd_guidance < 0:
        raise ValueError(f"`sd_guidance` must be finite and >= 0, got {config.sd_guidance}.")
    if not config.sweep_scales or any(not math.isfinite(w) or w < 0 for w in config.sweep_scales):
        raise ValueError(f"`sweep_scales` must be non-empty, finite and >= 0, got {config.sweep_scales}.")
    if not config.sweep_targets or any(not 0 <= c <= 9 for c in config.sweep_targets):
        raise ValueError(f"`sweep_targets` must be digits in 0..9, got {config.sweep_targets}.")
    if not 0.0 < config.windows_eps < 1.0:
        raise ValueError(f"`windows_eps` must lie in (0, 1), got {config.windows_eps}.")


def _keys(config: Any) -> dict[str, jax.Array]:
    names = ("windows", "sd", "sweep", "information")
    return dict(zip(names, jr.split(jr.fold_in(jr.key(config.seed), _SALT), len(names)), strict=True))


@eqx.filter_jit
def _logits(clf: Any, x: jax.Array) -> jax.Array:
    return jax.vmap(clf)(x.reshape(x.shape[0], -1))


def _classifier(ctx: PartContext):
    """The evaluator's logits of outputs clipped to the data range ``[-1, 1]`` (as the ``sampling`` part)."""
    clf = ctx.results["evaluator"].classifier
    return lambda x: _logits(clf, jnp.clip(jnp.asarray(x), -1.0, 1.0))


def _stderr_diff(a_se: Any, b_se: Any) -> np.ndarray:
    return np.asarray(np.hypot(np.asarray(a_se), np.asarray(b_se)))


# --- 1. class windows: feature retention of real digits and membership inference ------------------------
class ClassWindows(eqx.Module):
    """Per sampler (``sde``, ``ode``): retention curve with CI and SE, forget TV, window ``[keep, forget]``;
    the membership AUC between training and held-out digits (with its Hanley-McNeil standard error)."""

    t_hats: list[float]
    log_snr: list[float]
    curves: dict[str, dict[str, Any]]
    membership: dict[str, dict[str, float]]
    chance_retention: dict[str, float]
    n_train: int
    n_heldout: int


def _auc_se(a: float, n1: int, n0: int) -> float:
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt(max(a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a), 0.0) / (n1 * n0))


def compute_class_windows(config: Any, ctx: PartContext) -> ClassWindows:
    data, n = load_digits(), config.windows_n_digits
    x_train, _ = data.flat("train")
    x_test, _ = data.flat("test")
    rng = np.random.default_rng(config.seed + _SALT)
    x0 = np.concatenate(
        [
            x_train[rng.choice(len(x_train), n, replace=False)],
            x_test[rng.choice(len(x_test), n, replace=False)],
        ]
    )
    model = ctx.results["model"].ema
    score = model.bind(model.null_tokens)  # Li & Chen run the full (unconditional) model
    classify, curves, membership, chance = _classifier(ctx), {}, {}, {}
    for i, sampler in enumerate(ctx.progress(("sde", "ode"), "windows")):
        r = feature_retention(
            score,
            jnp.asarray(x0),
            config.windows_t_hats,
            classifier=classify,
            key=jr.fold_in(_keys(config)["windows"], i),
            n_repeats=config.windows_repeats,
            sampler=sampler,
            n_steps=config.windows_steps,
            eps=config.windows_eps,
            n_bootstrap=200,
        )
        w = r.window
        curves[sampler] = {
            "retention": r.retention.tolist(),
            "retention_stderr": r.retention_stderr.tolist(),
            "retention_low": r.retention_low.tolist(),
            "retention_high": r.retention_high.tolist(),
            "forget_tv": r.forget_curve.tv.tolist(),
            "keep": w.keep,
            "forget": w.forget,
            "fresh_frequencies": r.fresh_frequencies.tolist(),
        }
        # retention of an output independent of x0: sum_a pi_a q_a (class a of x0, q the fresh frequencies)
        pi = np.bincount(r.labels, minlength=r.classes.size) / r.labels.size
        chance[sampler] = float(pi @ r.fresh_frequencies)
        a = membership_auc(r.membership_score[:n], r.membership_score[n:])
        membership[sampler] = {"auc": a, "auc_stderr": _auc_se(a, n, n)}
    log_snr = np.asarray(score.process.log_snr(jnp.asarray(config.windows_t_hats))).tolist()
    return ClassWindows(list(config.windows_t_hats), log_snr, curves, membership, chance, n, n)


def checks_class_windows(config: Any, r: ClassWindows) -> list[Check]:
    out = []
    for s, c in r.curves.items():
        ret, se = np.asarray(c["retention"]), np.asarray(c["retention_stderr"])
        z = (ret[:-1] - ret[1:]) / np.maximum(_stderr_diff(se[:-1], se[1:]), 1e-12)
        note = (
            "Noising further can only lose information about x0 (data processing), so R(T_hat) is "
            "non-increasing; the smallest standardised step R(T_j) - R(T_j+1) over the grid, >= -2."
        )
        out.append(
            check(
                f"windows {s}: retention non-increasing in T_hat",
                0.0,
                float(z.min()),
                2.0,
                relation="ge",
                note=note,
            )
        )
        if r.t_hats[-1] == 1.0:
            note = (
                "At T_hat = t_max the noised digit is nearly independent of x0 (alpha^2 = exp(-10) for the "
                "linear process), so R = sum_a pi_a q_a with q the class frequencies of fresh samples; 3 SE."
            )
            name = f"windows {s}: retention at t_max equals the fresh-sample chance level"
            out.append(
                check(
                    name, r.chance_retention[s], float(ret[-1]), round(3 * float(se[-1]) + 1e-6, 4), note=note
                )
            )
        m = r.membership[s]
        note = (
            f"AUC of the normalised area under each digit's retention curve, {r.n_train} training vs "
            f"{r.n_heldout} held-out digits. Li & Chen: memorised training samples keep their features "
            "longer (AUC > 0.5); this small UNet does not copy training digits (part memorisation), so the "
            "prediction is AUC = 0.5 within 3 Hanley-McNeil SE."
        )
        out.append(
            check(
                f"windows {s}: membership AUC at 0.5 (no memorisation)",
                0.5,
                m["auc"],
                round(3 * m["auc_stderr"], 4),
                note=note,
            )
        )
    return out


def figures_class_windows(config: Any, r: ClassWindows) -> list[Figure]:
    return [figures.class_windows(config, r)]


# --- 2. the Stable Diffusion protocol's structure on a discrete schedule ---------------------------------
class SdProtocol(eqx.Module):
    """Retention against ``k`` (steps before the end) at CFG scales ``0`` and ``sd_guidance``; the start
    timesteps, their log-SNR, and the ``class_windows`` SDE retention interpolated at those log-SNRs."""

    ks: list[int]
    start_timesteps: list[int]
    start_log_snr: list[float]
    retention: dict[str, list[float]]
    retention_stderr: dict[str, list[float]]
    reference: list[float]
    reference_stderr: list[float]
    in_reference_range: list[bool]


class _TimestepUNet(eqx.Module):
    """The UNet as a model of integer DDPM timesteps (as a diffusers UNet): timestep -> log-SNR of the
    discrete schedule -> the training process's time of that log-SNR. Both are VP processes, so the noisy
    state and the noise prediction at one log-SNR are the same. A module (not a closure), so the weights are
    traced arguments of the compiled sampler rather than folded constants."""

    net: Any
    log_snr_table: jax.Array

    def __call__(self, x, timestep, tokens):
        table = self.log_snr_table.astype(timestep.dtype)
        lam = jnp.interp(timestep, jnp.arange(table.shape[0], dtype=timestep.dtype), table)
        proc = self.net.process
        t = jnp.clip(proc.t_from_log_snr(lam), proc.t_min, proc.t_max)
        return jax.vmap(lambda ti, xi, ci: self.net.eps(ti, xi, ci))(t.astype(x.dtype), x, tokens)


def _sd_outputs(token, x0, key, guided, k, alphas_cumprod, timesteps, n_repeats):
    """One class of the SD protocol: CFG towards ``token``, ``k`` steps before the end (vmapped by
    :func:`~diffsim.sampling.sweep_fn` over classes; the schedule is static)."""
    g = eqx.tree_at(lambda s: s.conditional.cond, guided, token)
    ab, ts = np.asarray(alphas_cumprod), np.asarray(timesteps)
    return renoise_denoise(g, x0, k, alphas_cumprod=ab, timesteps=ts, key=key, n_repeats=n_repeats)


def compute_sd_protocol(config: Any, ctx: PartContext) -> SdProtocol:
    ab = ddpm_alphas_cumprod(config.sd_beta_schedule, 1000, *_BETAS[config.sd_beta_schedule])
    process = VP.from_alpha_bar(ab)
    net = ctx.results["model"].ema
    fn = _TimestepUNet(net, jnp.asarray(np.log(ab) - np.log1p(-ab)))
    opts = dict(parametrisation="eps", time_input="timestep", num_train_timesteps=1000)
    timesteps = grids.diffusers_timesteps(config.sd_inference_steps, 1000, "leading")
    x_test, y_test = load_digits().flat("test")
    rng = np.random.default_rng(config.seed + _SALT + 1)
    m, classes = config.sd_per_class, config.classes
    # the same number of held-out digits per class: every guided run has one shape (one compilation per k)
    idx = np.concatenate([rng.choice(np.flatnonzero(y_test == c), m, replace=False) for c in classes])
    x0 = jnp.asarray(x_test[idx])
    classify = _classifier(ctx)
    unc = CallableScore(fn, process, (64,), cond=net.null_tokens, **opts)
    cond = CallableScore(fn, process, (64,), cond=jnp.array([0]), **opts)
    tokens = jnp.asarray(np.asarray(classes, np.int32)[:, None])
    groups = x0.reshape(len(classes), m, 64)
    keys = jax.vmap(lambda c: jr.fold_in(_keys(config)["sd"], c))(jnp.asarray(classes))
    labels = np.repeat(np.asarray(classes), m * config.sd_repeats)
    static = (tuple(ab.tolist()), tuple(int(t) for t in timesteps), config.sd_repeats)
    run = sweep_fn(_sd_outputs, in_axes=(0, 0, 0, None, None, None, None, None))
    retention, stderr = {}, {}
    # CFG towards each digit's own class (the prompt naming it), Stable Diffusion's uncond + w (c - uncond);
    # one compiled call per k serves every class (vmapped over the class token) and both scales
    for w in ctx.progress((0.0, config.sd_guidance), "sd protocol"):
        guided = ClassifierFreeGuidance(unc, cond, w)
        per = np.zeros((len(config.sd_ks), len(idx)))
        for i, k in enumerate(config.sd_ks):
            ys = np.asarray(run(tokens, groups, keys, guided, int(k), *static)).reshape(-1, 64)
            hit = np.argmax(np.asarray(classify(ys)), axis=1) == labels
            per[i] = hit.reshape(len(idx), config.sd_repeats).mean(axis=1)
        retention[f"{w:g}"] = per.mean(axis=1).tolist()
        stderr[f"{w:g}"] = (per.std(axis=1, ddof=1) / math.sqrt(per.shape[1])).tolist()
    # the class_windows SDE curve at the same log-SNRs (linear interpolation in log-SNR)
    cw = ctx.results["class_windows"]
    lam_ref = np.asarray(cw.log_snr)[::-1]
    ret_ref = np.asarray(cw.curves["sde"]["retention"])[::-1]
    se_ref = np.asarray(cw.curves["sde"]["retention_stderr"])[::-1]
    starts = timesteps[len(timesteps) - np.asarray(config.sd_ks)]
    lam = np.log(ab[starts]) - np.log1p(-ab[starts])
    inside = (lam >= lam_ref.min()) & (lam <= lam_ref.max())
    return SdProtocol(
        ks=[int(k) for k in config.sd_ks],
        start_timesteps=[int(t) for t in starts],
        start_log_snr=lam.tolist(),
        retention=retention,
        retention_stderr=stderr,
        reference=np.interp(lam, lam_ref, ret_ref).tolist(),
        reference_stderr=np.interp(lam, lam_ref, se_ref).tolist(),
        in_reference_range=inside.tolist(),
    )


_BETAS = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012)}


def checks_sd_protocol(config: Any, r: SdProtocol) -> list[Check]:
    out = []
    r0, se0 = np.asarray(r.retention["0"]), np.asarray(r.retention_stderr["0"])
    ref, se_ref, inside = (
        np.asarray(r.reference),
        np.asarray(r.reference_stderr),
        np.asarray(r.in_reference_range),
    )
    if inside.any():
        z = np.abs(r0 - ref)[inside] / np.maximum(_stderr_diff(se0, se_ref)[inside], 1e-12)
        note = (
            "Scale 0 is the unconditional model: the discrete-schedule protocol (add_noise to tau_{n-k}, k "
            "DDPM steps) and feature_retention (the process's forward law, a uniform grid) sample the same "
            "law up to discretisation; the largest |difference| / SE at the start log-SNRs inside the "
            "feature_retention grid (linear interpolation in log-SNR), <= 3."
        )
        out.append(
            check(
                "sd protocol: retention at scale 0 matches the feature_retention window",
                0.0,
                float(z.max()),
                3.0,
                relation="le",
                note=note,
            )
        )
    w = f"{config.sd_guidance:g}"
    rw, sew = np.asarray(r.retention[w]), np.asarray(r.retention_stderr[w])
    z = (rw - r0) / np.maximum(_stderr_diff(sew, se0), 1e-12)
    note = (
        f"Guiding towards the digit's own class (scale {w}) can only help keep it: for an exact model "
        "p(x | c) puts all its mass on class c; smallest standardised difference over k, >= -2."
    )
    out.append(
        check(
            f"sd protocol: CFG (w={w}) towards the true class keeps it at least as often",
            0.0,
            float(z.min()),
            2.0,
            relation="ge",
            note=note,
        )
    )
    return out


def figures_sd_protocol(config: Any, r: SdProtocol) -> list[Figure]:
    return [figures.sd_protocol(config, r)]


PARTS = [
    Part("class_windows", compute_class_windows, checks_class_windows, figures_class_windows),
    Part("sd_protocol", compute_sd_protocol, checks_sd_protocol, figures_sd_protocol),
]
