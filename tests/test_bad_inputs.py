"""Bad input: every case must raise a clear error naming the offending argument, never return garbage.

Each case is ``(id, thunk, exception type, regex the message must match)``; the regex names the argument
(``"covs"``, ``"t_max"``, ``"x"`` ...). The cases run eagerly; checked mode (``diffsim.checked``) is tested
at the end for the same conditions on traced values.

The one-point methods are annotated ``x: Float[Array, " d"]`` (that is the contract). Under the runtime type
checker the test suite installs (``tests/conftest.py``), jaxtyping rejects a batch or a scalar ``x`` before
diffsim's own ``ValueError`` with a ``TypeCheckError`` (a ``TypeError``) whose message names the parameter
(``parameter 'x'``). Those cases (``_POINT``: "batch-*", "scalar-x", simulate's "x-1d") accept
``(ValueError, TypeError)``, with the original regex or jaxtyping's naming of ``x``. Where a case expects a
``TypeError`` and the checker raises it first (a ``TypeCheckError``: a string time, a float ``n``, an int
key ...), the message must name the same argument in jaxtyping's words (``parameter 'n'`` for `` `n` ``).
"""

from __future__ import annotations

import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

import diffsim as ds
from diffsim.sampling import grids
from diffsim.scores import (
    AbstractScore,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    MixtureClassifier,
    guided_mixture,
)


OU = ds.VP.ou()
W2 = np.array([0.3, 0.7])
MU2 = np.array([[0.0, 0.0], [2.0, -1.0]])
GM = ds.GaussianMixture(W2, MU2, 0.5)
GM_FULL = ds.GaussianMixture(W2, MU2, np.stack([np.eye(2), [[1.0, 0.3], [0.3, 0.5]]]))
X = jnp.array([0.3, -0.2])
XB = jnp.ones((5, 2))  # a batch, where one point is expected
# one point expected, a batch (or scalar) given: diffsim's ValueError or jaxtyping's TypeCheckError (names x)
_POINT = (ValueError, TypeError)


def _x(match: str) -> str:
    return f"(?:{match})|parameter 'x'"


DATA = np.random.default_rng(0).normal(size=(6, 2))
EMP = ds.EmpiricalScore(DATA)
EMP_BW = ds.EmpiricalScore(DATA, bandwidth=0.3)
LABELLED = ds.GaussianMixture(
    np.array([0.5, 0.5, 0.0]),
    np.array([[0.0, 0.0], [1.0, 1.0], [-3.0, 2.0]]),
    0.5,
    labels=np.array([0, 0, 1]),
)
GM3 = ds.GaussianMixture(np.array([0.2, 0.5, 0.3]), np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0]]), 0.4)
CLF = MixtureClassifier(GM3)
GM3_COND = GM3.condition(0)
KEY = jax.random.key(0)


def _call(method, t, x):
    return lambda: method(t, x)


