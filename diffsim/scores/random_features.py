r"""Random-feature denoisers and scores, their closed-form least-squares fit and gradient flow.

The model of He, Qiu & Tao (2026, arXiv 2602.06021, Sec. "random feature models"; code
``rf_diffusion_experiments/model.py``): frozen random ReLU features of ``x`` and Fourier features of ``t``,
and a trained linear read-out ``A`` in ``R^{d x p}``,

    h(t, x)   = relu( W_x x / sqrt(d) + W_t phi(t) / sqrt(2K + 1) + b )               in R^p,
    phi(t)    = [1, sin(2 pi k t / T), cos(2 pi k t / T)]_{k = 1..K},
    out(t, x) = A h(t, x) / sqrt(p),

with ``W_x, W_t, b`` standard normal and never trained (they pass through ``jax.lax.stop_gradient``, so
even a generic optimiser over the whole module leaves them unchanged). Two parametrisations:

- **posterior mean** (``"denoiser"``): ``out`` predicts the signal part ``alpha_t x_0``; its optimum is
  ``m_t(x) = E[alpha_t x_0 | x_t = x]`` and the score is ``s = (out - x) / sigma_t^2``;
- **direct score** (``"score"``): ``out`` predicts the score; the regression target is ``-z / sigma_t``.

**Objective.** For training points ``x_0`` (the empirical distribution), noise ``z`` and
``x_t = alpha_t x_0 + sigma_t z`` the time-integrated denoising loss, per coordinate, is

    L(A) = (1/d) \int_{t_0}^{T} w(t) E | out_A(t, x_t) - y |^2 dt,       y = alpha_t x_0  or  -z / sigma_t,

with ``w(t) = lambda(t) / sigma_t^4`` (denoiser) or ``lambda(t)`` (score) so that ``lambda`` is the weight of
the squared *score* error (``"score"``: 1, ``"eps"``: sigma_t^2, ``"denoiser"``: sigma_t^4, the weightings
1, h_t, h_t^2 of the paper's code). The integral is Simpson's rule over ``t`` (uniform or log-uniform
nodes) and the expectation a Monte-Carlo average over ``n_noise`` draws per training point and node.
Because ``out`` is linear in ``A``,

    L(A) = (1/d) [ tr(A U A^T) - 2 sqrt(p) tr(A V^T) + C ],
    U = \int w E[h h^T] / p,   V = \int w E[y h^T] / p,   C = \int w E|y|^2,

(the moment matrices of the paper's code, ``U`` ``p x p`` and ``V`` ``d x p``).

**Gradient flow.** Time ``tau`` is defined by ``dA/dtau = -d grad_A L = -2 (A U - sqrt(p) V)``, so plain
gradient descent with learning rate ``eta`` on ``L`` reaches ``tau = eta * steps / d``. With
``U = Q diag(lambda) Q^T`` and ``B = A Q / sqrt(p)`` the flow decouples into

    B_k(tau) = B_k(0) e^{-2 lambda_k tau} + (V Q)_k (1 - e^{-2 lambda_k tau}) / lambda_k,

finite for every ``lambda_k >= 0`` (no pseudo-inverse is needed at finite ``tau``), and its limit is

    A(inf) / sqrt(p) = V U^+ + A(0)/sqrt(p) (I - U U^+):

the initialisation survives in the null space of ``U`` (the null-space term). The error of ``A(tau)``
against the empirical optimum then splits into the *architectural bias* ``out_{A(inf)} - m_t`` and the
*optimisation error* ``(A(tau) - A(inf)) h``, which decays mode by mode at rate ``2 lambda_k``.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float

from .._validation import as_float_array, check_key, check_positive_int, is_concrete
from ..processes import VP, AbstractProcess
from ._base import AbstractScore
from .empirical import EmpiricalScore


__all__ = [
    "LOSS_WEIGHTINGS",
    "RF_PARAMETRISATIONS",
    "RandomFeatureMoments",
    "RandomFeatureScore",
    "RandomFeatureTrainingSet",
    "dsm_objective",
    "fit_moments",
    "make_training_set",
    "readout_filter",
    "simpson_nodes",
    "train_readout",
]

RF_PARAMETRISATIONS = ("denoiser", "score")
LOSS_WEIGHTINGS = ("denoiser", "eps", "score")
_ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")
    return value


# =====================================================================================================
# the model
# =====================================================================================================
class RandomFeatureScore(AbstractScore):
    r"""Random-feature denoiser / score ``out(t, x) = A h(t, x) / sqrt(p)`` (module docstring).

    **Arguments:** ``dim`` (``d``); ``width`` (``p``); ``key``; ``process`` (default :meth:`VP.ou`);
    ``n_freqs`` (``K``, default 16); ``parametrisation`` (``"denoiser"`` or ``"score"``); ``horizon``
    (``T`` of the Fourier features, default ``process.t_max``); ``activation`` (``"relu"``, ``"tanh"``,
    ``"sigmoid"``); ``readout_scale`` (``A(0)`` has i.i.d. ``N(0, readout_scale^2)`` entries; the paper
    uses 1).

    Only :attr:`readout` is trainable; :meth:`with_readout` returns a copy with another read-out.
    """

    weights_x: Float[Array, "p d"]
    weights_t: Float[Array, "p f"]
    bias: Float[Array, " p"]
    readout: Float[Array, "d p"]
    process: AbstractProcess
    parametrisation: str = eqx.field(static=True)
    n_freqs: int = eqx.field(static=True)
    horizon: float = eqx.field(static=True)
    activation: str = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        width: int,
        *,
        key: jax.Array,
        process: AbstractProcess | None = None,
        n_freqs: int = 16,
        parametrisation: str = "denoiser",
        horizon: float | None = None,
        activation: str = "relu",
        readout_scale: float = 1.0,
        dtype=None,
    ):
        dim = check_positive_int(dim, "dim")
        width = check_positive_int(width, "width")
        self.n_freqs = check_positive_int(n_freqs, "n_freqs", minimum=0)
        self.parametrisation = _check_choice(parametrisation, RF_PARAMETRISATIONS, "parametrisation")
        self.activation = _check_choice(activation, tuple(_ACTIVATIONS), "activation")
        if process is None:
            process = VP.ou()
        if not isinstance(process, AbstractProcess):
            raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
        self.process = process
        horizon = float(process.t_max if horizon is None else horizon)
        if not (horizon > 0 and math.isfinite(horizon)):
            raise ValueError(f"`horizon` must be positive and finite, got {horizon}.")
        self.horizon = horizon
        if not (readout_scale >= 0 and math.isfinite(readout_scale)):
            raise ValueError(f"`readout_scale` must be finite and >= 0, got {readout_scale}.")
        dtype = dtype or jnp.result_type(float)
        kx, kt, kb, ka = jr.split(check_key(key), 4)
        self.weights_x = jr.normal(kx, (width, dim), dtype)
        self.weights_t = jr.normal(kt, (width, 2 * self.n_freqs + 1), dtype)
        self.bias = jr.normal(kb, (width,), dtype)
        self.readout = readout_scale * jr.normal(ka, (dim, width), dtype)

    # --- shapes -------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.readout.shape[0]

    @property
    def width(self) -> int:
        """Number of random features ``p``."""
        return self.readout.shape[1]

    # --- the network --------------------------------------------------------------------------------
    def time_features(self, t: ArrayLike) -> Float[Array, " f"]:
        """``phi(t) = [1, sin(2 pi k t / T), cos(2 pi k t / T)]_{k=1..K}``."""
        t = jnp.asarray(t, self.weights_t.dtype)
        k = jnp.arange(1, self.n_freqs + 1, dtype=t.dtype)
        arg = 2.0 * jnp.pi * k * t / self.horizon
        return jnp.concatenate([jnp.ones((1,), t.dtype), jnp.sin(arg), jnp.cos(arg)])

    def features(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " p"]:
        """Frozen random features ``h(t, x)`` (the frozen weights are behind ``stop_gradient``)."""
        wx = jax.lax.stop_gradient(self.weights_x)
        wt = jax.lax.stop_gradient(self.weights_t)
        b = jax.lax.stop_gradient(self.bias)
        pre = wx @ x / math.sqrt(self.dim) + wt @ self.time_features(t) / math.sqrt(wt.shape[1]) + b
        return _ACTIVATIONS[self.activation](pre)

    def output(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """``out(t, x) = A h(t, x) / sqrt(p)``: the prediction of ``alpha_t x_0`` or of the score."""
        return self.readout @ self.features(t, x) / math.sqrt(self.width)

    def score(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """``(out - x) / sigma_t^2`` (denoiser parametrisation) or ``out`` (direct score)."""
        out = self.output(t, x)
        if self.parametrisation == "denoiser":
            return (out - x) / self.process.sigma2(t)
        return out

    def denoise(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """Tweedie ``E[x_0 | x_t = x]``; ``out / alpha_t`` for the denoiser parametrisation."""
        if self.parametrisation == "denoiser":
            return self.output(t, x) / self.process.alpha(t)
        return super().denoise(t, x)

    def with_readout(self, readout: Float[ArrayLike, "d p"]) -> RandomFeatureScore:
        """A copy with read-out ``readout`` (shape ``(d, p)``)."""
        a = jnp.asarray(readout, self.readout.dtype)
        if a.shape != self.readout.shape:
            raise ValueError(f"`readout` must have shape {self.readout.shape}, got {a.shape}.")
        return eqx.tree_at(lambda m: m.readout, self, a)

    def __repr__(self) -> str:
        return (
            f"RandomFeatureScore(d={self.dim}, p={self.width}, K={self.n_freqs}, "
            f"parametrisation={self.parametrisation!r}, process={self.process!r})"
        )


def readout_filter(model: RandomFeatureScore) -> RandomFeatureScore:
    """Filter spec for ``eqx.partition``: True on :attr:`RandomFeatureScore.readout` only."""
    spec = jax.tree.map(lambda _: False, model)
    return eqx.tree_at(lambda m: m.readout, spec, True)


# =====================================================================================================
# the training set: quadrature over t, Monte Carlo over noise
# =====================================================================================================
def simpson_nodes(
    t_min: float, t_max: float, n: int, spacing: str = "uniform"
) -> tuple[np.ndarray, np.ndarray]:
    r"""Composite Simpson nodes and weights for ``\int_{t_min}^{t_max} f(t) dt`` with ``n`` (odd) nodes.

    ``spacing="uniform"``: nodes uniform in ``t``. ``"log"``: uniform in ``u = log t`` and the weights
    carry the Jacobian ``dt = t du`` (resolves small ``t``). Weights sum to ``t_max - t_min`` up to the
    rule's error (exact for ``"uniform"``).
    """
    n = check_positive_int(n, "n_times", minimum=3)
    if n % 2 == 0:
        raise ValueError(f"`n_times` must be odd for Simpson's rule, got {n}.")
    if not (0.0 < t_min < t_max):
        raise ValueError(f"Need 0 < t_min < t_max, got {t_min}, {t_max}.")
    _check_choice(spacing, ("uniform", "log"), "time_grid")
    coef = np.ones(n)
    coef[1:-1:2] = 4.0
    coef[2:-1:2] = 2.0
    if spacing == "uniform":
        t = np.linspace(t_min, t_max, n)
        return t, coef * (t[1] - t[0]) / 3.0
    u = np.linspace(math.log(t_min), math.log(t_max), n)
    t = np.exp(u)
    return t, coef * (u[1] - u[0]) / 3.0 * t


def _score_loss_weight(process: AbstractProcess, t, weighting: str):
    s2 = process.sigma2(t)
    return {"denoiser": s2**2, "eps": s2, "score": jnp.ones_like(s2)}[weighting]


class RandomFeatureTrainingSet(eqx.Module):
    """The fixed quadrature/Monte-Carlo sample on which the read-out is fitted (see
    :func:`make_training_set`): at node ``j``, ``inputs[j]`` are noised training points, ``targets[j]`` the
    regression targets, ``reference[j]`` the empirical optimum's output at the inputs (the same
    parametrisation), and ``weights[j]`` = Simpson weight x ``w(t_j)``."""

    times: Float[Array, " n_t"]
    weights: Float[Array, " n_t"]
    inputs: Float[Array, "n_t n_s d"]
    targets: Float[Array, "n_t n_s d"]
    reference: Float[Array, "n_t n_s d"]
    parametrisation: str = eqx.field(static=True)
    weighting: str = eqx.field(static=True)

    @property
    def dim(self) -> int:
        return self.inputs.shape[-1]


def make_training_set(
    data: Float[ArrayLike, "M d"],
    *,
    key: jax.Array,
    process: AbstractProcess | None = None,
    parametrisation: str = "denoiser",
    weighting: str = "denoiser",
    n_times: int = 201,
    n_noise: int = 256,
    t_min: float | None = None,
    t_max: float | None = None,
    time_grid: str = "uniform",
) -> RandomFeatureTrainingSet:
    r"""Sample the random-feature objective: Simpson nodes over ``[t_min, t_max]`` (default the process's
    range) and ``n_noise`` noise draws per training point per node (node ``j`` uses ``fold_in(key, j)``).

    Targets: ``alpha_t x_0`` (``"denoiser"``) or ``-z / sigma_t`` (``"score"``). The reference output is
    that of the exact empirical score of ``data`` (``m_t(x)`` or ``\nabla log \hat p_t``), evaluated at the
    same inputs, so that errors against the memorising optimum are exact quadratic forms of the read-out.
    """
    key = check_key(key)
    x0 = as_float_array(data, "data", ndim=2)
    if x0.shape[0] < 1 or x0.shape[1] < 1:
        raise ValueError(f"`data` must be a non-empty (M, d) array, got shape {x0.shape}.")
    _check_choice(parametrisation, RF_PARAMETRISATIONS, "parametrisation")
    _check_choice(weighting, LOSS_WEIGHTINGS, "weighting")
    n_noise = check_positive_int(n_noise, "n_noise")
    process = VP.ou() if process is None else process
    lo = float(process.t_min if t_min is None else t_min)
    hi = float(process.t_max if t_max is None else t_max)
    process.check_time(lo, "t_min", allow_zero=False)
    process.check_time(hi, "t_max", allow_zero=False)
    t_np, q_np = simpson_nodes(lo, hi, n_times, time_grid)
    dtype = x0.dtype
    times = jnp.asarray(t_np, dtype)
    empirical = EmpiricalScore(x0, process=process)
    out = _sample_nodes(empirical, x0, times, key, n_noise, parametrisation)
    lam = _score_loss_weight(process, times, weighting)
    w_out = lam / process.sigma2(times) ** 2 if parametrisation == "denoiser" else lam
    return RandomFeatureTrainingSet(times, jnp.asarray(q_np, dtype) * w_out, *out, parametrisation, weighting)


@eqx.filter_jit
def _sample_nodes(empirical: EmpiricalScore, x0, times, key, n_noise, parametrisation):
    p = empirical.process
    base = jnp.repeat(x0, n_noise, axis=0)  # each training point n_noise times

    def node(j, t):
        z = jr.normal(jr.fold_in(key, j), base.shape, base.dtype)
        a, s = p.alpha(t), p.sigma(t)
        xt = a * base + s * z
        if parametrisation == "denoiser":
            y = a * base
            ref = jax.vmap(lambda xi: a * empirical.denoise(t, xi))(xt)
        else:
            y = -z / s
            ref = jax.vmap(lambda xi: empirical.score(t, xi))(xt)
        return xt, y, ref

    return jax.lax.map(lambda jt: node(*jt), (jnp.arange(times.shape[0]), times))


# =====================================================================================================
# the objective and plain gradient descent (the cross-check of the closed form)
# =====================================================================================================
def dsm_objective(model: RandomFeatureScore, training_set: RandomFeatureTrainingSet) -> Float[Array, ""]:
    r"""``L(A) = (1/d) sum_j weights_j mean_s |out(t_j, x_js) - y_js|^2``, by the model's forward pass."""

    def node(t, w, x, y):
        pred = jax.vmap(lambda xi: model.output(t, xi))(x)
        return w * jnp.mean(jnp.sum((pred - y) ** 2, axis=-1))

    ts = training_set
    per_node = jax.vmap(node)(ts.times, ts.weights, ts.inputs, ts.targets)
    return jnp.sum(per_node) / model.dim


