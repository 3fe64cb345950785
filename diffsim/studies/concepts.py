r"""Study ``concepts``: what the sampler sees at each step -- concept emergence, saliency, step schedules
(Park, Ju & Lee, ESWA 2024, transplanted to models with known ground truth).

Sections (docs/concepts.md has the theory, every constant and the figures):

1. **Emergence (toy, exact).** A conditional Gaussian mixture on 4x4 images whose binary tokens move one
   2x2 region each, with separations ``(6, 3, 1.5)`` (coarse, medium, fine)
   (:func:`~diffsim.analysis.concepts.concept_mixture`). Unconditional DDPM trajectories of the exact
   score record Tweedie's ``x0_hat`` at every step; linear probes trained on clean data read each concept
   off ``x0_hat``; the exact posterior ``p(y_k | x_t)`` and a closed-form Bayes-accuracy curve are the
   references. Coarse concepts must emerge at lower log-SNR.
2. **Information rates (toy, exact).** ``rho_k(lambda)`` per token (the conditional MMSE gap); its integral
   against the exact conditional mutual information; where it peaks.
3. **Schedules (toy, exact score).** Uniform, exponential early-dense and late-dense (Park et al.'s
   ``lambda`` schedule), uniform in log-SNR and information-equalising grids at a fixed small number of
   steps, with an asymmetric token prior: token weight errors, within-mode spread and energy distance.
4. **Saliency and AUC (toy: exact model, and a trained UNet unless ``toy_network=False``).** Per step and
   token: masking (Bernoulli, smooth), Jacobian and occlusion maps of the token's effect for the exact
   model; with the token-conditional UNet (one cross-attention layer, trained once and cached) also
   Grad-CAM (guidance-combined) and attention relevance, for the trained and a weight-randomised copy.
   Scores against the token's region (pointing game, top-q IoU), agreement with the exact maps, the
   model-randomisation sanity test; insertion/deletion AUC with random floor and oracle ceiling; the
   correlation of attention relevance with the information rate over steps (network only).
5. **Digits.** scikit-learn's 8x8 digits with attribute tokens (thickness, bar): the kernel-density
   conditional mixture of the training set (exact posteriors) and a token-conditional UNet (cached):
   emergence of class / thickness / bar on ``x0_hat``, saliency of the bar token against its known pixels,
   randomisation test and AUC table.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis import concepts as C
from ..analysis.information import exact_pointwise_information
from ..analysis.metrics import energy_distance
from ..processes import VP
from ..sampling import grids
from ..scores.conditional import ConditionalMixture, TokenNetworkDenoiser
from ._runner import ResultCache, Results, progress_bar, register


__all__ = ["Config", "bayes_accuracy", "run"]

_PROCESSES = ("linear", "cosine", "ou")
_SCHEDULES = ("uniform", "early", "late", "logsnr", "information", "information_gap")


@dataclass(frozen=True)
class Config:
    """Configuration of the ``concepts`` study (defaults: about 4-5 minutes on two CPU cores, of which about
    1.5 minutes train the two UNets; they are cached under ``cache_dir``, default ``out_dir/models``). The
    quick preset skips both networks and the digits (exact toy model only, ~30 s)."""

    seed: int = 0
    process: str = "linear"
    # toy mixture: one binary token per 2x2 region of a 4x4 image
    separations: tuple[float, ...] = (6.0, 3.0, 1.5)
    std: float = 0.5
    # 1. emergence
    n_particles: int = 2048
    n_grid: int = 100
    n_probe_train: int = 4000
    probe_steps: int = 400
    emergence_level: float = 0.5
    emergence_tolerance: float = 0.4
    # 2. information rates
    n_info: int = 1024
    info_lo: float = -12.0
    info_hi: float = 16.0
    n_info_logsnr: int = 57
    info_noise: int = 16
    n_se: float = 3.0
    # 3. schedules
    schedule_steps: int = 8
    schedule_lam: float = 60.0
    schedule_prior: float = 0.8
    schedule_method: str = "ddim"
    n_schedule: int = 20000
    n_energy: int = 2000
    # 4. saliency and AUC
    saliency_grid: int = 20
    saliency_steps: tuple[int, ...] = (6, 8, 10, 12)
    n_saliency: int = 6
    n_masks: int = 300
    mask_cells: int = 2
    guidance: float = 3.0
    auc_step: int = 10
    n_auc: int = 6
    n_random_orders: int = 16
    pointing_threshold: float = 0.8
    iou_threshold: float = 0.5
    randomisation_threshold: float = 0.5
    n_correlation: int = 6
    toy_network: bool = True
    toy_train_steps: int = 800
    toy_train_size: int = 8000
    toy_base_channels: int = 16
    # 5. digits
    digits: bool = True
    digits_network: bool = True
    digits_bandwidth: float = 0.3
    digits_particles: int = 256
    digits_grid: int = 60
    digits_train_steps: int = 1000
    digits_base_channels: int = 16
    digits_saliency_steps: tuple[int, ...] = (20, 26, 32, 38)
    digits_n_saliency: int = 6
    digits_auc_stride: int = 4
    cache_dir: str = ""

    def __post_init__(self):
        for name in (
            "n_particles",
            "n_grid",
            "n_probe_train",
            "probe_steps",
            "n_info",
            "n_info_logsnr",
            "info_noise",
            "schedule_steps",
            "n_schedule",
            "saliency_grid",
            "n_saliency",
            "n_masks",
            "mask_cells",
            "n_auc",
            "n_random_orders",
            "n_correlation",
            "toy_train_steps",
            "toy_train_size",
            "toy_base_channels",
            "n_energy",
            "digits_particles",
            "digits_grid",
            "digits_train_steps",
            "digits_base_channels",
            "digits_n_saliency",
            "digits_auc_stride",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
        if self.process not in _PROCESSES:
            raise ValueError(f"`process` must be one of {_PROCESSES}, got {self.process!r}.")
        if len(self.separations) < 2 or len(self.separations) > 4 or min(self.separations) <= 0:
            raise ValueError(
                f"`separations` must hold 2 to 4 positive values (4 regions), got {self.separations}."
            )
        if list(self.separations) != sorted(self.separations, reverse=True):
            raise ValueError("`separations` must be ordered from coarse (largest) to fine (smallest).")
        if not 0.0 < self.emergence_level < 1.0:
            raise ValueError(f"`emergence_level` must lie in (0, 1), got {self.emergence_level}.")
        if not 0.5 <= self.schedule_prior < 1.0:
            raise ValueError(f"`schedule_prior` must lie in [0.5, 1), got {self.schedule_prior}.")
        if not self.info_lo < self.info_hi:
            raise ValueError("Need info_lo < info_hi.")
        for name, grid_n in (
            ("saliency_steps", self.saliency_grid),
            ("digits_saliency_steps", self.digits_grid),
        ):
            steps = getattr(self, name)
            if not steps or any(not 0 <= s <= grid_n for s in steps):
                raise ValueError(f"`{name}` must be non-empty grid indices in 0..{grid_n}, got {steps}.")
        if not 0 <= self.auc_step <= self.saliency_grid:
            raise ValueError(
                f"`auc_step` must be a grid index in 0..{self.saliency_grid}, got {self.auc_step}."
            )


def _process(name):
    return {"linear": VP.linear, "cosine": VP.cosine, "ou": VP.ou}[name]()


# =====================================================================================================
# closed-form Bayes accuracy of one region's token
# =====================================================================================================
def bayes_accuracy(log_snr, separation: float, n_pixels: int, std: float, p1: float = 0.5, n_quad: int = 80):
    r"""Expected Bayes accuracy ``E max_y p(y | x_t)`` of a binary token whose region of ``m`` pixels has
    mean ``(2y - 1) s / 2`` per pixel and noise ``std``, in a variance-preserving channel of log-SNR
    ``lambda`` (closed form up to a 1-D Gauss-Hermite quadrature).

    The log-likelihood ratio is ``z = alpha s sum_i x_i / v`` with ``v = alpha^2 std^2 + sigma^2``, so
    ``z | y ~ N(+-kappa/2, kappa)``, ``kappa = s^2 m / (std^2 + e^{-lambda})``; with ``L = logit(p1) + z``,
    ``E max p = sum_y p(y) E[max(sigmoid(L), 1 - sigmoid(L)) | y]``.
    """
    lam = np.asarray(log_snr, float)
    kappa = separation**2 * n_pixels / (std**2 + np.exp(-lam))
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_quad)
    weights = weights / math.sqrt(2 * math.pi)
    prior_logit = math.log(p1 / (1 - p1))
    out = 0.0
    for y, py in ((1, p1), (0, 1 - p1)):
        sign = 1.0 if y == 1 else -1.0
        z = sign * kappa[..., None] / 2 + np.sqrt(kappa)[..., None] * nodes
        p = 1 / (1 + np.exp(-(prior_logit + z)))
        out = out + py * np.sum(weights * np.maximum(p, 1 - p), axis=-1)
    return out


# =====================================================================================================
# helpers
# =====================================================================================================
def _toy(config, process, prior_p=0.5):
    n = len(config.separations)
    prior = None
    if prior_p != 0.5:
        prior = np.ones((2,) * n)
        for j in range(n):
            shape = [1] * n
            shape[j] = 2
            prior = prior * np.array([1 - prior_p, prior_p]).reshape(shape)
    tm = C.concept_mixture(
        config.separations,
        image_shape=(4, 4),
        block_shape=(2, 2),
        std=config.std,
        prior=prior,
        process=process,
    )
    return tm, ConditionalMixture.from_token_mixture(tm)


def _randomise(net, key):
    """Adebayo et al. (2018)'s model-parameter randomisation: every weight array replaced by Gaussian noise
    with the array's own mean and standard deviation (scale kept, learned structure destroyed). Drawn with
    numpy from ``key`` (no per-shape compilation)."""
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


def _train_unet(config, out_dir, name, x, tokens, image_shape, alphabet, steps, base, key, progress):
    from ..scores.networks import UNetScore
    from ..scores.training import TrainConfig, train_or_load

    k_net, k_train = jr.split(key)
    process = _process(config.process)
    net = UNetScore(
        image_shape,
        key=k_net,
        process=process,
        alphabet_sizes=alphabet,
        base_channels=base,
        channel_mults=(1, 2),
        data_std=float(np.std(x)),
    )
    tcfg = TrainConfig(
        steps=steps,
        batch_size=128,
        learning_rate=2e-3,
        warmup_steps=min(100, steps // 2),
        token_dropout=0.2,
        time_sampling="logsnr",
    )
    cdir = Path(config.cache_dir) if config.cache_dir else Path(out_dir) / "models"
    t0 = time.perf_counter()
    res = train_or_load(
        net,
        np.asarray(x, np.float32),
        tcfg,
        key=k_train,
        tokens=np.asarray(tokens, np.int32),
        cache_dir=cdir,
        name=name,
        progress=progress,
    )
    return res, time.perf_counter() - t0


def _forward_states(process, x0, ts, key):
    """``x_t = alpha_t x_0 + sigma_t eps`` at each time of ``ts``: the law of an exact sampler's state at
    those steps (``(S, N, d)``)."""
    eps = jr.normal(key, (len(ts),) + x0.shape, x0.dtype)
    a = jnp.asarray([process.alpha(t) for t in ts], x0.dtype)[:, None, None]
    s = jnp.asarray([process.sigma(t) for t in ts], x0.dtype)[:, None, None]
    return a * x0[None] + s * eps


def _mean_se(v):
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")


# =====================================================================================================
# 1. emergence on the toy mixture
# =====================================================================================================
def _emergence(config, res, cache, key, progress):
    process = _process(config.process)
    tm, cm = _toy(config, process)
    n_tok = cm.n_tokens
    k_data, k_probe, k_run = jr.split(key, 3)
    xd, yd = cm.sample(k_data, config.n_probe_train)
    probes = [
        C.train_probe(
            xd,
            np.asarray(yd[:, j]),
            key=jr.fold_in(k_probe, j),
            steps=config.probe_steps,
            name=tm.token_names[j],
        )
        for j in range(n_tok)
    ]
    score = C.TokenConditionedScore(cm, process)
    grid = grids.logsnr_uniform(process, config.n_grid)
    rec = C.record_x0(
        score,
        "ddpm",
        grid,
        key=k_run,
        n=config.n_particles,
        probes=probes,
        exact=cm,
        exact_slots=tuple(range(n_tok)),
    )
    lam = rec.log_snr
    m = int(tm.support["y1"].sum())
    out = {"log_snr": lam.tolist(), "tokens": {}}
    for j in range(n_tok):
        name = tm.token_names[j]
        labels = np.argmax(rec.exact[j][-1], -1)
        cp = C.concept_curve(rec.probs[name], labels, lam, rec.ts)
        ce = C.concept_curve(rec.exact[j], labels, lam, rec.ts)
        analytic = bayes_accuracy(lam, config.separations[j], m, config.std)
        em = dict(level=config.emergence_level, chance=0.5)
        out["tokens"][name] = {
            "separation": config.separations[j],
            "probe_accuracy": cp.accuracy.tolist(),
            "probe_auroc": cp.auroc.tolist(),
            "exact_accuracy": ce.accuracy.tolist(),
            "exact_expected_accuracy": ce.expected_accuracy.tolist(),
            "analytic_accuracy": analytic.tolist(),
            "emergence_probe": C.emergence_time(cp, **em),
            "emergence_probe_auroc": C.emergence_time(cp, field="auroc", level=config.emergence_level),
            "emergence_exact": C.emergence_time(ce, **em),
            "emergence_analytic": C.emergence_time(analytic, lam, **em),
            "final_label_rate": float(labels.mean()),
        }
    idx = np.unique(np.linspace(0, len(lam) - 1, 8).astype(int))
    out["x0_grid"] = rec.x0[idx][:, :4].tolist()
    out["x0_grid_log_snr"] = lam[idx].tolist()
    out["x0_grid_tokens"] = np.stack([np.argmax(rec.exact[j][-1][:4], -1) for j in range(n_tok)], 1).tolist()
    return out


def _report_emergence(config, res, out):
    names = list(out["tokens"])
    tol = config.emergence_tolerance
    probe = [out["tokens"][n]["emergence_probe"] for n in names]
    exact = [out["tokens"][n]["emergence_exact"] for n in names]
    analytic = [out["tokens"][n]["emergence_analytic"] for n in names]
    res.metric(
        "emergence_log_snr",
        {
            n: {
                k: out["tokens"][n][k]
                for k in (
                    "separation",
                    "emergence_probe",
                    "emergence_probe_auroc",
                    "emergence_exact",
                    "emergence_analytic",
                )
            }
            for n in names
        },
    )
    res.check(
        "toy: coarse concepts emerge earlier (lower log-SNR) than fine ones, probe on x0_hat",
        True,
        bool(np.all(np.diff(probe) > 0)),
        relation="true",
        note=f"separations {list(config.separations)}: emergence log-SNR {np.round(probe, 2).tolist()} "
        f"(level {config.emergence_level} between chance and 1).",
    )
    res.check(
        "toy: probe-on-x0_hat emergence = closed-form Bayes emergence (log-SNR)",
        analytic,
        probe,
        tol,
        note=f"closed form: kappa = s^2 m/(std^2 + e^-lambda), 1-D Gauss-Hermite; tolerance {tol} in log-SNR "
        f"(~2 grid spacings of {np.mean(np.diff(out['log_snr'])):.2f} plus Monte-Carlo error of "
        f"{config.n_particles} trajectories).",
    )
    res.check(
        "toy: exact-posterior emergence along the sampled trajectories = closed form (log-SNR)",
        analytic,
        exact,
        tol,
        note="the exact posterior's argmax predicting the final concept: checks the sampler and the "
        "posterior together (posterior martingale along the exact reverse SDE).",
    )
    _plot_emergence(res, out, config)


def _plot_emergence(res, out, config):
    import matplotlib.pyplot as plt

    lam = np.asarray(out["log_snr"])
    names = list(out["tokens"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for j, n in enumerate(names):
        d = out["tokens"][n]
        c = f"C{j}"
        axes[0].plot(
            lam, d["probe_accuracy"], "-", color=c, label=f"{n} (s={d['separation']:g}): probe on x0_hat"
        )
        axes[0].plot(lam, d["exact_accuracy"], "--", color=c, alpha=0.7, label=f"{n}: exact p(y|x_t) argmax")
        axes[0].plot(lam, d["analytic_accuracy"], ":", color="k", lw=1)
        axes[0].axvline(d["emergence_probe"], color=c, lw=0.8, alpha=0.6)
        axes[1].plot(lam, d["probe_auroc"], "-", color=c, label=n)
    axes[0].set_xlabel("log-SNR (reverse process runs left to right)")
    axes[0].set_ylabel("accuracy for the final concept")
    axes[0].legend(fontsize=6)
    axes[0].set_title("dotted: closed-form E max p(y | x_t)", fontsize=8)
    axes[1].set_xlabel("log-SNR")
    axes[1].set_ylabel("AUROC of the probe on x0_hat")
    axes[1].legend(fontsize=7)
    res.figure(
        fig,
        "emergence_toy",
        "Concept emergence on the toy mixture: accuracy of linear probes on the predicted "
        "clean sample (solid) against the exact posterior's argmax (dashed) and the closed-form Bayes accuracy "
        "(dotted), for the final concept of unconditional DDPM trajectories of the exact score; vertical lines "
        "mark the emergence log-SNR. Right: AUROC of the probes.",
    )
    grid = np.asarray(out["x0_grid"])  # (S, 4, 16)
    lam_g = out["x0_grid_log_snr"]
    fig, axes = plt.subplots(grid.shape[1], grid.shape[0], figsize=(1.3 * grid.shape[0], 1.4 * grid.shape[1]))
    v = np.abs(grid).max()
    for s in range(grid.shape[0]):
        for i in range(grid.shape[1]):
            ax = axes[i, s]
            ax.imshow(grid[s, i].reshape(4, 4), cmap="RdBu_r", vmin=-v, vmax=v)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"lambda={lam_g[s]:.1f}", fontsize=7)
        for i in range(grid.shape[1]):
            axes[i, 0].set_ylabel(f"y={out['x0_grid_tokens'][i]}", fontsize=7)
    res.figure(
        fig,
        "x0_grid_toy",
        "Predicted clean samples x0_hat along four DDPM trajectories (rows) of the toy "
        "mixture at eight steps (columns): the top-left region (coarse token, separation "
        f"{config.separations[0]:g}) is decided first, the finer regions later.",
    )


# =====================================================================================================
# 2. information rates
# =====================================================================================================
def _information(config, res, cache, key, emergence):
    process = _process(config.process)
    tm, cm = _toy(config, process)
    k_data, k_rate = jr.split(key)
    x, y = cm.sample(k_data, config.n_info)
    lam = np.linspace(config.info_lo, config.info_hi, config.n_info_logsnr)
    out = {"log_snr": lam.tolist(), "tokens": {}}
    for j in range(cm.n_tokens):
        rate = C.token_information_rate(
            cm, x, y, jr.fold_in(k_rate, j), slot=j, log_snr=lam, n_noise=config.info_noise
        )
        others = [i for i in range(cm.n_tokens) if i != j]
        ex = np.asarray(exact_pointwise_information(cm, x, y, about=[j], given=others))
        mean, se = _mean_se(rate.integral)
        out["tokens"][tm.token_names[j]] = {
            "mean_rate": rate.mean_rate.tolist(),
            "integral": mean,
            "integral_se": se,
            "exact_cmi": float(ex.mean()),
            "peak_log_snr": float(lam[np.argmax(rate.mean_rate)]),
        }
    return out


def _report_information(config, res, info, emergence):
    names = list(info["tokens"])
    integ = [info["tokens"][n]["integral"] for n in names]
    ses = [info["tokens"][n]["integral_se"] for n in names]
    exact = [info["tokens"][n]["exact_cmi"] for n in names]
    res.metric(
        "information_rate",
        {
            n: {k: info["tokens"][n][k] for k in ("integral", "integral_se", "exact_cmi", "peak_log_snr")}
            for n in names
        },
    )
    tol = [round(config.n_se * s + 0.01, 4) for s in ses]
    res.check(
        "toy: integral of rho_k over log-SNR = exact I(x; y_k | other tokens) (nats)",
        exact,
        integ,
        tol,
        note=f"orthogonality principle (E i^o = E i); {config.n_info} samples, {config.n_info_logsnr} log-SNRs on "
        f"[{config.info_lo:g}, {config.info_hi:g}] (trapezoid), {config.info_noise} noise draws; tolerance "
        f"{config.n_se:g} SE + 0.01 for the truncated tails.",
    )
    peaks = [info["tokens"][n]["peak_log_snr"] for n in names]
    res.check(
        "toy: the information rate of coarser tokens peaks at lower log-SNR",
        True,
        bool(np.all(np.diff(peaks) > 0)),
        relation="true",
        note=f"peaks at log-SNR {peaks}.",
    )
    if emergence is not None:
        em = [emergence["tokens"][n]["emergence_probe"] for n in names]
        res.metric("information_peak_minus_emergence", (np.asarray(peaks) - np.asarray(em)).tolist())
    _plot_information(res, info, emergence)


def _plot_information(res, info, emergence):
    import matplotlib.pyplot as plt

    lam = np.asarray(info["log_snr"])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for j, (n, d) in enumerate(info["tokens"].items()):
        ax.plot(
            lam,
            d["mean_rate"],
            color=f"C{j}",
            label=f"{n}: integral {d['integral']:.3f} (exact {d['exact_cmi']:.3f})",
        )
        if emergence is not None:
            ax.axvline(emergence["tokens"][n]["emergence_probe"], color=f"C{j}", ls=":", lw=1)
    ax.set_xlabel("log-SNR")
    ax.set_ylabel("rho_k(lambda) [nats per unit log-SNR]")
    ax.legend(fontsize=7)
    res.figure(
        fig,
        "information_rates",
        "Per-token information rate rho_k(lambda) = 1/2 E|eps(.|y) - eps(.|y without "
        "k)|^2 of the exact toy model; dotted lines: emergence log-SNR of each concept on x0_hat.",
    )


# =====================================================================================================
# 3. schedules
# =====================================================================================================
def _schedules(config, res, cache, key):
    from ..sampling import simulate

    process = _process(config.process)
    tm, cm = _toy(config, process, config.schedule_prior)
    n_tok = cm.n_tokens
    k_data, k_dens, k_ref, k_run = jr.split(key, 4)
    x, y = cm.sample(k_data, config.n_info)
    lam = np.linspace(config.info_lo, config.info_hi, config.n_info_logsnr)
    dens_tok = C.information_density(cm, x, y, k_dens, log_snr=lam, kind="tokens", n_noise=config.info_noise)
    dens_gap = C.information_density(cm, x, y, k_dens, log_snr=lam, kind="gap", n_noise=config.info_noise)
    score = C.TokenConditionedScore(cm, process)
    ref, _ = cm.sample(k_ref, config.n_schedule)
    p1 = config.schedule_prior
    means = np.asarray(tm.mixture.means)
    post_fn = jax.jit(
        jax.vmap(
            lambda v: jnp.stack(
                [p[1] for p in C.exact_token_posterior(cm, process, process.t_min, v, tuple(range(n_tok)))]
            )
        )
    )
    comp_fn = jax.jit(jax.vmap(lambda v: tm.mixture.posterior(process.t_min, v)))
    out = {
        "densities": {"log_snr": lam.tolist(), "tokens": dens_tok.tolist(), "gap": dens_gap.tolist()},
        "rows": {},
    }
    for kind in _SCHEDULES:
        if kind == "information":
            g = C.step_schedule(process, config.schedule_steps, "information", log_snr=lam, density=dens_tok)
        elif kind == "information_gap":
            g = C.step_schedule(process, config.schedule_steps, "information", log_snr=lam, density=dens_gap)
        else:
            g = C.step_schedule(process, config.schedule_steps, kind, lam=config.schedule_lam)
        traj = simulate(score, config.schedule_method, g, n=config.n_schedule, key=k_run)
        xf = np.asarray(traj.x)
        pp = np.asarray(post_fn(jnp.asarray(xf)))  # (N, n_tok) p(y_k = 1 | x_final)
        werr = pp.mean(0) - p1
        wse = pp.std(0, ddof=1) / math.sqrt(len(pp))
        comp = np.argmax(np.asarray(comp_fn(jnp.asarray(xf))), 1)
        resid = xf - means[comp]
        var_ratio = {
            tm.token_names[j]: float(resid[:, tm.support[tm.token_names[j]]].var(0).mean() / config.std**2)
            for j in range(n_tok)
        }
        half = min(config.n_schedule // 2, config.n_energy)  # energy distance is O(n^2): a subsample
        ed = float(energy_distance(jnp.asarray(xf[:half]), jnp.asarray(ref[:half])))
        ed_null = float(energy_distance(jnp.asarray(ref[:half]), jnp.asarray(ref[half : 2 * half])))
        out["rows"][kind] = {
            "grid": np.asarray(g).tolist(),
            "grid_log_snr": np.asarray(process.log_snr(g)).tolist(),
            "weight_error": werr.tolist(),
            "weight_error_se": wse.tolist(),
            "variance_ratio": var_ratio,
            "energy_distance": ed,
            "energy_distance_null": ed_null,
        }
    return out


def _report_schedules(config, res, sch):
    rows = sch["rows"]
    names = list(rows["uniform"]["variance_ratio"])
    coarse, fine = names[0], names[-1]
    res.metric(
        "schedules",
        {
            k: {kk: v[kk] for kk in ("weight_error", "weight_error_se", "variance_ratio", "energy_distance")}
            for k, v in rows.items()
        },
    )
    e_c, l_c = abs(rows["early"]["weight_error"][0]), abs(rows["late"]["weight_error"][0])
    se = math.hypot(rows["early"]["weight_error_se"][0], rows["late"]["weight_error_se"][0])
    res.check(
        f"schedules: early-dense gives a smaller coarse-token ({coarse}) weight error than late-dense",
        l_c,
        e_c,
        0.0,
        relation="le",
        note=f"Park et al.'s R3 reading (semantic steps early); |P(y=1) - {config.schedule_prior}| of the final "
        f"samples (exact posterior), {config.schedule_steps} {config.schedule_method} steps, lambda="
        f"{config.schedule_lam:g}; SE of the difference {se:.4f}.",
    )
    dv_e = abs(rows["early"]["variance_ratio"][fine] - 1)
    dv_l = abs(rows["late"]["variance_ratio"][fine] - 1)
    res.check(
        f"schedules: late-dense gives sharper fine detail (within-mode spread of region {fine} closer to "
        "the truth) than early-dense",
        dv_e,
        dv_l,
        0.0,
        relation="le",
        note="|Var(x - mu_component) / std^2 - 1| in the fine token's region; a few steps shrink samples "
        "towards the modes (ratio < 1).",
    )
    eds = {k: v["energy_distance"] for k, v in rows.items()}
    best = min(eds, key=eds.get)
    res.check(
        "schedules: the information-equalising schedule has the smallest energy distance at fixed N",
        "information",
        best,
        relation="true",
        passed=best == "information",
        note=f"a prediction of the reference notes (ITD's FIG schedule should dominate); energy distances "
        f"{ {k: round(v, 4) for k, v in eds.items()} }, two exact samples give "
        f"{rows['uniform']['energy_distance_null']:.4f}.",
    )
    info_lam = np.asarray(rows["information"]["grid_log_snr"])
    res.note(
        "Schedules: the information-equalising grid puts its steps where the tokens are decided (log-SNR "
        f"{np.round(info_lam[1:-1], 1).tolist()}), so its last step jumps from log-SNR {info_lam[-2]:.1f} to "
        f"{info_lam[-1]:.1f}; one DDIM step over that range contracts every mode's Gaussian spread (spread ratio "
        f"{ {k: round(v, 2) for k, v in rows['information']['variance_ratio'].items()} } against 1 for exact "
        "samples), and this within-mode error, not the token weights, dominates the energy distance. Equalising "
        "the tokens' information does not equalise the discretisation error: the prediction fails here."
    )
    _plot_schedules(res, sch, config)


def _plot_schedules(res, sch, config):
    import matplotlib.pyplot as plt

    rows = sch["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for i, (k, v) in enumerate(rows.items()):
        axes[0].plot(
            np.arange(len(v["grid_log_snr"])),
            np.clip(v["grid_log_snr"], -12, 12),
            "o-",
            ms=3,
            color=f"C{i}",
            label=k,
        )
    d = sch["densities"]
    ax2 = axes[0].twiny()
    ax2.plot(
        np.asarray(d["tokens"]) / max(max(d["tokens"]), 1e-12) * config.schedule_steps,
        d["log_snr"],
        "k:",
        lw=1,
    )
    ax2.set_xticks([])
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("log-SNR (clipped to [-12, 12])")
    axes[0].legend(fontsize=7)
    kinds = list(rows)
    names = list(rows["uniform"]["variance_ratio"])
    w = 0.8 / len(names)
    for j, n in enumerate(names):
        axes[1].bar(
            np.arange(len(kinds)) + j * w,
            [abs(rows[k]["weight_error"][j]) for k in kinds],
            w,
            yerr=[rows[k]["weight_error_se"][j] for k in kinds],
            label=f"|weight error| {n}",
        )
        axes[2].bar(
            np.arange(len(kinds)) + j * w,
            [rows[k]["variance_ratio"][n] for k in kinds],
            w,
            label=f"spread ratio {n}",
        )
    for ax in axes[1:]:
        ax.set_xticks(np.arange(len(kinds)) + 0.4 - w / 2)
        ax.set_xticklabels(kinds, rotation=30, fontsize=7)
        ax.legend(fontsize=7)
    axes[2].axhline(1.0, color="k", lw=0.8)
    axes[2].set_title(
        "energy distance: " + ", ".join(f"{k} {rows[k]['energy_distance']:.3f}" for k in kinds), fontsize=6
    )
    res.figure(
        fig,
        "schedules",
        f"Final-sample quality by schedule ({config.schedule_steps} {config.schedule_method} "
        f"steps, exact score, token prior P(y=1) = {config.schedule_prior}). Left: log-SNR of each schedule's "
        "steps (dotted: the tokens' information density). Middle: token weight error of the final samples. "
        "Right: within-mode spread relative to the truth per token region (1 = exact).",
    )


# =====================================================================================================
# 4. saliency, sanity and AUC on the toy (exact and trained UNet)
# =====================================================================================================
def _maps_exact(cm, process, t, x, tok, k, key, config):
    fn = C.token_effect_fn(cm, process, t, tok, k)
    return {
        "masking": C.masking_saliency(fn, x, key, n_masks=config.n_masks),
        "smooth_masking": C.masking_saliency(
            fn,
            x,
            key,
            n_masks=config.n_masks,
            kind="smooth",
            image_shape=_img(x),
            cells=(config.mask_cells,) * 2,
        ),
        "jacobian": C.jacobian_saliency(fn, x),
        "occlusion": C.occlusion_saliency(fn, x),
    }


def _img(x):
    s = int(round(math.sqrt(x.shape[-1])))
    return (s, s)


def _maps_network(net, den, process, t, x, tok, k, key, config, occlusion_patch=None):
    out = _maps_exact(den, process, t, x, tok, k, key, config)
    if occlusion_patch is not None:
        fn = C.token_effect_fn(den, process, t, tok, k)
        out["occlusion"] = C.occlusion_saliency(fn, x, patch=occlusion_patch, image_shape=_img(x))
    unc = np.array(tok).copy()
    unc[k] = net.alphabet_sizes[k]
    out["grad_cam"] = C.grad_cam(
        net, t, x, tok, unconditional=unc, guidance=config.guidance
    ).combined.reshape(-1)
    out["attention"] = (
        C.attention_relevance(net, t, x, tok, unconditional=unc, guidance=config.guidance).maps[k].reshape(-1)
    )
    return {m: np.asarray(v) for m, v in out.items()}


def _saliency_toy(config, res, cache, key, out_dir, progress):
    """Saliency maps of each token's effect per step, scored against the token's region, for the exact model
    and (``toy_network``) a trained token-conditional UNet and its randomised copy; the insertion/deletion
    table at one step; the attention-vs-information correlation (network only)."""
    process = _process(config.process)
    tm, cm = _toy(config, process)
    k_train, k_data, k_noise, k_mask, k_rand, k_auc, k_corr = jr.split(key, 7)
    tick = time.perf_counter()
    timing = {}
    net = rnet = den = rden = trained = None
    if config.toy_network:
        xtr, ytr = cm.sample(k_data, config.toy_train_size)
        trained, _ = _train_unet(
            config,
            out_dir,
            "concepts-toy-unet",
            xtr,
            ytr,
            (4, 4),
            cm.alphabet_sizes,
            config.toy_train_steps,
            config.toy_base_channels,
            k_train,
            progress,
        )
        net = trained.ema
        rnet = _randomise(net, k_rand)
        den, rden = TokenNetworkDenoiser(net), TokenNetworkDenoiser(rnet)
        timing["train"], tick = time.perf_counter() - tick, time.perf_counter()
    grid = np.asarray(grids.logsnr_uniform(process, config.saliency_grid))
    x0, y0 = cm.sample(jr.fold_in(k_data, 1), config.n_saliency)
    y0 = np.asarray(y0)
    steps = list(config.saliency_steps)
    ts = [C.step_time(grid, s) for s in steps]
    xts = np.asarray(_forward_states(process, jnp.asarray(x0), ts, k_noise))
    regions = [tm.support[n] for n in tm.token_names]
    scores = {}  # "model/method" -> step -> {"pointing", "iou", "mass"}: lists over samples x tokens
    agree = {}
    sanity = {}
    examples = {}
    for si, (s, t) in enumerate(progress_bar(list(zip(steps, ts, strict=False)), "toy saliency", progress)):
        for i in range(config.n_saliency):
            for k in range(cm.n_tokens):
                kk = jr.fold_in(k_mask, (si * 1000 + i) * 10 + k)
                xt = jnp.asarray(xts[si, i])
                models = {
                    "exact": {
                        m: np.asarray(v)
                        for m, v in _maps_exact(cm, process, t, xt, y0[i], k, kk, config).items()
                    }
                }
                if net is not None:
                    models["network"] = _maps_network(net, den, process, t, xt, y0[i], k, kk, config)
                    models["randomised"] = _maps_network(rnet, rden, process, t, xt, y0[i], k, kk, config)
                for tag, maps in models.items():
                    for m, v in maps.items():
                        sc = C.saliency_scores(v, regions[k])
                        d = scores.setdefault(f"{tag}/{m}", {}).setdefault(
                            s, {"pointing": [], "iou": [], "mass": []}
                        )
                        for a in d:
                            d[a].append(float(sc[a]))
                if net is not None:
                    ex, nw, rn = models["exact"], models["network"], models["randomised"]
                    for m, v in nw.items():
                        ref = ex.get(m, ex["occlusion"])
                        agree.setdefault(m, {}).setdefault(s, []).append(float(C.spearman(v, ref)))
                        sanity.setdefault(m, {}).setdefault(s, []).append(
                            float(C.spearman(np.abs(v), np.abs(rn[m])))
                        )
                if i == 0:
                    examples[(s, k)] = dict(models, x=np.asarray(xt))
    summary = {
        tag: {s: {a: _mean_se(v) for a, v in d.items()} for s, d in per.items()}
        for tag, per in scores.items()
    }
    out = {
        "steps": steps,
        "log_snr": [float(process.log_snr(t)) for t in ts],
        "summary": summary,
        "network": net is not None,
        "agreement": {m: {s: _mean_se(v) for s, v in d.items()} for m, d in agree.items()},
        "sanity": {m: {s: _mean_se(v) for s, v in d.items()} for m, d in sanity.items()},
    }
    if trained is not None:
        out.update(
            train_s=timing["train"],
            from_cache=bool(trained.from_cache),
            train_loss=float(np.mean(trained.losses[-50:])) if len(trained.losses) else None,
        )
    timing["saliency"], tick = time.perf_counter() - tick, time.perf_counter()
    # AUC table at one step: x0_hat given all tokens, exact and network
    t_auc = C.step_time(grid, config.auc_step)
    x0a, y0a = cm.sample(jr.fold_in(k_data, 2), config.n_auc)
    y0a = np.asarray(y0a)
    xa = np.asarray(_forward_states(process, jnp.asarray(x0a), [t_auc], jr.fold_in(k_noise, 7))[0])
    auc = {}
    for tag, model in (("exact", cm), ("network", den)):
        if model is None:
            continue
        fn_ctx = C.conditional_tokens_fn(model, process, t_auc)
        maps = {}
        for i in range(config.n_auc):
            fn = C.conditional_fn(model, process, t_auc, y0a[i], np.ones(cm.n_tokens, bool))
            ki = jr.fold_in(k_auc, i)
            row = {
                "masking": C.masking_saliency(fn, xa[i], ki, n_masks=config.n_masks),
                "smooth_masking": C.masking_saliency(
                    fn,
                    xa[i],
                    ki,
                    n_masks=config.n_masks,
                    kind="smooth",
                    image_shape=(4, 4),
                    cells=(config.mask_cells,) * 2,
                ),
                "jacobian": C.jacobian_saliency(fn, xa[i]),
                "occlusion": C.occlusion_saliency(fn, xa[i]),
            }
            if tag == "network":
                # guidance energy of all tokens against none (same compiled function as the per-token maps)
                row["grad_cam"] = C.grad_cam(
                    net, t_auc, xa[i], y0a[i], guidance=config.guidance
                ).combined.reshape(-1)
                row["attention"] = (
                    C.attention_relevance(net, t_auc, xa[i], y0a[i], guidance=config.guidance)
                    .maps[:-1]
                    .sum(0)
                    .reshape(-1)
                )
            for m, v in row.items():
                maps.setdefault(m, []).append(np.asarray(v))
        maps = {m: np.stack(v) for m, v in maps.items()}
        for mode in ("insertion", "deletion"):
            r = C.insertion_deletion(
                fn_ctx,
                xa,
                maps,
                jr.fold_in(k_auc, 99),
                mode=mode,
                context=jnp.asarray(y0a),
                n_random=config.n_random_orders,
            )
            auc[f"{tag}/{mode}"] = {
                "summary": r.summary,
                "curves": {m: np.asarray(c).mean(0).tolist() for m, c in r.curves.items()},
                "fractions": r.fractions.tolist(),
                "masking_auc": r.auc["masking"].tolist(),
                "random_auc": r.auc["random"].tolist(),
                "oracle_auc": r.auc["oracle"].tolist(),
            }
    out["auc"] = auc
    out["auc_log_snr"] = float(process.log_snr(t_auc))
    timing["auc"], tick = time.perf_counter() - tick, time.perf_counter()
    out["timings"] = timing
    if net is None:
        return out, examples
    # correlation quantification: attention relevance over all steps vs the information rate
    x0c, y0c = cm.sample(jr.fold_in(k_data, 3), config.n_correlation)
    y0c = np.asarray(y0c)
    all_ts = [float(t) for t in grid[1:-1]]
    xc = np.asarray(_forward_states(process, jnp.asarray(x0c), all_ts, k_corr))  # (S, N, d)
    lam_all = np.asarray([float(process.log_snr(t)) for t in all_ts])
    corr = {}
    ts_arr = jnp.asarray(all_ts)
    for k in range(cm.n_tokens):
        rel_e, rel_s, path = [], [], []
        for i in range(config.n_correlation):
            unc = y0c[i].copy()
            unc[k] = net.alphabet_sizes[k]
            xs_i = jnp.asarray(xc[:, i])
            rel_e.append(
                np.asarray(C.attention_relevance_path(net, ts_arr, xs_i, y0c[i], unconditional=unc))[:, k]
            )
            rel_s.append(
                np.asarray(C.attention_relevance_path(net, ts_arr, xs_i, y0c[i], target="sum_eps"))[:, k]
            )
            path.append(np.asarray(C.token_effect_energy(cm, process, ts_arr, xs_i, y0c[i], k)))
        rate_k = C.token_information_rate(
            cm, x0c, y0c, jr.fold_in(k_corr, 1 + k), slot=k, log_snr=lam_all, n_noise=config.info_noise
        ).rate
        corr[tm.token_names[k]] = {
            "guidance_energy_vs_rate": C.correlation_over_steps(rel_e, rate_k),
            "sum_eps_vs_rate": C.correlation_over_steps(rel_s, rate_k),
            "guidance_energy_vs_pathwise": C.correlation_over_steps(rel_e, path),
            "sum_eps_vs_pathwise": C.correlation_over_steps(rel_s, path),
            "mean_relevance_guidance_energy": np.mean(rel_e, 0).tolist(),
            "mean_relevance_sum_eps": np.mean(rel_s, 0).tolist(),
            "mean_rate": rate_k.mean(0).tolist(),
        }
        for v in corr[tm.token_names[k]].values():
            if isinstance(v, dict):
                v.pop("per_sample", None)
    out["correlation"] = corr
    out["correlation_log_snr"] = lam_all.tolist()
    timing["correlation"] = time.perf_counter() - tick
    return out, examples


def _summary_mean(summary, tag, metric, steps=None):
    per = summary[tag]
    keys = [s for s in per if steps is None or s in steps]
    return float(np.mean([per[s][metric][0] for s in keys]))


def _auc_checks(res, config, auc, label, log_snr, n):
    """Per game: oracle >= masking >= random (insertion; reversed for deletion) on the means, and the oracle
    as a ceiling for every method."""
    for key_, d in auc.items():
        mode = key_.split("/")[-1]
        s = d["summary"]
        sign = 1 if mode == "insertion" else -1
        rel = ">=" if sign > 0 else "<="
        triple = [s["oracle"]["auc"], s["masking"]["auc"], s["random"]["auc"]]
        ok = sign * (triple[0] - triple[1]) >= 0 and sign * (triple[1] - triple[2]) >= 0
        res.check(
            f"{label} {key_.split('/')[0]}: {mode} AUC oracle {rel} masking {rel} random (means over samples)",
            True,
            triple,
            relation="true",
            passed=bool(ok),
            note=f"[oracle, masking, random] AUC at log-SNR {log_snr:.2f}, {n} samples, x0_hat given all "
            f"tokens; normalised score (AUC - random)/(oracle - random) per sample, then averaged: masking "
            f"{s['masking'].get('score', float('nan')):.2f} +- {s['masking'].get('score_se', float('nan')):.2f}.",
        )
        methods = [m for m in s if m not in ("oracle", "random")]
        best = max(methods, key=lambda m: sign * s[m]["auc"])
        res.check(
            f"{label} {key_.split('/')[0]}: {mode} oracle AUC is a ceiling for every method (best: {best})",
            s["oracle"]["auc"],
            s[best]["auc"],
            0.0,
            relation="le" if sign > 0 else "ge",
            note="AUC of every method: " + ", ".join(f"{m} {s[m]['auc']:.3f}" for m in methods) + ".",
        )


def _report_saliency_toy(config, res, out, examples):
    summ = out["summary"]
    steps = out["steps"]
    table = {
        tag: {
            "pointing": _summary_mean(summ, tag, "pointing"),
            "iou": _summary_mean(summ, tag, "iou"),
            "mass": _summary_mean(summ, tag, "mass"),
        }
        for tag in summ
    }
    res.metric("toy_saliency_scores", table)
    res.metric("toy_saliency_scores_per_step", summ)
    where = (
        f"chance 0.25 (4 regions); steps {steps} of a {config.saliency_grid}-step log-SNR-uniform grid (log-SNR "
        f"{np.round(out['log_snr'], 1).tolist()}), {config.n_saliency} samples x {len(config.separations)} "
        "tokens; target: the token's effect g_k = eps(.|y) - eps(.|y without k)"
    )
    res.check(
        "toy exact: masking saliency (Bernoulli, 1/(N p) normalised) of a token points into its region "
        "(pointing game, mean over steps)",
        config.pointing_threshold,
        table["exact/masking"]["pointing"],
        0.0,
        relation="ge",
        note=where + ", whose input dependence is confined to region k (structural zeros); "
        f"{config.n_masks} masks. Jacobian / occlusion of the exact model: pointing "
        f"{table['exact/jacobian']['pointing']:.2f} / "
        f"{table['exact/occlusion']['pointing']:.2f} (below 1 only where the token "
        "is already decided and g_k vanishes to float32 round-off).",
    )
    res.check(
        "toy exact: masking saliency top-q IoU with the token's region (q = 1/4)",
        config.iou_threshold,
        table["exact/masking"]["iou"],
        0.0,
        relation="ge",
        note="a random map scores about 1/7.",
    )
    if out["network"]:
        res.metric(
            "toy_network_training",
            {"train_s": out["train_s"], "from_cache": out["from_cache"], "final_loss": out["train_loss"]},
        )
        res.metric("toy_saliency_agreement_with_exact", out["agreement"])
        res.metric("toy_saliency_randomisation_rank_correlation", out["sanity"])
        for m in ("masking", "occlusion"):
            tag = f"network/{m}"
            res.check(
                f"toy UNet: {m} saliency of a token points into its region (pointing game, mean over steps)",
                config.pointing_threshold,
                table[tag]["pointing"],
                0.0,
                relation="ge",
                note=where + f" (exact model: pointing {table[f'exact/{m}']['pointing']:.2f}).",
            )
            res.check(
                f"toy UNet: {m} saliency top-q IoU with the token's region (q = 1/4)",
                config.iou_threshold,
                table[tag]["iou"],
                0.0,
                relation="ge",
                note=f"a random map scores about 1/7; exact model {table[f'exact/{m}']['iou']:.2f}.",
            )
        res.note(
            "Toy UNet, Grad-CAM and attention relevance (no ground-truth guarantee even for a perfect model: they "
            "read activations and attention weights, not input dependence): pointing "
            f"{table['network/grad_cam']['pointing']:.2f} / {table['network/attention']['pointing']:.2f}, IoU "
            f"{table['network/grad_cam']['iou']:.2f} / {table['network/attention']['iou']:.2f} (chance 0.25 / ~0.14); "
            f"Jacobian {table['network/jacobian']['pointing']:.2f} / {table['network/jacobian']['iou']:.2f}, smooth "
            f"masks {table['network/smooth_masking']['pointing']:.2f} / {table['network/smooth_masking']['iou']:.2f}."
        )
        for m in ("masking", "grad_cam", "attention"):
            sane = float(np.mean([v[0] for v in out["sanity"][m].values()]))
            res.check(
                f"toy UNet sanity (Adebayo et al. 2018): {m} maps change when the weights are randomised "
                "(rank correlation trained vs randomised)",
                config.randomisation_threshold,
                sane,
                0.0,
                relation="le",
                note="weights replaced by Gaussian noise of each array's own mean and std; "
                f"randomised UNet's {m} pointing "
                f"{table[f'randomised/{m}']['pointing']:.2f} (chance 0.25).",
            )
        res.metric("toy_attention_information_correlation", out["correlation"])
    _auc_checks(res, config, out["auc"], "toy", out["auc_log_snr"], config.n_auc)
    res.metric("toy_auc", {k: v["summary"] for k, v in out["auc"].items()})
    _plot_saliency_toy(res, out, examples, config)
    _plot_auc(res, out["auc"], "auc_toy", "toy")


def _plot_saliency_toy(res, out, examples, config):
    import matplotlib.pyplot as plt

    steps = out["steps"]
    n_tok = len(config.separations)
    shown = [0, n_tok - 1]  # the coarsest and the finest token
    rows = [("exact", m) for m in ("masking", "smooth_masking", "jacobian", "occlusion")]
    if out["network"]:
        rows += [
            ("network", m)
            for m in ("masking", "smooth_masking", "jacobian", "occlusion", "grad_cam", "attention")
        ] + [("randomised", "masking"), ("randomised", "grad_cam")]
    cols = [(k, s) for k in shown for s in steps]
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(1.25 * len(cols) + 1, 1.3 * len(rows)), squeeze=False
    )
    for c, (k, s) in enumerate(cols):
        for r, (tag, m) in enumerate(rows):
            ax = axes[r, c]
            v = examples[(s, k)][tag][m].reshape(4, 4)
            ax.imshow(v, cmap="magma")
            sc = out["summary"][f"{tag}/{m}"][s]
            ax.set_title(f"pt {sc['pointing'][0]:.2f} IoU {sc['iou'][0]:.2f}", fontsize=5)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{tag}\n{m}", fontsize=6)
        li = steps.index(s)
        axes[0, c].set_title(
            f"y{k + 1}, lambda={out['log_snr'][li]:.1f}\n" + axes[0, c].get_title(), fontsize=6
        )
    res.figure(
        fig,
        "saliency_toy",
        "Saliency of the coarsest token y1 (region: top-left 2x2, left block of columns) "
        f"and the finest token y{n_tok} (right block) at {len(steps)} steps for one sample: exact model (its true "
        "token effect), trained UNet (all methods) and the randomised UNet. Titles: pointing-game rate and top-q "
        "IoU averaged over samples and all tokens at that step.",
    )
    if not out["network"]:
        return
    corr = out["correlation"]
    lam = np.asarray(out["correlation_log_snr"])
    fig, axes = plt.subplots(1, len(corr), figsize=(4.2 * len(corr), 3.2))
    for ax, (n, d) in zip(np.atleast_1d(axes), corr.items(), strict=False):
        r = np.asarray(d["mean_rate"])
        g = np.asarray(d["mean_relevance_guidance_energy"])
        s = np.asarray(d["mean_relevance_sum_eps"])
        ax.plot(lam, r / max(r.max(), 1e-12), "k-", label="rho_k (exact)")
        ax.plot(
            lam,
            g / max(g.max(), 1e-12),
            "C0--",
            label=f"relevance, guidance energy (rho_s {d['guidance_energy_vs_rate']['mean']:.2f})",
        )
        ax.plot(
            lam,
            s / max(np.abs(s).max(), 1e-12),
            "C1:",
            label=f"relevance, sum eps (rho_s {d['sum_eps_vs_rate']['mean']:.2f})",
        )
        ax.set_title(n, fontsize=8)
        ax.set_xlabel("log-SNR")
        ax.legend(fontsize=6)
    res.figure(
        fig,
        "attention_vs_information",
        "Correlation quantification: the UNet's attention relevance of each "
        "token over the steps (scaled to max 1) against the exact information rate rho_k; legend: mean Spearman "
        "correlation over steps per sample.",
    )


def _plot_auc(res, auc, name, label):
    import matplotlib.pyplot as plt

    keys = list(auc)
    fig, axes = plt.subplots(
        1,
        len(keys) + 1,
        figsize=(3.6 * (len(keys) + 1), 3.4),
        gridspec_kw={"width_ratios": [1] * len(keys) + [1.6]},
    )
    lines = []
    for ax, k in zip(axes, keys, strict=False):
        d = auc[k]
        for m, c in d["curves"].items():
            style = "k-" if m == "oracle" else ("k:" if m == "random" else "-")
            ax.plot(d["fractions"], c, style, lw=1.2 if m in ("oracle", "random") else 1, label=m)
        ax.set_title(k, fontsize=8)
        ax.set_xlabel("fraction of pixels")
        ax.set_ylabel("fidelity")
        ax.legend(fontsize=5)
        for m, s in d["summary"].items():
            lines.append(
                f"{k:22s} {m:15s} AUC {s['auc']:.3f} +- {s['auc_se']:.3f}   score "
                f"{s.get('score', float('nan')):6.2f} +- {s.get('score_se', float('nan')):.2f}"
            )
    axes[-1].axis("off")
    axes[-1].text(0, 1, "\n".join(lines), family="monospace", fontsize=4.6, va="top")
    res.figure(
        fig,
        name,
        f"Insertion/deletion games ({label}): mean fidelity curves per method with the random floor "
        "(dotted) and the greedy oracle (solid black); table: mean AUC and normalised score (AUC - random) / "
        "(oracle - random), per sample then averaged.",
    )


# =====================================================================================================
# 5. digits
# =====================================================================================================
def _digits_data(config, key):
    from ..data.digits import apply_attributes, load_digits

    data = load_digits()
    attrs = ("thickness", "bar")
    rng = np.random.default_rng(config.seed)
    a_tr = (rng.uniform(size=(len(data.train_images), 2)) < 0.5).astype(np.int32)
    tr = apply_attributes(data.train_images, a_tr, attrs)
    xtr = tr.images.reshape(len(tr.images), -1)
    ytr = np.c_[data.train_labels, a_tr].astype(np.int32)
    n_te = len(data.test_images)
    a_te = (rng.uniform(size=(n_te, 2)) < 0.5).astype(np.int32)
    te = apply_attributes(data.test_images, a_te, attrs)
    xte = te.images.reshape(n_te, -1)
    yte = np.c_[data.test_labels, a_te].astype(np.int32)
    return xtr, ytr, xte, yte, te.masks.reshape(n_te, 2, -1), ("class",) + attrs


def _digits(config, res, cache, key, out_dir, progress):
    from ..scores.mixture import GaussianMixture

    process = _process(config.process)
    tick = time.perf_counter()
    timing = {}
    xtr, ytr, xte, yte, masks, names = _digits_data(config, key)
    kde = ConditionalMixture(
        GaussianMixture(np.full(len(xtr), 1.0 / len(xtr)), xtr, config.digits_bandwidth**2),
        ytr,
        (10, 2, 2),
        names,
    )
    k_probe, k_run, k_net, k_noise, k_mask, k_rand, k_auc, k_unet = jr.split(jr.fold_in(key, 1), 8)
    probes = [
        C.train_probe(
            xtr,
            ytr[:, j],
            key=jr.fold_in(k_probe, j),
            steps=config.probe_steps * 2,
            hidden=64 if j == 0 else 0,
            n_classes=(10, 2, 2)[j],
            input_noise=0.1,
            name=names[j],
        )
        for j in range(3)
    ]
    probe_acc = {
        names[j]: float(
            np.mean(np.argmax(np.asarray(jax.vmap(probes[j])(jnp.asarray(xte))), -1) == yte[:, j])
        )
        for j in range(3)
    }
    grid = grids.logsnr_uniform(process, config.digits_grid)
    score = C.TokenConditionedScore(kde, process)
    rec = C.record_x0(
        score,
        "ddpm",
        grid,
        key=k_run,
        n=config.digits_particles,
        probes=probes,
        exact=kde,
        exact_slots=(0, 1, 2),
    )
    out = {"probe_test_accuracy": probe_acc, "log_snr": rec.log_snr.tolist(), "kde": {}, "unet": {}}
    chance = {0: 0.1, 1: 0.5, 2: 0.5}
    for j, n in enumerate(names):
        labels = np.argmax(rec.exact[j][-1], -1)
        cp = C.concept_curve(rec.probs[n], labels, rec.log_snr, rec.ts)
        ce = C.concept_curve(rec.exact[j], labels, rec.log_snr, rec.ts)
        em = dict(level=config.emergence_level, chance=chance[j])
        out["kde"][n] = {
            "probe_accuracy": cp.accuracy.tolist(),
            "exact_accuracy": ce.accuracy.tolist(),
            "exact_expected_accuracy": ce.expected_accuracy.tolist(),
            "emergence_probe": C.emergence_time(cp, **em),
            "emergence_exact": C.emergence_time(ce, **em),
        }
    idx = np.unique(np.linspace(0, len(rec.log_snr) - 1, 8).astype(int))
    out["kde_x0_grid"] = rec.x0[idx][:, :4].tolist()
    out["x0_grid_log_snr"] = rec.log_snr[idx].tolist()
    timing["kde_emergence"], tick = time.perf_counter() - tick, time.perf_counter()
    out["timings"] = timing
    if not config.digits_network:
        return out, None
    trained, train_s = _train_unet(
        config,
        out_dir,
        "concepts-digits-unet",
        xtr,
        ytr,
        (8, 8),
        (10, 2, 2),
        config.digits_train_steps,
        config.digits_base_channels,
        k_net,
        progress,
    )
    net = trained.ema
    timing["train"], tick = time.perf_counter() - tick, time.perf_counter()
    out["unet_train_s"] = train_s
    out["unet_from_cache"] = bool(trained.from_cache)
    out["unet_train_loss"] = float(np.mean(trained.losses[-50:])) if len(trained.losses) else None
    # emergence on UNet trajectories (unconditional), probes vs the KDE posterior at the same states
    uscore = net.bind(net.null_tokens)
    rec_u = C.record_x0(
        uscore,
        "ddpm",
        grid,
        key=k_unet,
        n=config.digits_particles,
        probes=probes,
        exact=kde,
        exact_slots=(0, 1, 2),
    )
    for j, n in enumerate(names):
        labels = np.argmax(rec_u.probs[n][-1], -1)
        cp = C.concept_curve(rec_u.probs[n], labels, rec_u.log_snr, rec_u.ts)
        ce = C.concept_curve(rec_u.exact[j], labels, rec_u.log_snr, rec_u.ts)
        em = dict(level=config.emergence_level, chance=chance[j])
        out["unet"][n] = {
            "probe_accuracy": cp.accuracy.tolist(),
            "kde_posterior_accuracy": ce.accuracy.tolist(),
            "emergence_probe": C.emergence_time(cp, **em),
            "emergence_kde": C.emergence_time(ce, **em),
            "final_label_rate": np.bincount(labels, minlength=(10, 2, 2)[j]).tolist(),
        }
    out["unet_x0_grid"] = rec_u.x0[idx][:, :4].tolist()
    timing["unet_emergence"], tick = time.perf_counter() - tick, time.perf_counter()
    # saliency of the bar token on the UNet, test digits with the bar on
    den, rnet = TokenNetworkDenoiser(net), _randomise(net, k_rand)
    rden = TokenNetworkDenoiser(rnet)
    sel = np.flatnonzero(yte[:, 2] == 1)[: config.digits_n_saliency]
    steps = list(config.digits_saliency_steps)
    g = np.asarray(grid)
    ts = [C.step_time(g, s) for s in steps]
    xts = np.asarray(_forward_states(process, jnp.asarray(xte[sel]), ts, k_noise))
    scores, sanity, examples = {}, {}, {}
    for si, (s, t) in enumerate(
        progress_bar(list(zip(steps, ts, strict=False)), "digits saliency", progress)
    ):
        for ii, i in enumerate(sel):
            kk = jr.fold_in(k_mask, si * 100 + ii)
            xt = jnp.asarray(xts[si, ii])
            ex = {
                m: np.asarray(v) for m, v in _maps_exact(kde, process, t, xt, yte[i], 2, kk, config).items()
            }
            nw = _maps_network(net, den, process, t, xt, yte[i], 2, kk, config)
            rn = _maps_network(rnet, rden, process, t, xt, yte[i], 2, kk, config)
            region = masks[i, 1]
            for tag, maps in (("kde", ex), ("network", nw), ("randomised", rn)):
                for m, v in maps.items():
                    sc = C.saliency_scores(v, region)
                    d = scores.setdefault(f"{tag}/{m}", {}).setdefault(
                        s, {"pointing": [], "iou": [], "mass": []}
                    )
                    for a in d:
                        d[a].append(float(sc[a]))
            for m, v in nw.items():
                sanity.setdefault(m, {}).setdefault(s, []).append(float(C.spearman(np.abs(v), np.abs(rn[m]))))
            if ii == 0:
                examples[s] = {
                    "kde": ex,
                    "network": nw,
                    "randomised": rn,
                    "x": np.asarray(xt),
                    "region": region,
                }
    out["saliency"] = {
        tag: {s: {a: _mean_se(v) for a, v in d.items()} for s, d in per.items()}
        for tag, per in scores.items()
    }
    out["saliency_sanity"] = {m: {s: _mean_se(v) for s, v in d.items()} for m, d in sanity.items()}
    out["saliency_steps"] = steps
    out["saliency_log_snr"] = [float(process.log_snr(t)) for t in ts]
    timing["saliency"], tick = time.perf_counter() - tick, time.perf_counter()
    # AUC on the UNet's x0_hat given all tokens
    t_auc = C.step_time(g, steps[len(steps) // 2])
    sel_a = np.arange(config.n_auc)
    xa = np.asarray(_forward_states(process, jnp.asarray(xte[sel_a]), [t_auc], jr.fold_in(k_noise, 5))[0])
    maps = {}
    for ii, i in enumerate(sel_a):
        fn = C.conditional_fn(den, process, t_auc, yte[i], np.ones(3, bool))
        ki = jr.fold_in(k_auc, ii)
        row = {
            "masking": C.masking_saliency(fn, xa[ii], ki, n_masks=config.n_masks),
            "smooth_masking": C.masking_saliency(
                fn, xa[ii], ki, n_masks=config.n_masks, kind="smooth", image_shape=(8, 8), cells=(4, 4)
            ),
            "jacobian": C.jacobian_saliency(fn, xa[ii]),
            "occlusion": C.occlusion_saliency(fn, xa[ii], patch=(2, 2), image_shape=(8, 8)),
            "grad_cam": C.grad_cam(net, t_auc, xa[ii], yte[i], guidance=config.guidance).combined.reshape(-1),
            "attention": C.attention_relevance(net, t_auc, xa[ii], yte[i], guidance=config.guidance)
            .maps[:-1]
            .sum(0)
            .reshape(-1),
        }
        for m, v in row.items():
            maps.setdefault(m, []).append(np.asarray(v))
    maps = {m: np.stack(v) for m, v in maps.items()}
    fn_ctx = C.conditional_tokens_fn(den, process, t_auc)
    auc = {}
    for mode in ("insertion", "deletion"):
        r = C.insertion_deletion(
            fn_ctx,
            xa,
            maps,
            jr.fold_in(k_auc, 99),
            mode=mode,
            context=jnp.asarray(yte[sel_a]),
            stride=config.digits_auc_stride,
            n_random=config.n_random_orders,
        )
        auc[f"unet/{mode}"] = {
            "summary": r.summary,
            "curves": {m: np.asarray(c).mean(0).tolist() for m, c in r.curves.items()},
            "fractions": r.fractions.tolist(),
        }
    out["auc"] = auc
    out["auc_log_snr"] = float(process.log_snr(t_auc))
    timing["auc"] = time.perf_counter() - tick
    return out, examples


def _report_digits(config, res, out, examples):
    names = list(out["kde"])
    res.metric("digits_probe_test_accuracy", out["probe_test_accuracy"])
    res.metric(
        "digits_emergence_kde",
        {n: {k: out["kde"][n][k] for k in ("emergence_probe", "emergence_exact")} for n in names},
    )
    probe = [out["kde"][n]["emergence_probe"] for n in names]
    exact = [out["kde"][n]["emergence_exact"] for n in names]
    res.check(
        "digits (analytic KDE): probe-on-x0_hat emergence = exact-posterior emergence (log-SNR) for class, "
        "thickness, bar",
        exact,
        probe,
        config.emergence_tolerance,
        note=f"{config.digits_particles} DDPM trajectories of the exact KDE score ({len(out['log_snr']) - 1} "
        "steps); probes trained on clean attributed digits (test accuracy "
        f"{ {k: round(v, 3) for k, v in out['probe_test_accuracy'].items()} }).",
    )
    if out.get("unet"):
        res.metric(
            "digits_unet_training",
            {
                "train_s": out["unet_train_s"],
                "from_cache": out["unet_from_cache"],
                "final_loss": out["unet_train_loss"],
            },
        )
        res.metric(
            "digits_emergence_unet",
            {
                n: {k: out["unet"][n][k] for k in ("emergence_probe", "emergence_kde", "final_label_rate")}
                for n in names
            },
        )
        table = {
            tag: {a: _summary_mean(out["saliency"], tag, a) for a in ("pointing", "iou", "mass")}
            for tag in out["saliency"]
        }
        res.metric("digits_saliency_scores", table)
        res.metric("digits_saliency_scores_per_step", out["saliency"])
        res.metric("digits_saliency_randomisation_rank_correlation", out["saliency_sanity"])
        frac = float(np.mean([len(np.flatnonzero(examples[s]["region"])) for s in examples])) / 64
        for m in ("masking", "occlusion"):
            res.check(
                f"digits UNet: {m} saliency of the bar token points into the bar's pixels (pointing game)",
                config.pointing_threshold,
                table[f"network/{m}"]["pointing"],
                0.0,
                relation="ge",
                note=f"the bar changes {100 * frac:.0f}% of the pixels (chance); steps {out['saliency_steps']} "
                f"(log-SNR {np.round(out['saliency_log_snr'], 1).tolist()}), {config.digits_n_saliency} test "
                f"digits with the bar on; exact KDE model: {table[f'kde/{m}']['pointing']:.2f}.",
            )
        for m in ("masking", "grad_cam", "attention"):
            sane = float(np.mean([v[0] for v in out["saliency_sanity"][m].values()]))
            res.check(
                f"digits UNet sanity: {m} maps change when the weights are randomised (rank correlation)",
                config.randomisation_threshold,
                sane,
                0.0,
                relation="le",
            )
        res.note(
            "Digits UNet, bar token: pointing / IoU of Grad-CAM "
            f"{table['network/grad_cam']['pointing']:.2f} / {table['network/grad_cam']['iou']:.2f}, attention "
            f"relevance {table['network/attention']['pointing']:.2f} / {table['network/attention']['iou']:.2f}, "
            f"Jacobian {table['network/jacobian']['pointing']:.2f} / {table['network/jacobian']['iou']:.2f}."
        )
        _auc_checks(res, config, out["auc"], "digits", out["auc_log_snr"], config.n_auc)
        res.metric("digits_auc", {k: v["summary"] for k, v in out["auc"].items()})
        _plot_auc(res, out["auc"], "auc_digits", "digits UNet")
    _plot_digits(res, out, examples, config)


def _plot_digits(res, out, examples, config):
    import matplotlib.pyplot as plt

    lam = np.asarray(out["log_snr"])
    names = list(out["kde"])
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for j, n in enumerate(names):
        ax.plot(lam, out["kde"][n]["probe_accuracy"], "-", color=f"C{j}", label=f"{n}: probe on x0_hat (KDE)")
        ax.plot(
            lam,
            out["kde"][n]["exact_accuracy"],
            "--",
            color=f"C{j}",
            alpha=0.7,
            label=f"{n}: exact posterior",
        )
        if out.get("unet"):
            ax.plot(
                lam,
                out["unet"][n]["probe_accuracy"],
                "-.",
                color=f"C{j}",
                alpha=0.7,
                label=f"{n}: probe (UNet)",
            )
    ax.set_xlabel("log-SNR")
    ax.set_ylabel("accuracy for the final concept")
    ax.legend(fontsize=6)
    res.figure(
        fig,
        "emergence_digits",
        "Concept emergence on digits: class, stroke thickness and the bar attribute read "
        "by probes on x0_hat along DDPM trajectories of the analytic kernel-density model (exact posterior "
        "dashed) and of the trained UNet (dash-dot).",
    )
    grids_ = [("KDE", out["kde_x0_grid"])] + (
        [("UNet", out["unet_x0_grid"])] if "unet_x0_grid" in out else []
    )
    fig, axes = plt.subplots(4 * len(grids_), 8, figsize=(8, 4.2 * len(grids_)))
    for gi, (tag, gr) in enumerate(grids_):
        gr = np.asarray(gr)
        for s in range(gr.shape[0]):
            for i in range(4):
                ax = axes[gi * 4 + i, s]
                ax.imshow(np.clip(gr[s, i].reshape(8, 8), -1, 1), cmap="gray", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if gi == 0 and i == 0:
                    ax.set_title(f"{out['x0_grid_log_snr'][s]:.1f}", fontsize=7)
            axes[gi * 4, 0].set_ylabel(tag, fontsize=8)
    res.figure(
        fig,
        "x0_grid_digits",
        "Predicted clean samples x0_hat along unconditional DDPM trajectories (rows) at "
        "eight log-SNRs (columns): analytic KDE model (top) and trained UNet (bottom).",
    )
    if examples:
        steps = list(examples)
        rows = (
            [("kde", "masking"), ("kde", "occlusion")]
            + [
                ("network", m)
                for m in ("masking", "smooth_masking", "jacobian", "occlusion", "grad_cam", "attention")
            ]
            + [("randomised", "masking")]
        )
        fig, axes = plt.subplots(
            len(rows) + 1, len(steps), figsize=(1.6 * len(steps) + 1, 1.4 * (len(rows) + 1))
        )
        for c, s in enumerate(steps):
            e = examples[s]
            axes[0, c].imshow(e["x"].reshape(8, 8), cmap="gray")
            axes[0, c].contour(e["region"].reshape(8, 8), levels=[0.5], colors="r", linewidths=0.8)
            axes[0, c].set_title(f"x_t, lambda={out['saliency_log_snr'][c]:.1f}", fontsize=6)
            for r, (tag, m) in enumerate(rows):
                ax = axes[r + 1, c]
                ax.imshow(e[tag][m].reshape(8, 8), cmap="magma")
                sc = out["saliency"][f"{tag}/{m}"][s]
                ax.set_title(f"pt {sc['pointing'][0]:.2f} IoU {sc['iou'][0]:.2f}", fontsize=5)
                if c == 0:
                    ax.set_ylabel(f"{tag}\n{m}", fontsize=6)
            for ax in axes[:, c]:
                ax.set_xticks([])
                ax.set_yticks([])
        res.figure(
            fig,
            "saliency_digits",
            "Saliency of the bar token on digits (red contour: the bar's pixels) per step: "
            "exact KDE model, trained UNet (all methods) and the randomised UNet; titles: pointing-game rate and "
            "top-q IoU averaged over the test digits at that step.",
        )


# =====================================================================================================
# the study
# =====================================================================================================
@register(
    "concepts",
    Config,
    quick=dict(
        n_particles=512,
        n_grid=50,
        n_probe_train=2000,
        probe_steps=200,
        n_info=256,
        n_info_logsnr=29,
        info_noise=8,
        n_schedule=4000,
        toy_network=False,
        digits=False,
        emergence_tolerance=0.5,
    ),
    description="What the sampler sees per step (Park et al. 2024): concept emergence on x0_hat, information "
    "rates, saliency and AUC against ground truth, step schedules.",
)
def run(config: Config, out_dir: Path, *, progress: bool = True) -> Results:
    res = Results("concepts", config, out_dir)
    cache = ResultCache(out_dir, config)
    key = jr.key(config.seed)
    timings = {}
    t0 = time.perf_counter()
    em = _emergence(config, res, cache, jr.fold_in(key, 1), progress)
    _report_emergence(config, res, em)
    timings["emergence"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    info = _information(config, res, cache, jr.fold_in(key, 2), em)
    _report_information(config, res, info, em)
    timings["information"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sch = _schedules(config, res, cache, jr.fold_in(key, 3))
    _report_schedules(config, res, sch)
    timings["schedules"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sal, ex = _saliency_toy(config, res, cache, jr.fold_in(key, 4), out_dir, progress)
    _report_saliency_toy(config, res, sal, ex)
    timings["saliency_toy"] = time.perf_counter() - t0
    if config.digits:
        t0 = time.perf_counter()
        dg, ex = _digits(config, res, cache, jr.fold_in(key, 5), out_dir, progress)
        _report_digits(config, res, dg, ex)
        timings["digits"] = time.perf_counter() - t0
    timings["saliency_toy_parts"] = {k: round(v, 1) for k, v in sal["timings"].items()}
    if config.digits:
        timings["digits_parts"] = {k: round(v, 1) for k, v in dg["timings"].items()}
    res.metric("timings_s", {k: v if isinstance(v, dict) else round(v, 1) for k, v in timings.items()})
    res.note(
        "Log-SNR lambda = log(alpha^2 / sigma^2); the reverse process runs from low to high lambda. "
        "Emergence log-SNR: where the accuracy for the final concept, normalised between chance and 1, last "
        f"crosses {config.emergence_level}."
    )
    return res