# --- processes ----------------------------------------------------------------------------------------
PROCESS_CASES = [
    ("ou-tmax-inf", lambda: ds.VP.ou(t_max=math.inf), ValueError, "t_max"),
    ("ou-tmax-nan", lambda: ds.VP.ou(t_max=math.nan), ValueError, "t_max"),
    ("ou-tmin-zero", lambda: ds.VP.ou(t_min=0.0), ValueError, "t_min"),
    ("ou-tmin-negative", lambda: ds.VP.ou(t_min=-1.0), ValueError, "t_min"),
    ("ou-tmin-above-tmax", lambda: ds.VP.ou(t_min=2.0, t_max=1.0), ValueError, "t_min"),
    ("ou-tmin-nan", lambda: ds.VP.ou(t_min=math.nan), ValueError, "t_min"),
    ("ou-tmax-string", lambda: ds.VP.ou(t_max="10"), TypeError, "t_max"),
    ("linear-betamax-inf", lambda: ds.VP.linear(0.1, math.inf), ValueError, "beta_max"),
    ("linear-betamin-nan", lambda: ds.VP.linear(math.nan, 20.0), ValueError, "beta_min"),
    ("linear-betamin-negative", lambda: ds.VP.linear(-0.1, 20.0), ValueError, "beta_min"),
    ("linear-betamin-zero", lambda: ds.VP.linear(0.0, 20.0), ValueError, "beta_min"),
    ("linear-betamin-above-betamax", lambda: ds.VP.linear(5.0, 1.0), ValueError, "beta_min"),
    ("linear-tmax-inf", lambda: ds.VP.linear(t_max=math.inf), ValueError, "t_max"),
    ("linear-betamin-complex", lambda: ds.VP.linear(0.1 + 1j, 20.0), TypeError, "beta_min"),
    ("cosine-s-zero", lambda: ds.VP.cosine(s=0.0), ValueError, "`s`"),
    ("cosine-s-inf", lambda: ds.VP.cosine(s=math.inf), ValueError, "`s`"),
    ("cosine-tmax-one", lambda: ds.VP.cosine(t_max=1.0), ValueError, "t_max"),
    ("cosine-tmin-nan", lambda: ds.VP.cosine(t_min=math.nan), ValueError, "t_min"),
    ("ve-sigmamax-inf", lambda: ds.VE(sigma_max=math.inf), ValueError, "sigma_max"),
    ("ve-sigmamin-zero", lambda: ds.VE(sigma_min=0.0), ValueError, "sigma_min"),
    ("ve-sigmamin-negative", lambda: ds.VE(sigma_min=-1.0), ValueError, "sigma_min"),
    ("ve-sigmamin-nan", lambda: ds.VE(sigma_min=math.nan), ValueError, "sigma_min"),
    ("ve-sigmamin-above-sigmamax", lambda: ds.VE(0.1, 0.05), ValueError, "sigma_min"),
    ("ve-tmax-inf", lambda: ds.VE(t_max=math.inf), ValueError, "t_max"),
    ("ve-tmin-zero", lambda: ds.VE(t_min=0.0), ValueError, "t_min"),
    ("ve-tmin-nan", lambda: ds.VE(t_min=math.nan), ValueError, "t_min"),
    ("alpha-bar-increasing", lambda: ds.VP.from_alpha_bar([0.9, 0.95]), ValueError, "alpha_bar"),
    ("alpha-bar-above-one", lambda: ds.VP.from_alpha_bar([1.2]), ValueError, "alpha_bar"),
    ("alpha-bar-2d", lambda: ds.VP.from_alpha_bar([[0.9]]), ValueError, "alpha_bar"),
    ("alpha-bar-nan", lambda: ds.VP.from_alpha_bar([0.9, math.nan]), ValueError, "alpha_bar"),
    ("alpha-bar-complex", lambda: ds.VP.from_alpha_bar([0.9 + 0.1j]), TypeError, "alpha_bar"),
    ("alpha-bar-tmin-inf", lambda: ds.VP.from_alpha_bar([0.9, 0.5], t_min=math.inf), ValueError, "t_min"),
    ("betas-zero", lambda: ds.VP.from_betas([0.0, 0.1]), ValueError, "betas"),
    ("betas-above-one", lambda: ds.VP.from_betas([0.1, 1.5]), ValueError, "betas"),
    ("check-time-negative", lambda: OU.check_time(-0.5), ValueError, "`t`"),
    ("check-time-nan", lambda: OU.check_time(math.nan), ValueError, "`t`"),
    ("check-time-above-tmax", lambda: OU.check_time(25.0), ValueError, "`t`"),
    ("check-time-string", lambda: OU.check_time("1"), TypeError, "`t`"),
    ("check-time-complex", lambda: OU.check_time(1 + 1j), TypeError, "`t`"),
    ("check-time-zero-excluded", lambda: OU.check_time(0.0, "t_end", allow_zero=False), ValueError, "t_end"),
]

# --- GaussianMixture: construction --------------------------------------------------------------------
MIXTURE_INIT_CASES = [
    ("weights-negative", lambda: ds.GaussianMixture([-0.3, 1.3], MU2), ValueError, "weights"),
    ("weights-sum", lambda: ds.GaussianMixture([0.3, 0.3], MU2), ValueError, "weights"),
    ("weights-shape", lambda: ds.GaussianMixture([0.2, 0.3, 0.5], MU2), ValueError, "weights"),
    ("weights-2d", lambda: ds.GaussianMixture([[0.3, 0.7]], MU2), ValueError, "weights"),
    ("weights-nan", lambda: ds.GaussianMixture([math.nan, 0.7], MU2), ValueError, "weights"),
    ("weights-complex", lambda: ds.GaussianMixture(W2 + 0.1j, MU2), TypeError, "weights"),
    ("weights-string", lambda: ds.GaussianMixture("0.5", MU2), TypeError, "weights"),
    ("means-1d", lambda: ds.GaussianMixture(W2, [0.0, 1.0]), ValueError, "means"),
    ("means-3d", lambda: ds.GaussianMixture(W2, np.zeros((2, 2, 1))), ValueError, "means"),
    ("means-nan", lambda: ds.GaussianMixture(W2, [[0.0, math.nan], [1.0, 1.0]]), ValueError, "means"),
    ("means-inf", lambda: ds.GaussianMixture(W2, [[0.0, math.inf], [1.0, 1.0]]), ValueError, "means"),
    ("means-complex", lambda: ds.GaussianMixture(W2, MU2 + 1j), TypeError, "means"),
    ("means-empty", lambda: ds.GaussianMixture(np.ones(0), np.zeros((0, 2))), ValueError, "means"),
    ("means-none", lambda: ds.GaussianMixture(W2, None), TypeError, "means"),
    ("covs-negative", lambda: ds.GaussianMixture(W2, MU2, -1.0), ValueError, "covs"),
    ("covs-zero", lambda: ds.GaussianMixture(W2, MU2, 0.0), ValueError, "covs"),
    ("covs-nan", lambda: ds.GaussianMixture(W2, MU2, math.nan), ValueError, "covs"),
    ("covs-inf", lambda: ds.GaussianMixture(W2, MU2, math.inf), ValueError, "covs"),
    ("covs-shape-k", lambda: ds.GaussianMixture(W2, MU2, np.ones(3)), ValueError, "covs"),
    ("covs-shape-kd", lambda: ds.GaussianMixture(W2, MU2, np.ones((2, 3))), ValueError, "covs"),
    ("covs-shape-kdd", lambda: ds.GaussianMixture(W2, MU2, np.ones((2, 3, 3))), ValueError, "covs"),
    (
        "covs-asymmetric",
        lambda: ds.GaussianMixture(W2, MU2, np.array([[[1.0, 0.5], [0.0, 1.0]]] * 2)),
        ValueError,
        "covs",
    ),
    (
        "covs-indefinite",
        lambda: ds.GaussianMixture(W2, MU2, np.array([[[1.0, 2.0], [2.0, 1.0]]] * 2)),
        ValueError,
        "covs",
    ),
    (
        "covs-diag-zero",
        lambda: ds.GaussianMixture(W2, MU2, np.array([[1.0, 0.0], [1.0, 1.0]])),
        ValueError,
        "covs",
    ),
    ("covs-complex", lambda: ds.GaussianMixture(W2, MU2, 0.5 + 0.5j), TypeError, "covs"),
    ("covs-string", lambda: ds.GaussianMixture(W2, MU2, "0.5"), TypeError, "covs"),
    (
        "covs-underflow-float32",
        lambda: ds.GaussianMixture(W2.astype(np.float32), MU2.astype(np.float32), 1e-50),
        ValueError,
        "covs",
    ),
    (
        "covs-overflow-float32",
        lambda: ds.GaussianMixture(W2.astype(np.float32), MU2.astype(np.float32), 1e50),
        ValueError,
        "covs",
    ),
    ("covs-underflow-float64", lambda: ds.GaussianMixture(W2, MU2, 1e-320), ValueError, "covs"),
    ("process-not-a-process", lambda: ds.GaussianMixture(W2, MU2, process="ou"), TypeError, "process"),
    ("labels-shape", lambda: ds.GaussianMixture(W2, MU2, labels=np.array([0, 1, 2])), ValueError, "labels"),
    ("labels-float", lambda: ds.GaussianMixture(W2, MU2, labels=np.array([0.0, 1.0])), ValueError, "labels"),
]