def train_readout(
    model: RandomFeatureScore,
    training_set: RandomFeatureTrainingSet,
    *,
    learning_rate: float,
    n_steps: int,
    optimizer: optax.GradientTransformation | None = None,
) -> tuple[RandomFeatureScore, Float[Array, " n_steps"]]:
    r"""Train the read-out by ``n_steps`` of gradient descent (``optax.sgd(learning_rate)`` unless another
    ``optimizer`` is given) on :func:`dsm_objective`; the frozen weights are kept out of the trainable
    partition. With plain GD this reaches gradient-flow time ``tau = learning_rate * n_steps / d``.

    Returns the trained model and the loss before each step.
    """
    if not isinstance(model, RandomFeatureScore):
        raise TypeError(f"`model` must be a RandomFeatureScore, got {type(model).__name__}.")
    if training_set.dim != model.dim:
        raise ValueError(f"The training set has dimension {training_set.dim}, the model {model.dim}.")
    if training_set.parametrisation != model.parametrisation:
        raise ValueError(
            f"The training set targets the {training_set.parametrisation!r} parametrisation, "
            f"the model is {model.parametrisation!r}."
        )
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise ValueError(f"`learning_rate` must be positive and finite, got {learning_rate}.")
    n_steps = check_positive_int(n_steps, "n_steps")
    params, static = eqx.partition(model, readout_filter(model))
    lr = jnp.asarray(learning_rate, model.readout.dtype)  # traced: no recompilation per learning rate
    return _gd(params, static, training_set, lr, n_steps, optimizer)


