r"""Study ``information``: pointwise / pixel-wise MI and partial information decomposition (PID) from
denoisers (DiffusionPID, Dewan et al. NeurIPS 2024, on the I-MMSE estimators of Kong et al. ICLR 2023/2024),
on models whose ground truth is known.

Sections (docs/information.md has the theory, every constant and the figures):

1. **Gates** UNQ, XOR, RDN, AND, COPY as well-separated conditional mixtures
   (:func:`diffsim.data.synthetic.pid_gate`): the engine's PID (standard estimator, every measure) beside the
   exact continuous PID of the analytic model, the exact discrete PID of the well-separated limit
   (:func:`~diffsim.analysis.information.discrete_pid`) and, when ``dit`` is importable, dit's values
   (PID_WB, PID_MMI, plus PID_BROJA and PID_CCS for comparison).
2. **MMSE curves** of the AND gate: the standard and orthogonal integrands per log-SNR with one noise draw
   (DiffusionPID's zigzag) and a dense reference; ITD's pointwise ``-log p(x)`` against the exact density.
3. **Pixel maps** on block-structured data (:func:`~diffsim.data.synthetic.block_structured`) where each
   token controls a known block: structural zeros and where each PID term lives.
4. **Bias sweep**: tokens ``y1`` (depicted) and ``y2`` (not depicted) with prior correlation ``rho``;
   redundancy tracks ``rho`` (for MMI and Williams-Beer it equals ``I(Y1; Y2)``).
5. **Estimator ablation** (number of log-SNR samples x noise draws) against the exact values.
6. **Digits** with two tokens (class and a synthetic attribute with known pixel support,
   :mod:`diffsim.data.digits`): an analytic kernel-density conditional mixture (exact pointwise MIs) and a
   trained token-conditional MLP (:mod:`diffsim.scores.networks`, cached training), on the same log-SNRs
   and noise draws, so their difference is pure model error.

All informations are in nats internally and reported in bits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.information import (
    PID_MEASURES,
    LogSNRScheme,
    decompose,
    discrete_pid,
    exact_pid_information,
    exact_pointwise_information,
    mmse_curves,
    neg_log_likelihood,
    pid_information,
    well_separated_joint,
)
from ..data.synthetic import GATES, binary_prior, block_structured, pid_gate
from ..scores.conditional import ConditionalMixture
from ._runner import ResultCache, Results, progress_bar, register


__all__ = ["Config", "dit_pid_values", "run"]

LN2 = math.log(2.0)
TERMS = ("redundancy", "unique1", "unique2", "synergy")
_CHUNK = 32  # fixed compiled chunk of points (padded): every analytic section shares shapes
_K = 4  # gates, blocks and the bias sweep all use 4 components (RDN is padded)


@dataclass(frozen=True)
class Config:
    """Configuration of the ``information`` study (defaults: a few CPU minutes; ``--quick``: ~30 s)."""

    seed: int = 0
    # estimator for gates, blocks and the bias sweep: truncated-logistic log-SNR importance sampling
    n_logsnr: int = 256
    n_noise: int = 16
    logsnr_loc: float = -2.0
    logsnr_scale: float = 2.0
    logsnr_clip: float = 5.0
    stratified: bool = True
    n_se: float = 4.0
    tolerance_floor_bits: float = 0.005
    # gates
    gates: tuple[str, ...] = GATES
    gate_separation: float = 6.0
    gate_std: float = 0.5
    n_per_component: int = 16
    # MMSE curves and ITD
    curve_logsnr: int = 96
    curve_noise: int = 256
    n_nll_points: int = 32
    # pixel maps on block data
    block_size: int = 4
    block_separation: float = 3.0
    block_std: float = 0.6
    n_block_samples: int = 64
    # bias sweep
    correlations: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9)
    bias_per_component: int = 16
    # ablation
    ablation_gate: str = "AND"
    ablation_logsnr: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    ablation_noise: tuple[int, ...] = (1, 4, 16)
    ablation_repeats: int = 4
    ablation_per_component: int = 8
    # digits
    digits: bool = True
    digits_network: bool = True
    digits_attribute: str = "bar"
    digits_bandwidth: float = 0.3
    digits_n_images: int = 16
    digits_n_logsnr: int = 64
    digits_n_noise: int = 4
    digits_train_steps: int = 4000
    digits_token_dropout: float = 0.5
    digits_width: int = 256
    digits_depth: int = 3
    cache_dir: str = ""

    def __post_init__(self):
        for name in (
            "n_logsnr",
            "n_noise",
            "n_per_component",
            "curve_logsnr",
            "curve_noise",
            "n_nll_points",
            "block_size",
            "n_block_samples",
            "bias_per_component",
            "ablation_repeats",
            "ablation_per_component",
            "digits_n_images",
            "digits_n_logsnr",
            "digits_n_noise",
            "digits_train_steps",
            "digits_width",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
        for g in self.gates + (self.ablation_gate,):
            if g.upper() not in GATES:
                raise ValueError(f"Unknown gate {g!r}; gates are {GATES}.")
        for rho in self.correlations:
            if not -1.0 < rho < 1.0:
                raise ValueError(f"`correlations` must lie in (-1, 1), got {rho}.")
        if not 0.0 <= self.digits_token_dropout < 1.0:
            raise ValueError(f"`digits_token_dropout` must lie in [0, 1), got {self.digits_token_dropout}.")
        if (
            not self.ablation_logsnr
            or not self.ablation_noise
            or min(self.ablation_logsnr + self.ablation_noise) < 1
        ):
            raise ValueError("`ablation_logsnr` and `ablation_noise` must be non-empty positive integers.")


def _scheme(config: Config, n: int | None = None) -> LogSNRScheme:
    return LogSNRScheme.logistic(
        n or config.n_logsnr,
        config.logsnr_loc,
        config.logsnr_scale,
        config.logsnr_clip,
        stratified=config.stratified,
    )


def _tolerances(est, ex, w, config) -> dict[str, float]:
    r"""Monte-Carlo tolerances (bits) of the image-level PID terms, from the estimator's own per-sample noise
    ``n_i = i_hat_i - i_i`` (exact pointwise informations known):

    - ``SE_k = sqrt(sum_i w_i^2 n_ik^2)`` per information column, combined over the three columns (every term
      involves at most all three);
    - pointwise min: ``min(a + n_1, b + n_2) - min(a, b)`` has mean in ``[-E|n_1 - n_2|/2, E|n_1 - n_2|/2]``
      (``min(u, v) = (u + v)/2 - |u - v|/2``), so the bias allowance is ``sum_i w_i |n_i1 - n_i2| / 2``;
    - MMI: the same bound on the averaged informations, ``sqrt(sum_i w_i^2 (n_i1 - n_i2)^2) sqrt(2/pi) / 2``;
    - Williams-Beer: ``n_se`` SE of the specific informations.

    Each tolerance is ``n_se * SE + allowance``, floored at ``tolerance_floor_bits`` (float32 rounding).
    """
    w = np.asarray(w, float)
    noise = (np.asarray(est.pointwise, float) - np.asarray(ex.pointwise, float)) / LN2
    se = math.sqrt(float(np.sum((w[:, None] * noise) ** 2)))
    diff = noise[:, 0] - noise[:, 1]
    allow = {
        "pointwise_min": float(np.sum(w * np.abs(diff)) / 2),
        "mmi": float(math.sqrt(np.sum((w * diff) ** 2)) * math.sqrt(2 / math.pi) / 2),
    }
    out = {m: config.n_se * se + allow[m] for m in allow}
    spec = (np.asarray(est.specific, float) - np.asarray(ex.specific, float)) / LN2
    out["wb_imin"] = config.n_se * math.sqrt(float(np.sum((w[:, None] * spec) ** 2)))
    return {m: round(max(v, config.tolerance_floor_bits), 4) for m, v in out.items()}


def _bits(terms) -> list[float]:
    return [float(v) / LN2 for v in terms]


def dit_pid_values(joint: np.ndarray) -> dict[str, list[float]] | None:
    """``[R, U1, U2, S]`` in bits from ``dit`` (PID_WB, PID_MMI, PID_BROJA, PID_CCS) for a table
    ``p(y1, y2, g)``; None when ``dit`` is not installed (it is a test dependency only)."""
    try:
        import dit
        from dit.pid import PID_BROJA, PID_CCS, PID_MMI, PID_WB
    except ImportError:
        return None
    outcomes, probs = [], []
    for idx in np.ndindex(*joint.shape):
        if joint[idx] > 1e-15:
            outcomes.append(tuple(int(i) for i in idx))
            probs.append(float(joint[idx]))
    d = dit.Distribution(outcomes, probs)
    keys = [((0,), (1,)), ((0,),), ((1,),), ((0, 1),)]
    out = {}
    for name, cls in (("wb_imin", PID_WB), ("mmi", PID_MMI), ("broja", PID_BROJA), ("ccs", PID_CCS)):
        try:
            p = cls(d, [[0], [1]], [2])
            out[name] = [float(p.get_pi(k)) for k in keys]
        except Exception:  # noqa: BLE001 - an optimiser failure in dit must not stop the study
            out[name] = [float("nan")] * 4
    return out


def _engine_and_exact(m, x, y, w, key, scheme, n_noise, context=()):
    """Engine PID (standard and orthogonal estimators) and exact PID, every measure, in bits."""
    est = pid_information(
        m, x, y, key, context=context, scheme=scheme, n_noise=n_noise, sample_weights=w, chunk_size=_CHUNK
    )
    ex = exact_pid_information(m, x, y, context=context, sample_weights=w)
    out = {}
    for measure in PID_MEASURES:
        out[measure] = {
            "engine": _bits(decompose(est, measure).terms),
            "engine_orthogonal": _bits(decompose(est, measure, estimator="orthogonal").terms),
            "exact": _bits(decompose(ex, measure).terms),
        }
    return out, est, ex


def _with_tolerances(out, est, ex, w, config):
    tol = _tolerances(est, ex, w, config)
    for measure in PID_MEASURES:
        out[measure]["tolerance"] = tol[measure]
    return out


# =====================================================================================================
# 1. gates
# =====================================================================================================
def _gates(config, res, cache, key, progress):
    scheme = _scheme(config)
    rows = {}
    for i, g in enumerate(progress_bar(config.gates, "gates", progress)):

        def compute(g=g, i=i):
            m = ConditionalMixture.from_token_mixture(
                pid_gate(g, separation=config.gate_separation, std=config.gate_std)
            ).padded(_K)
            x, y, w = m.sample_stratified(jr.fold_in(key, 2 * i), config.n_per_component)
            out, est, ex = _engine_and_exact(m, x, y, w, jr.fold_in(key, 2 * i + 1), scheme, config.n_noise)
            out = _with_tolerances(out, est, ex, w, config)
            joint = well_separated_joint(m)
            for measure in PID_MEASURES:
                out[measure]["discrete"] = list(discrete_pid(joint, measure, unit="bits"))
            out["dit"] = dit_pid_values(joint)
            return out

        rows[g] = cache.get_or_compute(f"gate-{g}", compute)
    have_dit = any(r["dit"] is not None for r in rows.values())
    res.metric("gates_bits", rows)
    for g, r in rows.items():
        dev = max(
            abs(a - b) for m in PID_MEASURES for a, b in zip(r[m]["exact"], r[m]["discrete"], strict=False)
        )
        res.check(
            f"gate {g}: exact continuous PID = discrete PID of the well-separated limit (max |dev|, bits)",
            0.0,
            dev,
            1e-4,
            note=f"separation {config.gate_separation}, std {config.gate_std}: x carries g exactly.",
        )
        for m in PID_MEASURES:
            res.check(
                f"gate {g}: engine {m} [R, U1, U2, S] = exact (bits)",
                r[m]["discrete"],
                r[m]["engine"],
                r[m]["tolerance"],
                note=f"standard estimator, {config.n_logsnr} logistic log-SNRs x {config.n_noise} noise draws, "
                f"{config.n_per_component} samples per component; tolerance {config.n_se:g} SE of the "
                "measured per-sample noise"
                + (" + the bias bound E|n1 - n2|/2 of a min of noisy MIs" if m != "wb_imin" else "")
                + ".",
            )
            if r["dit"] is not None and m in r["dit"]:
                dd = max(abs(a - b) for a, b in zip(r[m]["discrete"], r["dit"][m], strict=False))
                res.check(f"gate {g}: discrete {m} = dit (max |dev|, bits)", 0.0, dd, 1e-6)
    if not have_dit:
        res.note(
            "`dit` is not installed: the gate PIDs are checked against the engine's own exact discrete PID "
            "only (install the [test] extra to record dit's values too)."
        )
    _plot_gates(res, rows)
    return rows


def _plot_gates(res, rows):
    import matplotlib.pyplot as plt

    gates = list(rows)
    fig, axes = plt.subplots(1, len(gates), figsize=(3.3 * len(gates), 3.4), sharey=True, squeeze=False)
    colours = {"pointwise_min": "C0", "mmi": "C1", "wb_imin": "C2", "broja": "C3", "ccs": "C4"}
    for ax, g in zip(axes[0], gates, strict=False):
        r = rows[g]
        series = [(m, r[m]["discrete"], False) for m in PID_MEASURES]
        if r["dit"] is not None:
            series += [(m, r["dit"][m], True) for m in ("broja", "ccs")]
        width = 0.8 / len(series)
        pos = np.arange(4)
        for j, (m, vals, is_dit) in enumerate(series):
            off = pos - 0.4 + (j + 0.5) * width
            ax.bar(
                off,
                vals,
                width,
                color=colours[m],
                alpha=0.45 if is_dit else 0.8,
                hatch="//" if is_dit else None,
                label=(f"dit {m}" if is_dit else f"exact {m}"),
            )
            if not is_dit:
                ax.plot(off, r[m]["engine"], "ko", ms=4, label="engine (standard)" if j == 0 else None)
                ax.plot(
                    off,
                    r[m]["engine_orthogonal"],
                    "kx",
                    ms=5,
                    label="engine (orthogonal)" if j == 0 else None,
                )
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xticks(pos, ["R", "U1", "U2", "S"])
        ax.set_title(g)
    axes[0, 0].set_ylabel("bits")
    axes[0, -1].legend(fontsize=6, loc="upper right")
    fig.suptitle("PID of the gates by measure: exact bars, engine markers")
    res.figure(
        fig,
        "pid_gates",
        "PID terms of the five gates for each measure (bars: exact discrete values; "
        "hatched: dit's BROJA and CCS for comparison; dots: engine, standard estimator; crosses: "
        "orthogonal estimator).",
    )


# =====================================================================================================
# 2. MMSE curves and ITD
# =====================================================================================================
def _curves(config, res, cache, key, progress):
    m = ConditionalMixture.from_token_mixture(
        pid_gate("AND", separation=config.gate_separation, std=config.gate_std)
    )
    x, y, _ = m.sample_stratified(jr.fold_in(key, 0), 1)  # one point per component
    n = x.shape[0]
    lo, hi = (
        config.logsnr_loc - config.logsnr_clip * config.logsnr_scale,
        config.logsnr_loc + config.logsnr_clip * config.logsnr_scale,
    )
    grid = LogSNRScheme.gauss_legendre(config.curve_logsnr, lo, hi)
    masks = jnp.asarray([[False, False], [True, False], [False, True], [True, True]])
    tok = jnp.broadcast_to(y[:, None, :], (n, 4, 2))
    pairs = ((0, 1), (0, 2), (0, 3))

    reps = 4

    def compute():
        one = mmse_curves(
            m, x, tok, masks, jr.fold_in(key, 1), scheme=grid, n_noise=1, pairs=pairs, chunk_size=n * reps
        )
        ref = mmse_curves(
            m,
            jnp.tile(x, (reps, 1)),
            jnp.tile(tok, (reps, 1, 1)),
            masks,
            jr.fold_in(key, 2),
            scheme=grid,
            n_noise=config.curve_noise,
            pairs=pairs,
            chunk_size=n * reps,
        )
        exact = np.asarray(exact_pointwise_information(m, x, y, about=(0,)))
        return {
            "log_snr": one.log_snr[0].tolist(),
            "weight": one.weight[0].tolist(),
            "std_one": one.standard_integrand(0, 1).tolist(),
            "orth_one": one.orthogonal_integrand(0, 1).tolist(),
            "std_ref": ref.standard_integrand(0, 1).reshape(reps, n, -1).mean(0).tolist(),
            "orth_ref": ref.orthogonal_integrand(0, 1).reshape(reps, n, -1).mean(0).tolist(),
            "i1_ref_replicates": ref.standard(0, 1).reshape(reps, n).tolist(),
            "mmse_ref": ref.mmse[:n].tolist(),
            "exact_i1": exact.tolist(),
            "tokens": np.asarray(y).tolist(),
        }

    c = cache.get_or_compute("curves", compute)
    w = np.asarray(c["weight"])
    i_reps = np.asarray(c["i1_ref_replicates"])
    i_std = i_reps.mean(0)
    se = i_reps.std(0, ddof=1) / math.sqrt(reps)
    i_orth = (np.asarray(c["orth_ref"]) * w).sum(-1)
    exact = np.asarray(c["exact_i1"])
    z = float(np.max(np.abs(i_std - exact) / np.maximum(se, 1e-9)))
    res.metric(
        "curves_i1_nats",
        {
            "standard": i_std.tolist(),
            "standard_se": se.tolist(),
            "orthogonal": i_orth.tolist(),
            "exact": exact.tolist(),
        },
    )
    res.check(
        "MMSE curves: integral of the dense standard integrand = exact i(x; y1) (max |z| over points)",
        0.0,
        z,
        config.n_se,
        note=f"Gauss-Legendre {config.curve_logsnr} nodes on [{lo:g}, {hi:g}], {config.curve_noise} noise draws, "
        f"{reps} replicates for the SE; one point per AND component; truncation beyond the support is "
        "negligible here (the gap decays like e^(-|lambda|)).",
    )
    res.check(
        "MMSE curves: orthogonal integrand >= 0 at every log-SNR",
        True,
        bool(np.all(np.asarray(c["orth_ref"]) >= 0)),
        relation="true",
    )
    zig_std = float(np.std(np.diff(np.asarray(c["std_one"]), axis=-1)))
    zig_orth = float(np.std(np.diff(np.asarray(c["orth_one"]), axis=-1)))
    res.metric("curves_zigzag_sd_one_draw", {"standard": zig_std, "orthogonal": zig_orth})
    res.check(
        "MMSE curves: with one noise draw the standard integrand zigzags more than the orthogonal one "
        "(sd of successive differences)",
        zig_orth,
        zig_std,
        0.0,
        relation="ge",
        note="DiffusionPID appendix: the standard estimator 'exhibits significant zigzag patterns'.",
    )

    # ITD: -log p(x) of gate samples against the exact density
    def compute_nll():
        xs, _ = m.sample(jr.fold_in(key, 3), config.n_nll_points)
        reps = 4
        scheme = LogSNRScheme.logistic(config.n_logsnr, 0.0, 2.0, 8.0)
        nll = neg_log_likelihood(
            m,
            jnp.tile(xs, (reps, 1)),
            jr.fold_in(key, 4),
            scheme=scheme,
            n_noise=config.n_noise,
            base_variances=float(np.var(np.asarray(xs))),
            chunk_size=_CHUNK,
        )
        exact_nll = -np.asarray(
            jax.vmap(lambda xi: m.data_log_prob(xi, jnp.zeros(2, jnp.int32), jnp.zeros(2, bool)))(xs)
        )
        return {"estimate": np.asarray(nll.nll).reshape(reps, -1).tolist(), "exact": exact_nll.tolist()}

    r = cache.get_or_compute("itd-nll", compute_nll)
    est = np.asarray(r["estimate"])
    diff = est.mean(0) - np.asarray(r["exact"])
    se = est.std(0, ddof=1) / math.sqrt(est.shape[0])
    res.metric(
        "itd_nll",
        {
            "mean_error": float(diff.mean()),
            "rmse": float(np.sqrt(np.mean(diff**2))),
            "mean_se": float(se.mean()),
        },
    )
    res.check(
        "ITD: -log p(x) estimate = exact (mean error over points, nats)",
        0.0,
        float(diff.mean()),
        round(float(4 * np.sqrt(np.mean(se**2) / len(diff)) + 0.01), 4),
        note="1/2 int (mmse - mmse_G) + h_G with the control variate; tolerance 4 SE of the mean + 0.01.",
    )
    _plot_curves(res, c, config)


def _plot_curves(res, c, config):
    import matplotlib.pyplot as plt

    lam = np.asarray(c["log_snr"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    k = 3  # component (1, 1)
    ax = axes[0]
    ax.plot(lam, np.asarray(c["std_one"])[k], color="C0", lw=0.8, alpha=0.7, label="standard, 1 draw")
    ax.plot(lam, np.asarray(c["orth_one"])[k], color="C1", lw=0.8, alpha=0.7, label="orthogonal, 1 draw")
    ax.plot(lam, np.asarray(c["std_ref"])[k], color="C0", lw=2, label=f"standard, {config.curve_noise} draws")
    ax.plot(
        lam,
        np.asarray(c["orth_ref"])[k],
        color="C1",
        lw=2,
        ls="--",
        label=f"orthogonal, {config.curve_noise} draws",
    )
    ax.set_xlabel("log-SNR")
    ax.set_ylabel("integrand of i(x; y1) [nats per unit log-SNR]")
    ax.set_title(f"AND gate, x from (y1, y2) = {tuple(c['tokens'][k])}")
    ax.legend(fontsize=7)
    ax = axes[1]
    for j in range(4):
        ax.plot(lam, np.asarray(c["std_ref"])[j], label=f"tokens {tuple(c['tokens'][j])}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("log-SNR")
    ax.set_title("standard integrand of i(x; y1), every component")
    ax.legend(fontsize=7)
    ax = axes[2]
    mm = np.asarray(c["mmse_ref"])[k]
    for j, name in enumerate(["{}", "{y1}", "{y2}", "{y1, y2}"]):
        ax.plot(lam, mm[j], label=f"condition {name}")
    ax.set_xlabel("log-SNR")
    ax.set_ylabel("E|eps - eps_hat|^2")
    ax.set_title("MMSE curves by condition")
    ax.legend(fontsize=7)
    res.figure(
        fig,
        "mmse_curves",
        "Left: the integrands of i(x; y1) per log-SNR for one point of the AND gate "
        "(thin: one noise draw per log-SNR, the zigzag DiffusionPID reports for the standard estimator; thick: "
        "dense reference). Middle: standard integrand for one point of every component (negative where y1 "
        "makes x less likely). Right: the MMSE curves of the four conditions (common random numbers).",
    )


# =====================================================================================================
# 3. pixel maps on block data
# =====================================================================================================
def _blocks(config, res, cache, key, progress):
    designs = {"coupled": ("y1", "y2", "xor", "none"), "independent": ("y1", "y2", "none", "none")}
    scheme = _scheme(config)
    out = {}
    for i, (name, blocks) in enumerate(designs.items()):

        def compute(blocks=blocks, i=i):
            tm = block_structured(
                blocks, block_size=config.block_size, separation=config.block_separation, std=config.block_std
            )
            m = ConditionalMixture.from_token_mixture(tm)
            x, y = m.sample(jr.fold_in(key, 2 * i), config.n_block_samples)
            est = pid_information(
                m, x, y, jr.fold_in(key, 2 * i + 1), scheme=scheme, n_noise=config.n_noise, chunk_size=_CHUNK
            )
            pm = decompose(est, "pointwise_min")
            info_maps = est.orthogonal_coords.mean(0) / LN2  # (3, d) bits
            return {
                "blocks": list(blocks),
                "info_maps": info_maps.tolist(),
                "pid_maps": (np.asarray(pm.maps.as_array()) / LN2).tolist(),
                "pid_image": _bits(pm.terms),
                "pid_image_orthogonal": _bits(decompose(est, "pointwise_min", estimator="orthogonal").terms),
            }

        out[name] = cache.get_or_compute(f"blocks-{name}", compute)
    res.metric("block_maps_bits", out)
    bs = config.block_size
    for name, r in out.items():
        blocks = r["blocks"]
        info_maps = np.asarray(r["info_maps"])
        pid_maps = np.asarray(r["pid_maps"])
        mass = lambda v, b: float(np.abs(v[b * bs : (b + 1) * bs]).sum())
        total = float(np.abs(info_maps).sum())
        none = blocks.index(
            "none"
        )  # (the independent design has two token-free blocks; the first is checked)
        res.check(
            f"blocks ({name}): the token-free block carries no pixel information (mass fraction)",
            0.0,
            (sum(mass(v, none) for v in info_maps) + sum(mass(v, none) for v in pid_maps)) / total,
            1e-5,
            note="E[eps_B | x, y] = E[eps_B | x] for a block independent of all tokens: i^o_j = 0 exactly.",
        )
        fr = {}
        for t, label in ((0, "y1"), (1, "y2")):
            own = blocks.index(label)
            fr[label] = mass(info_maps[t], own) / float(np.abs(info_maps[t]).sum())
        res.metric(f"blocks_{name}_own_block_fraction", fr)
        if name == "independent":
            res.check(
                "blocks (independent): i^o(x; y1) and i^o(x; y2) live on their own block (min mass fraction)",
                1.0,
                min(fr.values()),
                1e-5,
                note="Without a coupling block the other blocks are independent of the token given x.",
            )
            res.check(
                "blocks (independent): redundancy and synergy maps vanish (max |value|, bits)",
                0.0,
                float(max(np.abs(pid_maps[0]).max(), np.abs(pid_maps[3]).max())),
                1e-5,
            )
        else:
            xor = blocks.index("xor")
            syn = pid_maps[3]
            res.metric("blocks_coupled_synergy_fraction_on_xor", mass(syn, xor) / float(np.abs(syn).sum()))
            res.check(
                "blocks (coupled): synergy map concentrates on the xor block (mass fraction)",
                0.5,
                mass(syn, xor) / float(np.abs(syn).sum()),
                0.0,
                relation="ge",
                note="y1 xor y2 is known only from both tokens; the other blocks get synergy only through "
                "the coupling at intermediate noise.",
            )
            res.check(
                "blocks (coupled): i^o(x; y1) leaks onto the y2 block through the xor coupling (> 0)",
                0.0,
                mass(info_maps[0], blocks.index("y2")),
                0.0,
                relation="ge",
                passed=mass(info_maps[0], blocks.index("y2")) > 1e-4,
                note="Given y1, the xor block reveals y2, which sharpens the y2 block: pixel MI is not "
                "confined to the pixels a token controls when tokens interact.",
            )
    _plot_blocks(res, out, bs)
    return out


def _plot_blocks(res, out, bs):
    import matplotlib.pyplot as plt

    names = ["i(x;y1)", "i(x;y2)", "i(x;y1,y2)", "R", "U1", "U2", "S"]
    fig, axes = plt.subplots(len(out), 7, figsize=(15, 2.2 * len(out) + 0.6), squeeze=False)
    for row, (design, r) in enumerate(out.items()):
        maps = np.concatenate([np.asarray(r["info_maps"]), np.asarray(r["pid_maps"])])
        nb = len(r["blocks"])
        vmax = float(np.abs(maps).max())
        for j in range(7):
            ax = axes[row, j]
            im = ax.imshow(maps[j].reshape(nb, bs), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_yticks(range(nb), r["blocks"] if j == 0 else [""] * nb)
            ax.set_xticks([])
            ax.set_title(names[j] if row == 0 else "", fontsize=9)
        axes[row, 0].set_ylabel(design)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="bits per pixel")
    res.figure(
        fig,
        "pixel_maps",
        "Pixel maps (orthogonal per-pixel informations averaged over samples, and the "
        "pointwise-min PID on them) for block data; each row of a map is one block of pixels labelled by "
        "the token function that sets its mean.",
    )


# =====================================================================================================
# 4. bias sweep
# =====================================================================================================
def _bias(config, res, cache, key, progress):
    scheme = _scheme(config)
    rows = {}
    for i, rho in enumerate(progress_bar(config.correlations, "bias", progress)):

        def compute(rho=rho, i=i):
            tm = block_structured(
                ("y1", "none", "none", "none"),
                block_size=config.block_size,
                separation=4.0,
                std=0.5,
                prior=binary_prior(rho),
            )
            m = ConditionalMixture.from_token_mixture(tm)
            x, y, w = m.sample_stratified(jr.fold_in(key, 2 * i), config.bias_per_component)
            out, est, ex = _engine_and_exact(m, x, y, w, jr.fold_in(key, 2 * i + 1), scheme, config.n_noise)
            out = _with_tolerances(out, est, ex, w, config)
            joint = well_separated_joint(m)
            for measure in PID_MEASURES:
                out[measure]["discrete"] = list(discrete_pid(joint, measure, unit="bits"))
            return out

        rows[f"{rho:g}"] = cache.get_or_compute(f"bias-{rho:g}", compute)
    res.metric("bias_bits", rows)
    rhos = np.asarray(config.correlations)
    p = (1 + rhos) / 2
    mi_tokens = 1 + p * np.log2(p) + (1 - p) * np.log2(1 - p)  # I(Y1; Y2) in bits
    res.metric("bias_token_mutual_information_bits", mi_tokens.tolist())
    for m in ("mmi", "wb_imin"):
        red = [rows[f"{r:g}"][m]["discrete"][0] for r in config.correlations]
        res.check(
            f"bias: exact {m} redundancy = I(Y1; Y2) (max |dev|, bits)",
            0.0,
            float(np.max(np.abs(np.asarray(red) - mi_tokens))),
            1e-6,
            note="Only y1 is depicted, so x carries y1 exactly and y2 only through its correlation with y1.",
        )
    for m in PID_MEASURES:
        eng = np.asarray([rows[f"{r:g}"][m]["engine"] for r in config.correlations])
        disc = np.asarray([rows[f"{r:g}"][m]["discrete"] for r in config.correlations])
        tol = [rows[f"{r:g}"][m]["tolerance"] for r in config.correlations]
        res.check(
            f"bias: engine {m} = exact at every correlation (max |dev| per correlation, bits)",
            [0.0] * len(tol),
            np.abs(eng - disc).max(axis=1).tolist(),
            tol,
            note="tolerance per correlation from the measured estimator noise (see the gates).",
        )
        order = np.argsort(rhos)
        if len(rhos) > 1 and np.all(np.diff(rhos[order]) > 0) and rhos.min() >= 0:
            res.check(
                f"bias: engine {m} redundancy increases with the prior correlation",
                True,
                bool(np.all(np.diff(eng[order, 0]) > 0)),
                relation="true",
                note=f"measured R (bits): {np.round(eng[order, 0], 3).tolist()} at rho {rhos[order].tolist()}",
            )
    _plot_bias(res, rows, config, mi_tokens)


def _plot_bias(res, rows, config, mi_tokens):
    import matplotlib.pyplot as plt

    rhos = np.asarray(config.correlations)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for j, m in enumerate(PID_MEASURES):
        disc = [rows[f"{r:g}"][m]["discrete"][0] for r in config.correlations]
        eng = [rows[f"{r:g}"][m]["engine"][0] for r in config.correlations]
        ax.plot(rhos, disc, "-", color=f"C{j}", label=f"exact {m}")
        ax.plot(rhos, eng, "o", color=f"C{j}", ms=5)
    ax.plot(rhos, mi_tokens, "k:", label="I(Y1; Y2)")
    ax.set_xlabel("prior correlation of the tokens")
    ax.set_ylabel("redundancy R [bits]")
    ax.set_title("Bias: y1 depicted, y2 not")
    ax.legend(fontsize=7)
    res.figure(
        fig,
        "bias_sweep",
        "Redundancy between a depicted token y1 and an undepicted token y2 whose prior "
        "correlation with y1 is swept (lines: exact; dots: engine). DiffusionPID reads high R(occupation, "
        "gender) as a stereotypical association; here R is exactly the association put into the prior.",
    )


# =====================================================================================================
# 5. estimator ablation
# =====================================================================================================
def _ablation(config, res, cache, key, progress):
    m = ConditionalMixture.from_token_mixture(
        pid_gate(config.ablation_gate, separation=config.gate_separation, std=config.gate_std)
    ).padded(_K)
    x, y, w = m.sample_stratified(jr.fold_in(key, 0), config.ablation_per_component)
    n, reps = x.shape[0], config.ablation_repeats
    exact = exact_pid_information(m, x, y, sample_weights=w)
    disc = {
        meas: np.asarray(discrete_pid(well_separated_joint(m), meas)) for meas in ("pointwise_min", "mmi")
    }
    xr, yr = jnp.tile(x, (reps, 1)), jnp.tile(y, (reps, 1))
    cells = [(L, K) for L in config.ablation_logsnr for K in config.ablation_noise]
    table = {}
    for L, K in progress_bar(cells, "ablation", progress):

        def compute(L=L, K=K):
            est = pid_information(
                m,
                xr,
                yr,
                jr.fold_in(key, 1000 * L + K),
                scheme=_scheme(config, L),
                n_noise=K,
                chunk_size=_CHUNK,
            )  # (specific informations unused; kept for shared shapes)
            out = {
                "pmi_rmse_standard": float(
                    np.sqrt(np.mean((est.pointwise - np.tile(exact.pointwise, (reps, 1))) ** 2))
                ),
                "pmi_rmse_orthogonal": float(
                    np.sqrt(np.mean((est.orthogonal - np.tile(exact.pointwise, (reps, 1))) ** 2))
                ),
            }
            for meas in ("pointwise_min", "mmi"):
                for est_name in ("standard", "orthogonal"):
                    errs = []
                    for r in range(reps):
                        sl = slice(r * n, (r + 1) * n)
                        sub = type(est)(
                            est.pointwise[sl],
                            est.orthogonal[sl],
                            None,
                            None,
                            None,
                            None,
                            np.asarray(w),
                            None,
                            est.sources,
                            est.context,
                        )
                        terms = np.asarray(decompose(sub, meas, estimator=est_name).terms)
                        errs.append(np.abs(terms - disc[meas]).max())
                    out[f"{meas}_{est_name}_err"] = float(np.sqrt(np.mean(np.square(errs))))
            return out

        table[f"{L}x{K}"] = cache.get_or_compute(f"ablation-{L}x{K}", compute)
    res.metric("ablation", table)
    lo, hi = (
        f"{min(config.ablation_logsnr)}x{min(config.ablation_noise)}",
        f"{max(config.ablation_logsnr)}x{max(config.ablation_noise)}",
    )
    res.check(
        "ablation: standard per-sample error shrinks with the budget (error at max / at min budget)",
        0.5,
        table[hi]["pmi_rmse_standard"] / table[lo]["pmi_rmse_standard"],
        0.0,
        relation="le",
        note=f"{lo} vs {hi} (log-SNRs x noise draws); Monte-Carlo error ~ 1/sqrt(budget).",
    )
    res.check(
        "ablation: the orthogonal estimator has a per-sample error floor (orthogonal / standard RMSE at max budget)",
        2.0,
        table[hi]["pmi_rmse_orthogonal"] / table[hi]["pmi_rmse_standard"],
        0.0,
        relation="ge",
        note="i^o differs from the pointwise MI per sample; it is unbiased only on average over p(x | y).",
    )
    res.check(
        "ablation: pointwise-min PID error (standard) shrinks with the budget (error at max / at min budget)",
        0.5,
        table[hi]["pointwise_min_standard_err"] / table[lo]["pointwise_min_standard_err"],
        0.0,
        relation="le",
    )
    _plot_ablation(res, table, config)


def _plot_ablation(res, table, config):
    import matplotlib.pyplot as plt

    Ls = np.asarray(config.ablation_logsnr)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for j, K in enumerate(config.ablation_noise):
        std = [table[f"{L}x{K}"]["pmi_rmse_standard"] / LN2 for L in Ls]
        orth = [table[f"{L}x{K}"]["pmi_rmse_orthogonal"] / LN2 for L in Ls]
        axes[0].loglog(Ls, std, "o-", color=f"C{j}", label=f"standard, {K} draws")
        axes[0].loglog(Ls, orth, "s--", color=f"C{j}", alpha=0.6, label=f"orthogonal, {K} draws")
        pm = [table[f"{L}x{K}"]["pointwise_min_standard_err"] / LN2 for L in Ls]
        mm = [table[f"{L}x{K}"]["mmi_standard_err"] / LN2 for L in Ls]
        axes[1].loglog(Ls, pm, "o-", color=f"C{j}", label=f"pointwise min, {K} draws")
        axes[1].loglog(Ls, mm, "^:", color=f"C{j}", label=f"MMI, {K} draws")
    axes[0].loglog(
        Ls, axes[0].get_lines()[0].get_ydata()[0] * np.sqrt(Ls[0] / Ls), "k:", lw=1, label="1/sqrt(L)"
    )
    axes[0].set_xlabel("log-SNR samples L")
    axes[0].set_ylabel("per-sample RMSE of i(x; .) [bits]")
    axes[0].legend(fontsize=6)
    axes[1].set_xlabel("log-SNR samples L")
    axes[1].set_ylabel("RMS of max |PID error| [bits]")
    axes[1].legend(fontsize=6)
    fig.suptitle(f"Estimator ablation on the {config.ablation_gate} gate (errors against exact values)")
    res.figure(
        fig,
        "ablation",
        "Left: per-sample error of the pointwise MIs (standard: Monte-Carlo error that "
        "shrinks with the budget; orthogonal: a floor, it is not the pointwise MI). Right: error of the "
        "image-level PID terms, standard estimator.",
    )


# =====================================================================================================
# 6. digits: analytic KDE mixture and a trained token network
# =====================================================================================================
def _digits(config, res, cache, key, out_dir, progress):
    from ..analysis.information import pid as pid_fn  # noqa: F401 - documented entry point
    from ..data.digits import apply_attributes, load_digits
    from ..scores.mixture import GaussianMixture

    data = load_digits()
    x_train, c_train = data.flat("train")
    x_test, c_test = data.flat("test")
    _, _, k_est, k_net, k_train = jr.split(jr.fold_in(key, 0), 5)
    attr = config.digits_attribute
    rng = np.random.default_rng(config.seed)
    a_train = (rng.uniform(size=len(x_train)) < 0.5).astype(np.int32)
    batch = apply_attributes(data.train_images, a_train[:, None], (attr,))
    xtr = batch.images.reshape(len(x_train), -1)
    ytr = np.c_[c_train, a_train].astype(np.int32)
    # test images: the first n, attribute alternating on/off
    n = min(config.digits_n_images, len(x_test))
    a_test = (np.arange(n) % 2).astype(np.int32)
    tb = apply_attributes(data.test_images[:n], a_test[:, None], (attr,))
    xte = tb.images.reshape(n, -1)
    yte = np.c_[c_test[:n], a_test].astype(np.int32)
    support = tb.masks[:, 0].reshape(n, -1)  # (n, 64) pixels the attribute changes
    bw2 = config.digits_bandwidth**2
    kde = ConditionalMixture(
        GaussianMixture(np.full(len(xtr), 1.0 / len(xtr)), xtr, bw2), ytr, (10, 2), ("class", attr)
    )
    scheme = LogSNRScheme.logistic(
        config.digits_n_logsnr, 0.0, 2.0, 3.0, stratified=config.stratified
    )  # [-6, 6]

    def summarise(model, tag):
        est = pid_information(
            model, xte, yte, k_est, scheme=scheme, n_noise=config.digits_n_noise, chunk_size=min(n, 8)
        )
        out = {
            "pointwise_bits": (est.pointwise / LN2).tolist(),
            "specific_bits": (est.specific / LN2).tolist(),
            "info_maps_bits": (est.orthogonal_coords.mean(0) / LN2).tolist(),
        }
        for meas in PID_MEASURES:
            dres = decompose(est, meas)
            out[meas] = _bits(dres.terms)
            if dres.maps is not None and meas == "pointwise_min":
                out["pid_maps_bits"] = (np.asarray(dres.maps.as_array()) / LN2).tolist()
        o_attr = est.orthogonal_coords[:, 1]  # i^o_j(x; attribute) per image
        out["attribute_mass_in_support"] = float((o_attr * support).sum() / np.abs(o_attr).sum())
        out["class_pmi_bits_mean"] = float(np.mean(est.pointwise[:, 0]) / LN2)
        return out

    t0 = time.perf_counter()
    d1 = cache.get_or_compute("digits-kde", lambda: summarise(kde, "kde"))
    ex = exact_pid_information(kde, xte, yte)
    d1["exact_pointwise_bits"] = (ex.pointwise / LN2).tolist()
    for meas in PID_MEASURES:
        d1[f"{meas}_exact"] = _bits(decompose(ex, meas).terms)
    res.metric("digits_kde", d1)
    res.metric("digits_support_fraction_of_pixels", float(support.mean()))
    err = np.asarray(d1["pointwise_bits"]) - np.asarray(d1["exact_pointwise_bits"])  # (n, 3)
    se = err.std(0, ddof=1) / math.sqrt(n)
    res.metric(
        "digits_kde_pointwise_error_bits",
        {"mean": err.mean(0).tolist(), "se": se.tolist(), "median_abs": np.median(np.abs(err), 0).tolist()},
    )
    res.check(
        "digits (analytic KDE): mean standard-estimator pointwise MI = mean exact [class, attr, both] (bits)",
        [0.0, 0.0, 0.0],
        err.mean(0).tolist(),
        [round(float(config.n_se * v + 0.01), 4) for v in se],
        note=f"1438 training digits as a KDE (bandwidth {config.digits_bandwidth}), {n} test digits, "
        f"{config.digits_n_logsnr} log-SNRs x {config.digits_n_noise} draws: pure estimator error; "
        f"tolerance {config.n_se:g} SE over images.",
    )
    res.check(
        f"digits (analytic KDE): i^o(x; {attr}) concentrates on the attribute's pixels (mass fraction)",
        0.5,
        d1["attribute_mass_in_support"],
        0.0,
        relation="ge",
        note=f"the attribute changes {100 * support.mean():.0f}% of the pixels; a uniform map would put that "
        "fraction there.",
    )
    timings = {"kde_s": time.perf_counter() - t0}

    maps = {"kde": d1}
    if config.digits_network:
        from ..scores.conditional import TokenNetworkDenoiser
        from ..scores.networks import MLPScore
        from ..scores.training import TrainConfig, train_or_load

        t0 = time.perf_counter()
        net = MLPScore(
            xtr.shape[1],
            key=k_net,
            alphabet_sizes=(10, 2),
            width=config.digits_width,
            depth=config.digits_depth,
            data_std=0.5,
        )
        tcfg = TrainConfig(
            steps=config.digits_train_steps,
            batch_size=128,
            learning_rate=2e-3,
            warmup_steps=min(100, config.digits_train_steps // 2),
            token_dropout=config.digits_token_dropout,
            time_sampling="logsnr",
        )
        cdir = Path(config.cache_dir) if config.cache_dir else Path(out_dir) / "models"
        trained = train_or_load(
            net,
            xtr,
            tcfg,
            key=k_train,
            tokens=ytr,
            cache_dir=cdir,
            name=f"information-digits-mlp-{attr}",
            progress=progress,
        )
        timings["train_s"] = time.perf_counter() - t0
        prior = np.zeros((10, 2))
        np.add.at(prior, (ytr[:, 0], ytr[:, 1]), 1.0)
        model = TokenNetworkDenoiser(trained.ema, prior / prior.sum())
        t0 = time.perf_counter()
        d2 = cache.get_or_compute(f"digits-net-{config.digits_train_steps}", lambda: summarise(model, "net"))
        timings["net_s"] = time.perf_counter() - t0
        res.metric("digits_network", d2)
        res.metric("digits_train_from_cache", trained.from_cache)
        res.metric(
            "digits_train_loss_final", float(np.mean(trained.losses[-50:])) if len(trained.losses) else None
        )
        gap = {
            meas: float(np.max(np.abs(np.asarray(d2[meas]) - np.asarray(d1[meas])))) for meas in PID_MEASURES
        }
        pmi_net = np.asarray(d2["pointwise_bits"])
        res.metric("digits_network_pointwise_median_bits", np.median(pmi_net, 0).tolist())
        res.metric(
            "digits_kde_exact_pointwise_median_bits",
            np.median(np.asarray(d1["exact_pointwise_bits"]), 0).tolist(),
        )
        bound = math.log2(10.0)
        frac = float(np.mean(pmi_net[:, 0] > bound))
        res.metric("digits_network_class_pmi_above_bound_fraction", frac)
        res.note(
            f"Digits: for any consistent model i(x; class) <= log2(1/p(class)) = {bound:.2f} bits; the trained "
            f"MLP exceeds it on {100 * frac:.0f}% of the test digits (median {np.median(pmi_net[:, 0]):.2f} bits): "
            "its conditional and unconditional denoisers are not the conditionals and marginal of one law, so "
            "MMSE gaps are not log-likelihood ratios. The Williams-Beer terms use the normalised Bayes posterior "
            f"and stay within {gap['wb_imin']:.2f} bits of the KDE's, against {gap['pointwise_min']:.2f} (pointwise "
            f"min) and {gap['mmi']:.2f} (MMI)."
        )
        res.metric("digits_model_error_bits", gap)
        res.check(
            f"digits (trained MLP): i^o(x; {attr}) concentrates on the attribute's pixels (mass fraction)",
            0.5,
            d2["attribute_mass_in_support"],
            0.0,
            relation="ge",
            note=f"same log-SNRs and noise as the KDE ({d1['attribute_mass_in_support']:.2f} there); "
            f"{config.digits_train_steps} training steps. A poorly trained net spreads the map.",
        )
        maps["network"] = d2
    res.metric("digits_timings_s", timings)
    _plot_digits(res, maps, support, attr)


def _plot_digits(res, maps, support, attr):
    import matplotlib.pyplot as plt

    names = ["i(x;class)", f"i(x;{attr})", "i(x;both)", "R", "U class", f"U {attr}", "S"]
    fig, axes = plt.subplots(len(maps), 8, figsize=(16, 2.3 * len(maps) + 0.4), squeeze=False)
    for row, (tag, d) in enumerate(maps.items()):
        ims = list(np.asarray(d["info_maps_bits"])) + list(np.asarray(d["pid_maps_bits"]))
        vmax = float(max(np.abs(v).max() for v in ims))
        for j, v in enumerate(ims):
            ax = axes[row, j]
            ax.imshow(v.reshape(8, 8), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(names[j], fontsize=9)
        axes[row, 0].set_ylabel(tag)
        axes[row, 7].imshow(support.mean(0).reshape(8, 8), cmap="Greys")
        axes[row, 7].set_xticks([])
        axes[row, 7].set_yticks([])
        if row == 0:
            axes[row, 7].set_title(f"{attr} support", fontsize=9)
    res.figure(
        fig,
        "digits_maps",
        f"8x8 digits with tokens (class, {attr}): per-pixel orthogonal informations and "
        "the pointwise-min PID maps, averaged over test digits, for the analytic KDE model (exact denoiser) "
        "and the trained MLP; the last column is the attribute's ground-truth pixel support.",
    )


# =====================================================================================================
# the study
# =====================================================================================================
@register(
    "information",
    Config,
    quick=dict(
        n_logsnr=128,
        n_noise=8,
        n_per_component=8,
        curve_logsnr=48,
        curve_noise=64,
        n_nll_points=16,
        n_block_samples=32,
        correlations=(0.0, 0.5, 0.9),
        bias_per_component=8,
        ablation_logsnr=(16, 128),
        ablation_noise=(1, 8),
        ablation_repeats=2,
        ablation_per_component=4,
        digits_network=False,
        digits_n_images=8,
        digits_n_logsnr=32,
        digits_n_noise=4,
    ),
    description="Pointwise/pixel MI and PID from denoisers (DiffusionPID) against exact values.",
)
def run(config: Config, out_dir: Path, *, progress: bool = True) -> Results:
    res = Results("information", config, out_dir)
    cache = ResultCache(out_dir, config)
    key = jr.key(config.seed)
    timings = {}
    for i, (name, fn) in enumerate(
        (
            ("gates", _gates),
            ("curves", _curves),
            ("blocks", _blocks),
            ("bias", _bias),
            ("ablation", _ablation),
        )
    ):
        t0 = time.perf_counter()
        fn(config, res, cache, jr.fold_in(key, i + 1), progress)
        timings[name] = round(time.perf_counter() - t0, 2)
    if config.digits:
        t0 = time.perf_counter()
        _digits(config, res, cache, jr.fold_in(key, 99), out_dir, progress)
        timings["digits"] = round(time.perf_counter() - t0, 2)
    res.metric("timings_s", timings)
    res.note(
        "Informations are estimated in nats and reported in bits. The engine's measures: pointwise_min "
        "(DiffusionPID as reconstructed: per-sample min of pointwise MIs), mmi (min of averaged MIs), wb_imin "
        "(Williams-Beer I_min with p(y | x) by Bayes over the token alphabet). BROJA and CCS are shown from "
        "dit for comparison only."
    )
    return res