# --- GaussianMixture: one-point methods, times, sampling and sub-mixtures ---------------------------------
_POINT_METHODS = [
    "score",
    "denoise",
    "eps",
    "v_prediction",
    "velocity",
    "reverse_drift",
    "log_prob",
    "posterior",
    "component_log_prob",
    "hessian",
    "laplacian",
    "velocity_divergence",
]
MIXTURE_CALL_CASES = (
    [(f"batch-{m}", _call(getattr(GM, m), 0.5, XB), _POINT, _x("`x`.*vmap")) for m in _POINT_METHODS]
    + [
        (f"batch-full-{m}", _call(getattr(GM_FULL, m), 0.5, XB), _POINT, _x("vmap"))
        for m in ("score", "hessian")
    ]
    + [
        ("wrong-dim", _call(GM.score, 0.5, jnp.ones(3)), ValueError, "`x`"),
        ("scalar-x", _call(GM.score, 0.5, jnp.float64(1.0)), _POINT, _x("`x`")),
        ("batch-under-jit", lambda: jax.jit(lambda t, x: GM.score(t, x))(0.5, XB), _POINT, _x("`x`")),
        (
            "batch-in-group-posterior",
            lambda: GM.group_posterior(0.5, XB, jnp.array([True, False])),
            _POINT,
            _x("`x`"),
        ),
    ]
    + [
        (f"time-{name}-{m}", _call(getattr(GM, m), t, X), ValueError, "`t`")
        for name, t in (("negative", -0.5), ("nan", math.nan), ("inf", math.inf), ("above-tmax", 30.0))
        for m in ("score", "log_prob", "hessian")
    ]
    + [
        ("time-negative-posterior", _call(GM.posterior, -1.0, X), ValueError, "`t`"),
        ("time-negative-laplacian", _call(GM.laplacian, -1.0, X), ValueError, "`t`"),
        ("time-nan-denoise", _call(GM.denoise, math.nan, X), ValueError, "`t`"),
        ("time-negative-means-at", lambda: GM.means_at(-1.0), ValueError, "`t`"),
        ("time-nan-covs-at", lambda: GM.covs_at(math.nan), ValueError, "`t`"),
        ("sample-n-zero", lambda: GM.sample(KEY, 0), ValueError, "`n`"),
        ("sample-n-float", lambda: GM.sample(KEY, 2.5), TypeError, "`n`"),
        ("sample-int-key", lambda: GM.sample(0, 5), TypeError, "`key`"),
        ("sample-time-negative", lambda: GM.sample(KEY, 5, t=-1.0), ValueError, "`t`"),
        ("restrict-empty", lambda: GM.restrict([]), ValueError, "components"),
        ("restrict-out-of-range", lambda: GM.restrict([5]), ValueError, "components"),
        ("restrict-repeated", lambda: GM.restrict([0, 0]), ValueError, "components"),
        ("restrict-zero-weight", lambda: LABELLED.restrict([2]), ValueError, "zero total weight"),
        ("condition-unknown-label", lambda: GM.condition(99), ValueError, "label 99"),
        ("group-mask-float", lambda: GM.group_mask([0.5]), TypeError, "components"),
    ]
)