@eqx.filter_jit
def _gd(params, static, training_set, lr, n_steps, optimizer):
    opt = optax.sgd(lr) if optimizer is None else optimizer

    def loss_fn(pr):
        return dsm_objective(eqx.combine(pr, static), training_set)

    def step(carry, _):
        pr, st = carry
        loss, grads = eqx.filter_value_and_grad(loss_fn)(pr)
        updates, st = opt.update(grads, st, pr)
        return (eqx.apply_updates(pr, updates), st), loss

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=n_steps)
    return eqx.combine(params, static), losses


# =====================================================================================================
# moments, closed-form gradient flow and its limit
# =====================================================================================================
class RandomFeatureMoments(eqx.Module):
    r"""Moment matrices of the objective for one random-feature model (see the module docstring).

    - ``U`` ``(p, p)``, ``V`` ``(d, p)``, ``C`` ``(d,)`` (per-coordinate ``\int w E y_i^2``);
    - ``V_ref``, ``C_ref``: the same with ``y`` replaced by the empirical optimum's output, so that the
      weighted squared error against the optimum is a quadratic form of the read-out;
    - ``L_opt`` ``(d,)``: the per-coordinate loss of the empirical optimum itself (the irreducible part);
    - ``eigvals``, ``eigvecs``: the spectrum of ``U`` (ascending; computed in float64 on the host).
    """

    U: Float[Array, "p p"]
    V: Float[Array, "d p"]
    C: Float[Array, " d"]
    V_ref: Float[Array, "d p"]
    C_ref: Float[Array, " d"]
    L_opt: Float[Array, " d"]
    eigvals: Float[Array, " p"]
    eigvecs: Float[Array, "p p"]

    @property
    def dim(self) -> int:
        return self.V.shape[0]

    @property
    def width(self) -> int:
        return self.V.shape[1]

    def _check(self, readout):
        a = jnp.asarray(readout)
        if a.shape[-2:] != (self.dim, self.width):
            raise ValueError(f"`readout` must have shape (..., {self.dim}, {self.width}), got {a.shape}.")
        return a.astype(self.U.dtype)

    def _quad(self, a):
        """``A_i U A_i^T = sum_k lambda_k (A q_k)_i^2``: a sum of non-negative terms in the eigenbasis, so
        that losses at the rounding floor stay non-negative and monotone along the flow."""
        return jnp.einsum("...ik,k->...i", (a @ self.eigvecs) ** 2, self.eigvals)

    def loss_per_coordinate(self, readout: Float[ArrayLike, "*b d p"]) -> Float[Array, "*b d"]:
        """``L_i(A) = (1/d)[A_i U A_i^T - 2 sqrt(p) A_i . V_i + C_i]``; they sum to ``L(A)`` (any leading
        batch axes of ``readout``, e.g. a stack of read-outs along a flow, are kept)."""
        a = self._check(readout)
        quad = self._quad(a)
        lin = jnp.sum(a * jnp.broadcast_to(self.V, a.shape), axis=-1)  # leading batch axes explicit
        return (quad - 2.0 * math.sqrt(self.width) * lin + jnp.broadcast_to(self.C, quad.shape)) / self.dim

    def loss(self, readout: Float[ArrayLike, "*b d p"]) -> Float[Array, "*b"]:
        """``L(A)``, equal to :func:`dsm_objective` on the same training set."""
        return jnp.sum(self.loss_per_coordinate(readout), axis=-1)

    def error_per_coordinate(self, readout: Float[ArrayLike, "*b d p"]) -> Float[Array, "*b d"]:
        r"""``(1/d) \int w E (out_A - out_opt)_i^2``: the weighted squared error against the memorising
        optimum (the paper's training error), per output coordinate."""
        a = self._check(readout)
        quad = self._quad(a)
        lin = jnp.sum(a * jnp.broadcast_to(self.V_ref, a.shape), axis=-1)
        offset = jnp.broadcast_to(self.C_ref, quad.shape)
        return jnp.maximum(quad - 2.0 * math.sqrt(self.width) * lin + offset, 0.0) / self.dim

    def readout_at(self, readout0: Float[ArrayLike, "d p"], tau: ArrayLike) -> Float[Array, "*tau d p"]:
        r"""Gradient-flow read-out ``A(tau)`` from ``A(0) = readout0`` (closed form, any ``tau >= 0``;
        a 1-D array of times gives a stack)."""
        a0 = self._check(readout0)
        tau = jnp.asarray(tau, self.U.dtype)
        if is_concrete(tau) and np.any(np.asarray(tau) < 0):
            raise ValueError(f"`tau` must be >= 0, got {np.asarray(tau).min():g}.")
        if tau.ndim > 1:
            raise ValueError(f"`tau` must be a scalar or a 1-D array, got shape {tau.shape}.")
        return _readout_at(self, a0, tau)

    def null_space_loss_per_coordinate(
        self, readout0: Float[ArrayLike, "d p"], rcond: float | None = None
    ) -> Float[Array, " d"]:
        """``(1/d) sum_{lambda_k <= rcond max lambda} lambda_k (A(0) q_k)_i^2``: the part of the quadratic
        term that the null-space term of :meth:`readout_limit` keeps (0 for an exact null space)."""
        a0 = self._check(readout0)
        rcond = _default_rcond(self.U.dtype) if rcond is None else rcond
        null = self.eigvals <= rcond * jnp.max(self.eigvals)
        return (
            jnp.einsum("...ik,k->...i", (a0 @ self.eigvecs) ** 2, jnp.where(null, self.eigvals, 0.0))
            / self.dim
        )

    def readout_limit(
        self, readout0: Float[ArrayLike, "d p"], rcond: float | None = None
    ) -> Float[Array, "d p"]:
        r"""``A(inf) = sqrt(p) [V U^+ + A(0)/sqrt(p) (I - U U^+)]``; eigenvalues ``<= rcond * max(lambda)``
        count as null space (default ``rcond``: 1e-12 in float64, 1e-6 in float32)."""
        a0 = self._check(readout0)
        if rcond is None:
            rcond = _default_rcond(self.U.dtype)
        if not (rcond >= 0 and math.isfinite(rcond)):
            raise ValueError(f"`rcond` must be finite and >= 0, got {rcond}.")
        return _readout_limit(self, a0, jnp.asarray(rcond, self.U.dtype))


