r"""Study ``digits``: a class-conditional UNet trained on scikit-learn's 8x8 digits, sampled with several
samplers and classifier-free guidance strengths, and evaluated against real digits.

Protocol (docs/digits.md has the theory and every constant):

1. Data: :func:`diffsim.data.digits.load_digits` (``[-1, 1]``, fixed stratified split, 1,438 train /
   359 test).
2. Evaluator: a small JAX/optax MLP classifier ``64 -> 128 -> 64 -> 10`` trained on the real training
   digits; its 64-d penultimate activations are the fixed feature space of the Fréchet distance.
3. Model: :class:`~diffsim.scores.networks.UNetScore` conditioned on the class token (alphabet 10, null
   id 10), trained by DSM with token dropout (:func:`~diffsim.scores.training.train_or_load`, cached).
4. Sampling: for every sampler and guidance strength ``w`` (``s_u + w (s_c - s_u)``, ``w = 0``
   unconditional, ``w = 1`` conditional), ``n_per_class`` samples of every requested class on a grid uniform
   in log-SNR, clipped to ``[-1, 1]``.
5. Evaluation: classifier accuracy on the requested class; Fréchet distance to the real test digits in
   the classifier's feature space; memorisation ratio ``d_1 / d_2`` (nearest / second-nearest training
   image) against samples of the memorising :class:`~diffsim.EmpiricalScore`; the DSM loss of the network
   beside the exact empirical score, which minimises the training objective.
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
import optax

from ..data.digits import load_digits
from ..processes import VP
from ..sampling import grids, simulate
from ..scores.empirical import EmpiricalScore
from ..scores.networks import PARAMETRISATIONS, Dense, UNetScore, init_rng
from ..scores.training import WEIGHTINGS, TrainConfig, dsm_loss_terms, train_or_load
from ._runner import Results, progress_bar, register


__all__ = ["Config", "DigitClassifier", "frechet_distance", "memorisation_ratio", "run", "train_classifier"]

MEMORISED = 1.0 / 3.0  # d1/d2 below this counts as a copy of a training image (Yoon et al. 2023)
_PROCESSES = ("linear", "cosine", "ou")


@dataclass(frozen=True)
class Config:
    """Configuration of the ``digits`` study (defaults: under ~5 minutes on two CPU cores)."""

    train_steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2)
    parametrisation: str = "eps"
    weighting: str = "eps"
    token_dropout: float = 0.15
    process: str = "linear"
    samplers: tuple[str, ...] = ("ddim", "ddpm", "heun")
    n_steps: int = 30
    guidance: tuple[float, ...] = (0.0, 1.0, 3.0)
    classes: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
    n_per_class: int = 40
    classifier_steps: int = 1500
    dsm_times: tuple[float, ...] = (0.02, 0.1, 0.4)
    accuracy_threshold: float = 0.8
    seed: int = 0
    cache_dir: str = ""

    def __post_init__(self):
        for name in (
            "train_steps",
            "batch_size",
            "base_channels",
            "n_steps",
            "n_per_class",
            "classifier_steps",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
        if self.parametrisation not in PARAMETRISATIONS:
            raise ValueError(
                f"`parametrisation` must be one of {PARAMETRISATIONS}, got {self.parametrisation!r}."
            )
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"`weighting` must be one of {WEIGHTINGS}, got {self.weighting!r}.")
        if self.process not in _PROCESSES:
            raise ValueError(f"`process` must be one of {_PROCESSES}, got {self.process!r}.")
        if not self.samplers:
            raise ValueError("`samplers` must name at least one sampler.")
        if not self.guidance or any(not math.isfinite(w) or w < 0 for w in self.guidance):
            raise ValueError(f"`guidance` must be non-empty, finite and >= 0, got {self.guidance}.")
        if (
            not self.classes
            or any(not 0 <= c <= 9 for c in self.classes)
            or len(set(self.classes)) != len(self.classes)
        ):
            raise ValueError(f"`classes` must be distinct digits in 0..9, got {self.classes}.")
        if not 0.0 < self.accuracy_threshold <= 1.0:
            raise ValueError(f"`accuracy_threshold` must lie in (0, 1], got {self.accuracy_threshold}.")


# =====================================================================================================
# evaluator: a small classifier on real digits, its penultimate features, and the metrics
# =====================================================================================================
class DigitClassifier(eqx.Module):
    """MLP ``d -> 128 -> 64 -> n_classes`` (SiLU); :meth:`features` is the 64-d penultimate layer."""

    l1: Dense
    l2: Dense
    head: Dense

    def __init__(self, dim: int, n_classes: int, *, key):
        rng = init_rng(key)
        self.l1 = Dense(dim, 128, rng=rng)
        self.l2 = Dense(128, 64, rng=rng)
        self.head = Dense(64, n_classes, rng=rng)

    def features(self, x):
        return jax.nn.silu(self.l2(jax.nn.silu(self.l1(x))))

    def __call__(self, x):
        return self.head(self.features(x))


@eqx.filter_jit
def _fit_classifier(model, x, y, key, steps, batch):
    """``steps`` AdamW steps in one ``lax.scan`` (one compile, one dispatch)."""
    opt = optax.adamw(1e-3, weight_decay=1e-4)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def step(carry, i):
        params, opt_state = carry
        k = jr.fold_in(key, i)
        idx = jr.randint(k, (batch,), 0, x.shape[0])
        xb = x[idx] + 0.05 * jr.normal(jr.fold_in(k, 1), x[idx].shape, x.dtype)  # mild noise: robust features

        def loss_fn(p):
            logits = jax.vmap(eqx.combine(p, static))(xb)
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
    return eqx.combine(params, static), losses


def train_classifier(
    x: np.ndarray, y: np.ndarray, *, key: jax.Array, steps: int = 1500, batch: int = 256, n_classes: int = 10
) -> DigitClassifier:
    """Train :class:`DigitClassifier` with AdamW (lr 1e-3, weight decay 1e-4, batch 256, Gaussian input
    noise of std 0.05) on ``(x, y)``; deterministic given ``key``."""
    k_init, k_train = jr.split(key)
    model = DigitClassifier(x.shape[1], n_classes, key=k_init)
    model, _ = _fit_classifier(model, jnp.asarray(x), jnp.asarray(y), k_train, steps, batch)
    return model


@eqx.filter_jit
def _predict(model, x):
    return jnp.argmax(jax.vmap(model)(x), axis=-1)


@eqx.filter_jit
def _features(model, x):
    return jax.vmap(model.features)(x)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    r"""Fréchet distance between Gaussian fits of two feature sets (Heusel et al. 2017):

        FD = |m_1 - m_2|^2 + tr(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2}),

    with symmetric square roots by eigendecomposition (float64, negative round-off eigenvalues clipped).
    """
    a, b = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m1, m2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)

    def sqrtm(c):
        w, v = np.linalg.eigh(0.5 * (c + c.T))
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    s1 = sqrtm(c1)
    cross = sqrtm(s1 @ c2 @ s1)
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(cross))


def memorisation_ratio(samples: np.ndarray, train: np.ndarray) -> np.ndarray:
    """``d_1 / d_2`` per sample: Euclidean distance to the nearest training image over the distance to the
    second nearest (near 0: a copy of one training image; near 1: equidistant from several)."""
    s, t = np.asarray(samples, np.float64), np.asarray(train, np.float64)
    d2 = np.sum(s**2, 1)[:, None] + np.sum(t**2, 1)[None, :] - 2 * s @ t.T
    d = np.sqrt(np.clip(d2, 0, None))
    two = np.partition(d, 1, axis=1)[:, :2]
    return two[:, 0] / np.maximum(two[:, 1], 1e-12)


# =====================================================================================================
# the study
# =====================================================================================================
def _process(name: str):
    return {"linear": VP.linear, "cosine": VP.cosine, "ou": VP.ou}[name]()


def _grid(process, n_steps):
    """Reverse grid uniform in log-SNR (DPM-Solver's choice): fine steps near the data, where the
    empirical score snaps onto training points, so memorisation is resolved even with few steps."""
    return grids.logsnr_uniform(process, n_steps)


@register(
    "digits",
    Config,
    description="Class-conditional UNet on 8x8 digits: samplers, guidance, accuracy, FD, memorisation",
    quick={
        "train_steps": 250,
        "base_channels": 8,
        "channel_mults": (1,),
        "samplers": ("ddim", "ddpm"),
        "n_steps": 10,
        "n_per_class": 10,
        "classifier_steps": 500,
        "guidance": (0.0, 1.0, 3.0),
    },
)
def run(config: Config, out_dir: Path, *, progress: bool = True) -> Results:
    res = Results("digits", config, out_dir)
    key = jr.key(config.seed)
    k_clf, k_net, k_train, k_sample, k_emp, k_dsm = jr.split(key, 6)
    data = load_digits()
    x_train, y_train = data.flat("train")
    x_test, y_test = data.flat("test")
    timings = {}

    # --- evaluator ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    clf = train_classifier(x_train, y_train, key=k_clf, steps=config.classifier_steps)
    test_acc = float(np.mean(np.asarray(_predict(clf, jnp.asarray(x_test))) == y_test))
    feats_test = np.asarray(_features(clf, jnp.asarray(x_test)))
    timings["classifier_s"] = time.perf_counter() - t0
    res.metric("classifier_test_accuracy", test_acc)
    res.check(
        "evaluator: classifier accuracy on real test digits",
        0.9,
        test_acc,
        0.0,
        relation="ge",
        note="Sanity of the evaluator (64 -> 128 -> 64 -> 10 MLP on real training digits).",
    )

    # --- model -------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    process = _process(config.process)
    net = UNetScore(
        (8, 8),
        key=k_net,
        process=process,
        alphabet_sizes=(10,),
        base_channels=config.base_channels,
        channel_mults=config.channel_mults,
        parametrisation=config.parametrisation,
    )
    tcfg = TrainConfig(
        steps=config.train_steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=min(config.warmup_steps, config.train_steps // 2),
        ema_decay=config.ema_decay,
        weighting=config.weighting,
        token_dropout=config.token_dropout,
    )
    cache = Path(config.cache_dir) if config.cache_dir else Path(out_dir) / "models"
    trained = train_or_load(
        net,
        x_train,
        tcfg,
        key=k_train,
        tokens=y_train[:, None],
        cache_dir=cache,
        name="digits-unet",
        progress=progress,
    )
    model = trained.ema
    timings["train_s"] = time.perf_counter() - t0
    res.metric("train_from_cache", trained.from_cache)
    res.metric("train_loss_final", float(np.mean(trained.losses[-50:])))
    res.metric(
        "n_parameters", int(sum(a.size for a in jax.tree.leaves(eqx.filter(net, eqx.is_inexact_array))))
    )

    # --- sampling ----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    grid = _grid(process, config.n_steps)
    samples: dict[tuple[str, float], np.ndarray] = {}
    accuracy: dict[str, dict[str, float]] = {}
    per_class: dict[str, dict[str, list[float]]] = {}
    fd: dict[str, dict[str, float]] = {}
    settings = [(m, w) for m in config.samplers for w in config.guidance]
    for method, w in progress_bar(settings, "sample", progress):
        xs_all, accs = [], []
        for c in config.classes:
            score = model.guided(jnp.array([c]), jnp.asarray(w, jnp.float32))
            traj = simulate(
                score,
                method,
                grid,
                n=config.n_per_class,
                key=jr.fold_in(jr.fold_in(k_sample, c), config.samplers.index(method)),
            )
            xs = np.clip(np.asarray(traj.x), -1.0, 1.0)
            xs_all.append(xs)
            accs.append(float(np.mean(np.asarray(_predict(clf, jnp.asarray(xs))) == c)))
        xs_all = np.concatenate(xs_all)
        samples[(method, w)] = xs_all
        accuracy.setdefault(method, {})[f"{w:g}"] = float(np.mean(accs))
        per_class.setdefault(method, {})[f"{w:g}"] = accs
        fd.setdefault(method, {})[f"{w:g}"] = frechet_distance(
            np.asarray(_features(clf, jnp.asarray(xs_all))), feats_test
        )
    timings["sample_s"] = time.perf_counter() - t0
    res.metric("accuracy", accuracy)
    res.metric("accuracy_per_class", per_class)
    res.metric("frechet_distance", fd)
    n_gen = config.n_per_class * len(config.classes)
    chance = 1.0 / 10.0
    for method in config.samplers:
        if 1.0 in config.guidance:
            acc1 = accuracy[method]["1"]
            res.check(
                f"{method}: conditional samples recognised (w=1)",
                config.accuracy_threshold,
                acc1,
                0.0,
                relation="ge",
                note=f"Classifier accuracy on the requested class, {n_gen} samples; chance "
                f"is {chance:.2f}; measured {acc1:.3f}.",
            )
            w_max = max(config.guidance)
            if w_max > 1.0:
                se = math.sqrt(max(acc1 * (1 - acc1), 0.01) / n_gen)
                res.check(
                    f"{method}: guidance w={w_max:g} does not lower accuracy",
                    acc1,
                    accuracy[method][f"{w_max:g}"],
                    round(2 * se, 4),
                    relation="ge",
                    note="CFG raises classifier confidence (Ho & Salimans 2022; Wu et al. 2024); "
                    "tolerance 2 binomial SE.",
                )
        if 0.0 in config.guidance:
            acc0 = accuracy[method]["0"]
            se = math.sqrt(chance * (1 - chance) / n_gen)
            res.check(
                f"{method}: w=0 ignores the class (accuracy at chance)",
                chance,
                acc0,
                round(3 * se, 4),
                note="With w=0 only the null-token (unconditional) score is used, so the requested class "
                "is irrelevant and accuracy should equal the class frequency (~0.1); 3 binomial SE. "
                "Fails if the unconditional model is class-biased.",
            )

    # --- memorising reference: the exact empirical score --------------------------------------------
    t0 = time.perf_counter()
    emp_all = EmpiricalScore(jnp.asarray(x_train), process=process, labels=jnp.asarray(y_train))
    ref_method = "ddim" if "ddim" in config.samplers else config.samplers[0]
    n_gen = config.n_per_class * len(config.classes)
    emp_traj = simulate(emp_all, ref_method, grid, n=n_gen, key=k_emp)
    emp_samples = np.clip(np.asarray(emp_traj.x), -1.0, 1.0)
    w_ref = 1.0 if 1.0 in config.guidance else config.guidance[0]
    net_samples = samples[(ref_method, w_ref)]
    ratio_net = memorisation_ratio(net_samples, x_train)
    ratio_emp = memorisation_ratio(emp_samples, x_train)
    ratio_test = memorisation_ratio(x_test, x_train)
    mem = {
        "network": float(np.mean(ratio_net < MEMORISED)),
        "empirical": float(np.mean(ratio_emp < MEMORISED)),
        "real_test": float(np.mean(ratio_test < MEMORISED)),
    }
    res.metric("memorised_fraction", mem)
    res.metric(
        "memorisation_ratio_median",
        {
            "network": float(np.median(ratio_net)),
            "empirical": float(np.median(ratio_emp)),
            "real_test": float(np.median(ratio_test)),
        },
    )
    res.check(
        "EmpiricalScore samples memorise (d1/d2 < 1/3)",
        0.95,
        mem["empirical"],
        0.0,
        relation="ge",
        note="The exact empirical score's reverse flow ends on training points (Karras et al. 2022, "
        "eq. 57; Kadkhodaie et al. 2024), so d1/d2 ~ sigma(t_min) sqrt(d) / d2 << 1/3.",
    )
    res.check(
        "network samples memorise less than the empirical score",
        mem["empirical"],
        mem["network"],
        0.0,
        relation="le",
        note=f"{ref_method}, w={w_ref:g}: memorised fraction of network samples "
        f"{mem['network']:.3f} vs empirical {mem['empirical']:.3f} "
        f"(real test digits: {mem['real_test']:.3f}).",
    )
    fd_emp = frechet_distance(np.asarray(_features(clf, jnp.asarray(emp_samples))), feats_test)
    rng = np.random.default_rng(config.seed)
    feats_train = np.asarray(_features(clf, jnp.asarray(x_train)))
    fd_train = [frechet_distance(feats_train[rng.choice(len(x_train), n_gen)], feats_test) for _ in range(20)]
    res.metric("frechet_distance_empirical", fd_emp)
    res.metric(
        "frechet_distance_train_subsets", {"mean": float(np.mean(fd_train)), "std": float(np.std(fd_train))}
    )
    res.check(
        "FD(empirical-score samples) = FD(training subsets)",
        float(np.mean(fd_train)),
        fd_emp,
        round(3 * float(np.std(fd_train)) + 1e-6, 4),
        note="Unconditional memorising samples are uniform draws of training images, so their FD to the "
        f"test set matches that of random training subsets (with replacement) of the same size "
        f"({n_gen}); tolerance 3 SD over 20 subsets.",
    )
    timings["empirical_s"] = time.perf_counter() - t0

    # --- DSM loss: the empirical score minimises the training objective ------------------------------
    null = jnp.full((x_train.shape[0], 1), 10, jnp.int32)
    xt = jnp.asarray(x_train)
    dsm = {}
    for i, t in enumerate(config.dsm_times):
        eps = jr.normal(jr.fold_in(k_dsm, i), xt.shape, xt.dtype)
        ts = jnp.full((xt.shape[0],), t, xt.dtype)
        l_net = np.asarray(_dsm_terms(model, ts, xt, eps, null, config.weighting))
        l_emp = np.asarray(_dsm_terms(emp_all, ts, xt, eps, None, config.weighting))
        diff = l_net - l_emp
        se = float(np.std(diff) / math.sqrt(diff.size))
        dsm[f"{t:g}"] = {"network": float(l_net.mean()), "empirical": float(l_emp.mean()), "se": se}
        res.check(
            f"empirical score minimises the training DSM loss (t={t:g})",
            0.0,
            float(diff.mean()),
            round(3 * se, 6),
            relation="ge",
            note="L(network) - L(empirical) on the training set with common noise; the empirical score is "
            "the exact minimiser (Vincent 2011), so the gap is >= 0 up to 3 SE.",
        )
    res.metric("dsm_loss_train", dsm)
    res.metric("timings_s", {k: round(v, 2) for k, v in timings.items()})

    _figures(
        res, config, samples, accuracy, fd, trained.losses, ratio_net, ratio_emp, ratio_test, emp_samples
    )
    if config.train_steps < 1000:
        res.note(
            f"Quick preset: the UNet is trained for only {config.train_steps} steps with "
            f"{config.base_channels} base channels, so sample quality checks may fail; they are recorded "
            "as measured, not loosened."
        )
    how = "loaded from cache" if trained.from_cache else f"{timings['train_s']:.0f} s"
    res.note(
        f"Trained {res.metrics['n_parameters']} parameters for {config.train_steps} steps "
        f"({how}); sampled "
        f"{len(settings)} sampler x guidance settings of {n_gen} digits each in {timings['sample_s']:.0f} s."
    )
    return res


@eqx.filter_jit
def _dsm_terms(score, ts, x0, eps, tokens, weighting):
    return dsm_loss_terms(score, ts, x0, eps, tokens, weighting=weighting)


def _figures(res, config, samples, accuracy, fd, losses, ratio_net, ratio_emp, ratio_test, emp_samples):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_show = min(4, config.n_per_class)
    for method in config.samplers:
        nw = len(config.guidance)
        fig, axes = plt.subplots(1, nw, figsize=(0.55 * n_show * nw + 1.5, 0.55 * len(config.classes) + 1.2))
        axes = np.atleast_1d(axes)
        for ax, w in zip(axes, config.guidance, strict=False):
            xs = samples[(method, w)].reshape(len(config.classes), config.n_per_class, 8, 8)[:, :n_show]
            xs = np.pad(xs, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-1.0)  # white gutters
            mosaic = np.concatenate([np.concatenate(list(row), axis=1) for row in xs], axis=0)
            ax.imshow(mosaic, cmap="gray_r", vmin=-1, vmax=1)
            ax.set_title(
                f"w = {w:g}\nacc {accuracy[method][f'{w:g}']:.2f}, FD {fd[method][f'{w:g}']:.1f}", fontsize=8
            )
            ax.set_xticks([])
            ax.set_yticks(np.arange(len(config.classes)) * 10 + 4.5)
            ax.set_yticklabels([str(c) for c in config.classes], fontsize=7)
        fig.suptitle(f"{method}: samples per class (rows) and guidance strength", fontsize=9)
        res.figure(
            fig,
            f"samples_{method}",
            f"Generated digits with {method} ({config.n_steps} steps): rows are "
            "the requested classes, panels the guidance strengths w (0 unconditional, 1 conditional).",
        )

    fig, ax = plt.subplots(figsize=(5, 3.2))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.5, alpha=0.4, label="per step")
    if len(losses) >= 20:
        k = max(len(losses) // 50, 5)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        centre = steps[(k - 1) // 2 : (k - 1) // 2 + smooth.size]  # centred window
        ax.plot(centre, smooth, lw=1.5, label=f"moving mean ({k})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"DSM loss ({config.weighting} weighting)")
    ax.legend(fontsize=8)
    res.figure(fig, "loss_curve", "Training loss of the class-conditional UNet (per step and moving mean).")

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for method in config.samplers:
        ws = list(config.guidance)
        axes[0].plot(ws, [accuracy[method][f"{w:g}"] for w in ws], "o-", label=method)
        axes[1].plot(ws, [fd[method][f"{w:g}"] for w in ws], "o-", label=method)
    axes[0].axhline(0.1, color="gray", ls=":", label="chance")
    axes[0].set_xlabel("guidance strength w")
    axes[0].set_ylabel("classifier accuracy")
    axes[1].set_xlabel("guidance strength w")
    axes[1].set_ylabel("Fréchet distance (classifier features)")
    axes[0].legend(fontsize=8)
    res.figure(
        fig,
        "accuracy_fd_vs_guidance",
        "Accuracy on the requested class and Fréchet distance to the real "
        "test digits against guidance strength, per sampler.",
    )

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    bins = np.linspace(0, 1, 31)
    axes[0].hist(ratio_emp, bins=bins, alpha=0.6, label="EmpiricalScore")
    axes[0].hist(ratio_net, bins=bins, alpha=0.6, label="network")
    axes[0].hist(ratio_test, bins=bins, alpha=0.4, label="real test digits", histtype="step", color="k")
    axes[0].axvline(MEMORISED, color="r", ls="--", lw=1)
    axes[0].set_xlabel("d1 / d2 (nearest / second-nearest training image)")
    axes[0].legend(fontsize=8)
    n = min(8, len(emp_samples))
    axes[1].imshow(
        np.concatenate(list(emp_samples[:: max(len(emp_samples) // n, 1)][:n].reshape(-1, 8, 8)), axis=1),
        cmap="gray_r",
        vmin=-1,
        vmax=1,
    )
    axes[1].set_title("EmpiricalScore samples (copies of training digits)", fontsize=8)
    axes[1].axis("off")
    res.figure(
        fig,
        "memorisation",
        "Memorisation ratio of network samples, EmpiricalScore samples and real test "
        "digits (red: threshold 1/3).",
    )