# --- EmpiricalScore -----------------------------------------------------------------------------------
EMPIRICAL_CASES = (
    [
        ("data-1d", lambda: ds.EmpiricalScore(np.zeros(4)), ValueError, "data"),
        ("data-nan", lambda: ds.EmpiricalScore([[0.0, math.nan]]), ValueError, "data"),
        ("data-complex", lambda: ds.EmpiricalScore(DATA + 1j), TypeError, "data"),
        ("data-empty", lambda: ds.EmpiricalScore(np.zeros((0, 2))), ValueError, "data"),
        ("bandwidth-negative", lambda: ds.EmpiricalScore(DATA, bandwidth=-1.0), ValueError, "bandwidth"),
        ("bandwidth-nan", lambda: ds.EmpiricalScore(DATA, bandwidth=math.nan), ValueError, "bandwidth"),
        ("bandwidth-inf", lambda: ds.EmpiricalScore(DATA, bandwidth=math.inf), ValueError, "bandwidth"),
        ("bandwidth-string", lambda: ds.EmpiricalScore(DATA, bandwidth="0.1"), TypeError, "bandwidth"),
        ("bandwidth-vector", lambda: ds.EmpiricalScore(DATA, bandwidth=np.ones(2)), ValueError, "bandwidth"),
        ("chunk-size-zero", lambda: ds.EmpiricalScore(DATA, chunk_size=0), ValueError, "chunk_size"),
        ("process-not-a-process", lambda: ds.EmpiricalScore(DATA, process=1.0), TypeError, "process"),
        ("labels-shape", lambda: ds.EmpiricalScore(DATA, labels=np.zeros(3, int)), ValueError, "labels"),
        ("sample-n-negative", lambda: EMP.sample(KEY, -1), ValueError, "`n`"),
        ("condition-unknown-label", lambda: EMP.condition(3), ValueError, "label 3"),
    ]
    + [
        (f"batch-{m}", _call(getattr(EMP, m), 0.5, XB), _POINT, _x("`x`.*vmap"))
        for m in ("score", "denoise", "log_prob", "posterior", "hessian", "laplacian", "velocity")
    ]
    + [
        (f"bandwidth0-time0-{m}", _call(getattr(EMP, m), 0.0, X), ValueError, "`t`.*bandwidth")
        for m in ("score", "denoise", "log_prob", "hessian")
    ]
    + [
        ("time-negative", _call(EMP_BW.score, -0.5, X), ValueError, "`t`"),
        ("time-nan", _call(EMP_BW.score, math.nan, X), ValueError, "`t`"),
        ("time-above-tmax", _call(EMP.log_prob, 11.0, X), ValueError, "`t`"),
        ("wrong-dim", _call(EMP.score, 0.5, jnp.ones(3)), ValueError, "`x`"),
    ]
)