def _default_rcond(dtype) -> float:
    return 1e-12 if dtype == jnp.float64 else 1e-6


@eqx.filter_jit
def _readout_at(mom: RandomFeatureMoments, a0, tau):
    sp = math.sqrt(mom.width)
    lam, q = mom.eigvals, mom.eigvecs
    b0 = a0 @ q / sp
    vq = mom.V @ q

    def one(tt):
        z = 2.0 * lam * tt
        # (1 - e^{-2 lam tau}) / lam = 2 tau phi(z), phi(z) = -expm1(-z)/z, phi(0) = 1
        gain = jnp.where(z > 1e-12, -jnp.expm1(-z) / jnp.where(z > 1e-12, lam, 1.0), 2.0 * tt)
        # rows of b0, vq are the d read-out rows; the per-eigenvalue factors broadcast along them
        return sp * (b0 * jnp.exp(-z)[None, :] + vq * gain[None, :]) @ q.T

    return one(tau) if tau.ndim == 0 else jax.vmap(one)(tau)


@eqx.filter_jit
def _readout_limit(mom: RandomFeatureMoments, a0, rcond):
    sp = math.sqrt(mom.width)
    lam, q = mom.eigvals, mom.eigvecs
    keep = lam > rcond * jnp.max(lam)
    b0 = a0 @ q / sp
    b_inf = jnp.where(keep[None, :], (mom.V @ q) / jnp.where(keep, lam, 1.0)[None, :], b0)
    return sp * b_inf @ q.T