# --- guidance -----------------------------------------------------------------------------------------
GM3_VE = ds.GaussianMixture(GM3.weights, GM3.means, 0.4, process=ds.VE())
GUIDANCE_CASES = [
    ("label-out-of-range", lambda: ClassifierGuidance(GM3, CLF, 5), ValueError, "label"),
    ("label-bool", lambda: ClassifierGuidance(GM3, CLF, True), TypeError, "label"),
    ("label-float", lambda: ClassifierGuidance(GM3, CLF, 1.5), TypeError, "label"),
    ("label-vector", lambda: ClassifierGuidance(GM3, CLF, [0, 1]), TypeError, "label"),
    ("scale-negative", lambda: ClassifierGuidance(GM3, CLF, 0, -1.0), ValueError, "scale"),
    ("scale-nan", lambda: ClassifierGuidance(GM3, CLF, 0, math.nan), ValueError, "scale"),
    ("scale-inf", lambda: ClassifierGuidance(GM3, CLF, 0, math.inf), ValueError, "scale"),
    ("scale-vector", lambda: ClassifierGuidance(GM3, CLF, 0, [1.0, 2.0]), ValueError, "scale"),
    ("scale-string", lambda: ClassifierGuidance(GM3, CLF, 0, "2"), TypeError, "scale"),
    ("scale-complex", lambda: ClassifierGuidance(GM3, CLF, 0, 1.0 + 1j), TypeError, "scale"),
    ("base-not-a-score", lambda: ClassifierGuidance("gm", CLF, 0), TypeError, "base"),
    ("classifier-not-a-classifier", lambda: ClassifierGuidance(GM3, GM3, 0), TypeError, "classifier"),
    ("classifier-other-process", lambda: ClassifierGuidance(GM3_VE, CLF, 0), ValueError, "classifier"),
    ("mixture-classifier-not-mixture", lambda: MixtureClassifier("gm"), TypeError, "mixture"),
    (
        "zero-weight-label-classifier",
        lambda: ClassifierGuidance(LABELLED, MixtureClassifier(LABELLED), 1),
        ValueError,
        "label",
    ),
    ("zero-weight-label-guided", lambda: guided_mixture(LABELLED, 1), ValueError, "label"),
    ("zero-weight-label-cfg", lambda: guided_mixture(LABELLED, 1, kind="cfg"), ValueError, "label"),
    ("guided-kind", lambda: guided_mixture(GM3, 0, kind="both"), ValueError, "kind"),
    ("guided-not-mixture", lambda: guided_mixture(EMP, 0), TypeError, "mixture"),
    ("guided-label-out-of-range", lambda: guided_mixture(GM3, 7), ValueError, "label"),
    ("guided-scale-negative", lambda: guided_mixture(GM3, 0, -0.5), ValueError, "scale"),
    (
        "cfg-dim-mismatch",
        lambda: ClassifierFreeGuidance(GM3, ds.GaussianMixture([1.0], [[0.0, 0.0, 0.0]])),
        ValueError,
        "unconditional",
    ),
    ("cfg-process-mismatch", lambda: ClassifierFreeGuidance(GM3, GM3_VE), ValueError, "unconditional"),
    ("cfg-scale-negative", lambda: ClassifierFreeGuidance(GM3, GM3.condition(0), -2.0), ValueError, "scale"),
    ("cfg-not-a-score", lambda: ClassifierFreeGuidance(GM3, None), TypeError, "conditional"),
    ("guided-batch-x", lambda: guided_mixture(GM3, 0, 2.0).score(0.5, XB), _POINT, _x("`x`.*vmap")),
    ("guided-cfg-batch-x", lambda: guided_mixture(GM3, 0, 2.0, kind="cfg").score(0.5, XB), _POINT, _x("`x`")),
    ("guided-time-negative", lambda: guided_mixture(GM3, 0, 2.0).score(-0.5, X), ValueError, "`t`"),
    (
        "guided-laplacian-time-nan",
        lambda: guided_mixture(GM3, 0, 2.0).laplacian(math.nan, X),
        ValueError,
        "`t`",
    ),
    ("classifier-label-out-of-range", lambda: CLF.log_prob(0.5, X, 7), ValueError, "label"),
    ("classifier-label-float", lambda: CLF.grad_log_prob(0.5, X, 1.0), TypeError, "label"),
    ("classifier-batch-x", lambda: CLF.log_prob(0.5, XB, 0), _POINT, _x("`x`")),
    ("classifier-time-negative", lambda: CLF.grad_log_prob(-0.5, X, 0), ValueError, "`t`"),
    (
        "convert-strength-source",
        lambda: ds.scores.guidance.convert_strength(1.0, source="gamma"),
        ValueError,
        "source",
    ),
]

# --- grids --------------------------------------------------------------------------------------------
GRID_CASES = [
    ("uniform-process-name", lambda: grids.uniform("ou", 10), TypeError, "process"),
    ("karras-process-name", lambda: grids.karras("ve", 10), TypeError, "process"),
    ("forward-uniform-process-none", lambda: grids.forward_uniform(None, 10), TypeError, "process"),
    ("uniform-n-zero", lambda: grids.uniform(OU, 0), ValueError, "n_steps"),
    ("uniform-n-negative", lambda: grids.uniform(OU, -3), ValueError, "n_steps"),
    ("uniform-n-float", lambda: grids.uniform(OU, 2.5), TypeError, "n_steps"),
    ("uniform-increasing", lambda: grids.uniform(OU, 10, t_start=0.5, t_end=0.9), ValueError, "t_start"),
    ("uniform-start-nan", lambda: grids.uniform(OU, 10, t_start=math.nan), ValueError, "t_start"),
    ("uniform-start-negative", lambda: grids.uniform(OU, 10, t_start=-1.0), ValueError, "t_start"),
    ("uniform-end-zero", lambda: grids.uniform(OU, 10, t_end=0.0), ValueError, "t_end"),
    ("uniform-start-above-tmax", lambda: grids.uniform(OU, 10, t_start=100.0), ValueError, "t_start"),
    ("geometric-end-nan", lambda: grids.geometric(OU, 10, t_end=math.nan), ValueError, "t_end"),
    ("karras-rho-negative", lambda: grids.karras(OU, 10, rho=-1.0), ValueError, "rho"),
    ("karras-rho-nan", lambda: grids.karras(OU, 10, rho=math.nan), ValueError, "rho"),
    ("logsnr-n-zero", lambda: grids.logsnr_uniform(OU, 0), ValueError, "n_steps"),
    ("exponential-dense", lambda: grids.exponential(OU, 10, dense="middle"), ValueError, "dense"),
    ("exponential-lam-negative", lambda: grids.exponential(OU, 10, lam=-1.0), ValueError, "lam"),
    (
        "exponential-train-steps",
        lambda: grids.exponential(OU, 10, n_train_steps=1),
        ValueError,
        "n_train_steps",
    ),
    (
        "forward-decreasing",
        lambda: grids.forward_uniform(OU, 10, t_start=5.0, t_end=1.0),
        ValueError,
        "t_end",
    ),
    ("forward-start-negative", lambda: grids.forward_uniform(OU, 10, t_start=-1.0), ValueError, "t_start"),
]

# --- simulate (only what the sampling package already rejects; see the module docstring) --------------
SIMULATE_CASES = [
    (
        "unknown-method",
        lambda: ds.simulate(GM, "rk17", 4, n=3, key=KEY),
        ValueError,
        "Unknown sampler 'rk17'",
    ),
    ("n-zero", lambda: ds.simulate(GM, "ddim", 4, n=0, key=KEY), ValueError, "`n`"),
    ("n-negative", lambda: ds.simulate(GM, "ddim", 4, n=-2, key=KEY), ValueError, "`n`"),
    ("n-float", lambda: ds.simulate(GM, "ddim", 4, n=2.5, key=KEY), TypeError, "`n`"),
    ("n-and-x", lambda: ds.simulate(GM, "ddim", 4, n=2, x=jnp.zeros((2, 2)), key=KEY), ValueError, "`x`"),
    ("x-wrong-dim", lambda: ds.simulate(GM, "ddim", 4, x=jnp.zeros((3, 3)), key=KEY), ValueError, "`x`"),
    ("x-1d", lambda: ds.simulate(GM, "ddim", 4, x=jnp.zeros(2), key=KEY), _POINT, _x("`x`")),
    ("x-nan", lambda: ds.simulate(GM, "ddim", 4, x=jnp.full((3, 2), jnp.nan), key=KEY), ValueError, "`x`"),
    ("x-empty", lambda: ds.simulate(GM, "ddim", 4, x=jnp.zeros((0, 2)), key=KEY), ValueError, "`x`"),
    ("key-int", lambda: ds.simulate(GM, "ddim", 4, n=3, key=0), TypeError, "`key`"),
    ("key-none", lambda: ds.simulate(GM, "ddim", 4, n=3, key=None), TypeError, "`key`"),
    ("key-batch", lambda: ds.simulate(GM, "ddim", 4, n=3, key=jax.random.split(KEY, 2)), ValueError, "`key`"),
    ("grid-zero-steps", lambda: ds.simulate(GM, "ddim", 0, n=3, key=KEY), ValueError, "grid"),
    (
        "grid-increasing",
        lambda: ds.simulate(GM, "ddim", jnp.linspace(0.01, 1.0, 5), n=3, key=KEY),
        ValueError,
        "grid",
    ),
    (
        "grid-nan",
        lambda: ds.simulate(GM, "ddim", jnp.array([1.0, jnp.nan, 0.1]), n=3, key=KEY),
        ValueError,
        "grid",
    ),
    ("grid-one-time", lambda: ds.simulate(GM, "ddim", jnp.array([1.0]), n=3, key=KEY), ValueError, "grid"),
    (
        "grid-negative",
        lambda: ds.simulate(GM, "ddim", jnp.array([1.0, 0.5, -0.5]), n=3, key=KEY),
        ValueError,
        "grid",
    ),
    (
        "grid-beyond-tmax",
        lambda: ds.simulate(GM, "ddim", jnp.array([50.0, 1.0, 0.1]), n=3, key=KEY),
        ValueError,
        "grid",
    ),
    ("grid-string", lambda: ds.simulate(GM, "ddim", "karras", n=3, key=KEY), TypeError, "grid"),
    ("score-not-a-score", lambda: ds.simulate("gm", "ddim", 4, n=3, key=KEY), TypeError, "score"),
    ("x-inf", lambda: ds.simulate(GM, "ddim", 4, x=jnp.full((3, 2), jnp.inf), key=KEY), ValueError, "`x`"),
    ("x-complex", lambda: ds.simulate(GM, "ddim", 4, x=jnp.full((3, 2), 1j), key=KEY), TypeError, "`x`"),
    ("grid-2d", lambda: ds.simulate(GM, "ddim", jnp.ones((3, 2)), n=3, key=KEY), ValueError, "`grid`"),
    (
        "grid-repeated-time",
        lambda: ds.simulate(GM, "ddim", jnp.array([1.0, 0.5, 0.5, 0.1]), n=3, key=KEY),
        ValueError,
        "`grid`",
    ),
    ("grid-float-steps", lambda: ds.simulate(GM, "ddim", 10.0, n=3, key=KEY), ValueError, "`grid`"),
    (
        "grid-complex",
        lambda: ds.simulate(GM, "ddim", jnp.array([1.0 + 0j, 0.5]), n=3, key=KEY),
        TypeError,
        "`grid`",
    ),
    ("method-none", lambda: ds.simulate(GM, None, 4, n=3, key=KEY), TypeError, "`method`"),
    ("method-bad-option", lambda: ds.simulate(GM, "ddim", 4, n=3, key=KEY, bogus=1), TypeError, "bogus"),
    ("ddim-eta-negative", lambda: ds.simulate(GM, "ddim", 4, n=3, key=KEY, eta=-1.0), ValueError, "`eta`"),
    ("ddim-eta-nan", lambda: ds.simulate(GM, "ddim", 4, n=3, key=KEY, eta=math.nan), ValueError, "`eta`"),
    ("key-float", lambda: ds.simulate(GM, "ddim", 4, n=3, key=jnp.array([0.0, 1.0])), TypeError, "`key`"),
]

CASES = (
    [("process", *c) for c in PROCESS_CASES]
    + [("mixture-init", *c) for c in MIXTURE_INIT_CASES]
    + [("mixture-call", *c) for c in MIXTURE_CALL_CASES]
    + [("empirical", *c) for c in EMPIRICAL_CASES]
    + [("guidance", *c) for c in GUIDANCE_CASES]
    + [("grids", *c) for c in GRID_CASES]
    + [("simulate", *c) for c in SIMULATE_CASES]
)