def fit_moments(model: RandomFeatureScore, training_set: RandomFeatureTrainingSet) -> RandomFeatureMoments:
    """Accumulate ``U``, ``V``, ``C`` (and the reference moments) of ``model`` on ``training_set`` (one
    node at a time), then diagonalise ``U`` in float64 on the host."""
    if not isinstance(model, RandomFeatureScore):
        raise TypeError(f"`model` must be a RandomFeatureScore, got {type(model).__name__}.")
    if training_set.dim != model.dim:
        raise ValueError(f"The training set has dimension {training_set.dim}, the model {model.dim}.")
    if training_set.parametrisation != model.parametrisation:
        raise ValueError(
            f"The training set targets the {training_set.parametrisation!r} parametrisation, "
            f"the model is {model.parametrisation!r}."
        )
    u, v, c, v_ref, c_ref, l_opt = _accumulate(model, training_set)
    u_np = np.asarray(u, dtype=np.float64)
    lam, q = np.linalg.eigh(0.5 * (u_np + u_np.T))
    lam = np.maximum(lam, 0.0)  # U is PSD; clip rounding
    dt = u.dtype
    return RandomFeatureMoments(u, v, c, v_ref, c_ref, l_opt, jnp.asarray(lam, dt), jnp.asarray(q, dt))