@pytest.mark.parametrize(
    ("group", "name", "thunk", "exc", "match"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES]
)
def test_bad_input_raises_naming_the_argument(group, name, thunk, exc, match):
    with pytest.raises(exc) as info:
        thunk()
    if isinstance(info.value, jaxtyping.TypeCheckError):
        # the runtime checker (tests/conftest.py) rejected it first; it writes parameter 'n', not `n`
        match = re.sub(r"`(\w+)`", r"parameter '\1'", match)
    assert re.search(match, str(info.value)), (match, str(info.value))


def test_case_count():
    assert len(CASES) >= 120
    assert len({(c[0], c[1]) for c in CASES}) == len(CASES)


# --- checked mode: the same conditions on traced values ---------------------------------------------------
def _raises_runtime(fn, match):
    # eagerly equinox raises EquinoxRuntimeError; from compiled code XLA re-raises it as a JaxRuntimeError
    with pytest.raises((eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError), match=match):
        jax.block_until_ready(fn())


@pytest.fixture
def checks_on():
    with ds.checked():
        yield


def test_checked_mode_is_off_by_default_and_costs_nothing():
    assert not ds.checks_enabled()
    # unchecked: a NaN particle under jit flows through silently (the documented default) ...
    out = jax.jit(lambda x: GM.score(0.5, x))(jnp.array([jnp.nan, 0.0]))
    assert np.isnan(np.asarray(out)).all()
    # ... and the traced program holds no guard at all
    plain = str(jax.make_jaxpr(lambda t, x: GM.score(t, x))(0.5, X))
    with ds.checked():
        guarded = str(jax.make_jaxpr(lambda t, x: GM.score(t, x))(0.5, X))
    assert plain != guarded and len(plain) < len(guarded)
    assert not ds.checks_enabled()


def test_checked_switch_restores_and_set_checks_returns_previous():
    assert ds.set_checks(True) is False
    try:
        assert ds.checks_enabled()
        with ds.checked(False):
            assert not ds.checks_enabled()
        assert ds.checks_enabled()
    finally:
        assert ds.set_checks(False) is True


def test_checked_mode_env_variable():
    import subprocess
    import sys

    code = "import diffsim; print(diffsim.checks_enabled())"
    for value, expected in (("1", "True"), ("0", "False"), ("", "False")):
        env = {**__import__("os").environ, "DIFFSIM_CHECKS": value, "JAX_PLATFORMS": "cpu"}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected


CHECKED_CASES = [
    ("nan-particle", lambda: jax.jit(lambda x: GM.score(0.5, x))(jnp.array([jnp.nan, 0.0])), "`x`"),
    ("inf-particle-hessian", lambda: jax.jit(lambda x: GM.hessian(0.5, x))(jnp.array([jnp.inf, 0.0])), "`x`"),
    ("nan-time", lambda: jax.jit(lambda t: GM.log_prob(t, X))(jnp.nan), "`t`"),
    ("negative-time", lambda: jax.jit(lambda t: GM.score(t, X))(-0.5), "`t`"),
    ("time-above-tmax", lambda: jax.jit(lambda t: GM.posterior(t, X))(25.0), "`t`"),
    ("time-vmapped", lambda: jax.vmap(lambda t: GM.score(t, X))(jnp.array([0.5, -1.0])), "`t`"),
    (
        "negative-weights-built-under-jit",
        lambda: jax.jit(lambda w: ds.GaussianMixture(w, MU2, 0.5).score(0.5, X))(jnp.array([-0.5, 1.5])),
        "weights",
    ),
    (
        "nan-weights-built-under-jit",
        lambda: jax.jit(lambda w: ds.GaussianMixture(w, MU2, 0.5).score(0.5, X))(jnp.array([jnp.nan, 1.0])),
        "weights",
    ),
    (
        "nan-means-built-under-jit",
        lambda: jax.jit(lambda m: ds.GaussianMixture(W2, m, 0.5).score(0.5, X))(
            jnp.asarray(MU2).at[0, 0].set(jnp.nan)
        ),
        "means",
    ),
    (
        "empirical-nan-particle",
        lambda: jax.jit(lambda x: EMP.score(0.5, x))(jnp.array([0.0, jnp.nan])),
        "`x`",
    ),
    ("empirical-bandwidth0-time0", lambda: jax.jit(lambda t: EMP.score(t, X))(0.0), "`t`"),
    (
        "empirical-nan-data-built-under-jit",
        lambda: jax.jit(lambda d: ds.EmpiricalScore(d).score(0.5, X))(
            jnp.asarray(DATA).at[0, 0].set(jnp.nan)
        ),
        "data",
    ),
    (
        "guidance-label-out-of-range",
        lambda: jax.jit(lambda lab: ClassifierGuidance(GM3, CLF, lab, 2.0).score(0.5, X))(jnp.asarray(7)),
        "label",
    ),
    (
        "guidance-negative-scale",
        lambda: jax.jit(lambda w: ClassifierGuidance(GM3, CLF, 0, w).score(0.5, X))(jnp.asarray(-1.0)),
        "scale",
    ),
    (
        "guidance-scale-swept-by-vmap",
        lambda: jax.vmap(lambda w: guided_mixture(GM3, 0, w).laplacian(0.5, X))(jnp.array([1.0, -2.0])),
        "scale",
    ),
    (
        "cfg-negative-scale",
        lambda: jax.jit(lambda w: ClassifierFreeGuidance(GM3, GM3_COND, w).score(0.5, X))(jnp.asarray(-1.0)),
        "scale",
    ),
    (
        "guided-scale-leaf-mutated",
        lambda: jax.jit(lambda g: g.score(0.5, X))(
            eqx.tree_at(lambda g: g.scale, guided_mixture(GM3, 0), jnp.asarray(-3.0))
        ),
        "scale",
    ),
    (
        "classifier-label-out-of-range",
        lambda: jax.jit(lambda lab: CLF.log_prob(0.5, X, lab))(jnp.asarray(9)),
        "label",
    ),
    (
        "check-particles-helper",
        lambda: jax.jit(lambda x: ds._checks.check_particles(x, "x0"))(jnp.array([jnp.nan])),
        "x0",
    ),
    (
        "check-times-helper",
        lambda: jax.jit(lambda t: ds._checks.check_times(t, OU, "grid", allow_zero=False))(
            jnp.array([1.0, 0.0])
        ),
        "grid",
    ),
    ("process-check-time", lambda: jax.jit(lambda t: OU.check_time(t, "t_hat"))(jnp.asarray(-3.0)), "t_hat"),
]