@eqx.filter_jit
def _accumulate(model, ts):
    p = model.width
    d = model.dim
    dtype = ts.inputs.dtype

    def body(carry, inp):
        t, w, x, y, ref = inp
        h = jax.vmap(lambda xi: model.features(t, xi))(x)  # (n_s, p)
        n = x.shape[0]
        u, v, c, v_ref, c_ref, l_opt = carry
        u = u + (w / (n * p)) * (h.T @ h)
        v = v + (w / (n * p)) * (y.T @ h)
        v_ref = v_ref + (w / (n * p)) * (ref.T @ h)
        c = c + w * jnp.mean(y**2, axis=0)
        c_ref = c_ref + w * jnp.mean(ref**2, axis=0)
        l_opt = l_opt + w * jnp.mean((ref - y) ** 2, axis=0) / d
        return (u, v, c, v_ref, c_ref, l_opt), None

    init = (
        jnp.zeros((p, p), dtype),
        jnp.zeros((d, p), dtype),
        jnp.zeros((d,), dtype),
        jnp.zeros((d, p), dtype),
        jnp.zeros((d,), dtype),
        jnp.zeros((d,), dtype),
    )
    out, _ = jax.lax.scan(body, init, (ts.times, ts.weights, ts.inputs, ts.targets, ts.reference))
    return out