@pytest.mark.parametrize(("name", "fn", "match"), CHECKED_CASES, ids=[c[0] for c in CHECKED_CASES])
def test_checked_mode_guards_traced_values(checks_on, name, fn, match):
    _raises_runtime(fn, match)


def test_checked_mode_passes_good_values_unchanged(checks_on):
    """Guards do not change any number: checked and unchecked results agree bit for bit."""
    g = guided_mixture(GM3, 0, 2.0)
    xs = jnp.asarray(np.random.default_rng(1).normal(size=(4, 2)))
    fns = [
        lambda x: GM.score(0.5, x),
        lambda x: GM_FULL.hessian(0.3, x),
        lambda x: EMP.score(0.2, x),
        lambda x: g.score(0.5, x),
        lambda x: g.laplacian(0.5, x),
    ]
    for fn in fns:
        checked = jax.jit(jax.vmap(fn))(xs)
        with ds.checked(False):
            plain = jax.jit(jax.vmap(fn))(xs)
        np.testing.assert_array_equal(np.asarray(checked), np.asarray(plain))


# --- checked mode inside simulate ------------------------------------------------------------------------
class _NaNAfter(AbstractScore):
    """A score that returns NaN once the time drops below ``t_bad`` (a model that blows up late)."""

    base: ds.GaussianMixture
    t_bad: float
    process: ds.VP

    @property
    def dim(self):
        return self.base.dim

    def score(self, t, x):
        return jnp.where(t < self.t_bad, jnp.nan, self.base.score(t, x))


def _nan_score():
    return _NaNAfter(base=GM, t_bad=2.0, process=GM.process)


def test_simulate_checked_mode_catches_non_finite_particles_and_recompiles():
    """The checked-mode flag is part of simulate's compilation key: an unchecked run returns NaNs silently
    (the documented default), the same call in checked mode raises, and unchecked again is silent."""
    score = _nan_score()
    key = jax.random.key(0)
    out = ds.simulate(score, "ddim", 8, n=4, key=key).x
    assert np.isnan(np.asarray(out)).all()
    with ds.checked():
        _raises_runtime(lambda: ds.simulate(score, "ddim", 8, n=4, key=key).x, "non-finite particles")
        good = ds.simulate(GM, "ddim", 8, n=4, key=key).x
    np.testing.assert_array_equal(np.asarray(good), np.asarray(ds.simulate(GM, "ddim", 8, n=4, key=key).x))
    assert np.isnan(np.asarray(ds.simulate(score, "ddim", 8, n=4, key=key).x)).all()


def test_simulate_checked_mode_guards_a_traced_grid():
    """Under jit the grid is a tracer (no eager check): checked mode names it when it runs the wrong way."""
    key = jax.random.key(0)
    run = jax.jit(lambda g: ds.simulate(GM, "ddim", g, n=4, key=key).x)
    increasing = jnp.linspace(0.1, 1.0, 5)
    run(increasing)  # unchecked: runs (garbage, silently: the documented default)
    with ds.checked():
        run_checked = jax.jit(lambda g: ds.simulate(GM, "ddim", g, n=4, key=key).x)
        _raises_runtime(lambda: run_checked(increasing), "grid")
        _raises_runtime(lambda: run_checked(jnp.array([1.0, 0.5, -0.2])), "grid")
        ok = run_checked(jnp.linspace(1.0, 0.01, 5))
    np.testing.assert_array_equal(np.asarray(ok), np.asarray(run(jnp.linspace(1.0, 0.01, 5))))
