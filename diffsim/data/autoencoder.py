r"""A small autoencoder (optionally a VAE) on flattened images, for latent diffusion.

Encoder ``E: R^d -> R^m`` and decoder ``D: R^m -> R^d`` are MLPs (SiLU); the decoder ends in ``tanh``
because images live in ``[-1, 1]``. Training minimises, with optax (the optimiser of
:func:`diffsim.training.make_optimizer`: clipped Adam, warm-up, cosine decay),

    plain AE:   |D(E(x)) - x|^2 / d + latent_penalty |E(x)|^2 / m,
    VAE:        |D(z) - x|^2 / d + kl_weight KL(N(mu, diag e^{logvar}) || N(0, I)) / m,
                z = mu + e^{logvar/2} xi   (Kingma & Welling 2014; beta-VAE weighting).

The **latent code** of ``x`` is the encoder mean ``mu(x)``, *standardised* with the per-coordinate mean and
std of the training codes, stored in the model (``latent_shift``, ``latent_scale``) after training:
``encode(x) = (mu(x) - shift) / scale`` has zero mean and unit variance on the training set (what a VP
diffusion prior expects), and ``decode(z) = D(shift + scale z)``.

Latent diffusion: train a score network (e.g. :class:`~diffsim.scores.nn.MLPScore`) on
``encode_batch(ae, images)``, sample latents with :func:`diffsim.simulate`, and ``decode_batch`` them.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import as_float_array, check_key, check_positive_int
from ..scores.nn import Dense, init_rng
from ..training import (
    TrainConfig,
    fingerprint,
    load_model,
    make_optimizer,
    read_checkpoint_meta,
    save_model,
)


__all__ = [
    "Autoencoder",
    "AutoencoderConfig",
    "decode_batch",
    "encode_batch",
    "reconstruction_error",
    "train_autoencoder",
]


def _mlp(layers: tuple[Dense, ...], x: Array | np.ndarray) -> Array:
    """``L_n(silu(... silu(L_1 x)))``: SiLU between layers, none after the last."""
    for layer in layers[:-1]:
        x = jax.nn.silu(layer(x))
    return layers[-1](x)


class Autoencoder(eqx.Module):
    """MLP autoencoder ``d -> latent_dim -> d`` (a VAE when ``variational``); see the module docstring.

    Methods act on ONE point: :meth:`encode` (standardised mean code), :meth:`encode_stats` (raw mean and
    log-variance), :meth:`decode`, :meth:`reconstruct`.
    """

    encoder: tuple[Dense, ...]
    decoder: tuple[Dense, ...]
    latent_shift: Float[Array, " m"]
    latent_scale: Float[Array, " m"]
    data_dim: int = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)
    variational: bool = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        *,
        key: jax.Array,
        hidden: int = 128,
        depth: int = 2,
        variational: bool = False,
    ):
        self.data_dim = check_positive_int(data_dim, "data_dim")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        hidden = check_positive_int(hidden, "hidden")
        depth = check_positive_int(depth, "depth")
        if self.latent_dim >= self.data_dim:
            raise ValueError(f"`latent_dim` ({latent_dim}) must be smaller than `data_dim` ({data_dim}).")
        self.variational = bool(variational)
        rng = init_rng(key)
        out = 2 * self.latent_dim if self.variational else self.latent_dim
        enc = [self.data_dim] + [hidden] * depth + [out]
        dec = [self.latent_dim] + [hidden] * depth + [self.data_dim]
        self.encoder = tuple(Dense(a, b, rng=rng) for a, b in itertools.pairwise(enc))
        self.decoder = tuple(Dense(a, b, rng=rng) for a, b in itertools.pairwise(dec))
        self.latent_shift = jnp.asarray(np.zeros(self.latent_dim), jnp.result_type(float))
        self.latent_scale = jnp.asarray(np.ones(self.latent_dim), jnp.result_type(float))

    def _check(self, x, n, name):
        if jnp.ndim(x) != 1 or jnp.shape(x)[0] != n:
            raise ValueError(
                f"`{name}` must be one point of shape ({n},) (use encode_batch/decode_batch for "
                f"batches), got shape {jnp.shape(x)}."
            )

    def encode_stats(
        self, x: Float[Array | np.ndarray, " d"]
    ) -> tuple[Float[Array, " m"], Float[Array, " m"]]:
        """Raw (unstandardised) encoder mean and log-variance (zeros for a plain AE)."""
        self._check(x, self.data_dim, "x")
        h = _mlp(self.encoder, x)
        if self.variational:
            mu, logvar = h[: self.latent_dim], h[self.latent_dim :]
            return mu, jnp.clip(logvar, -12.0, 6.0)
        return h, jnp.zeros_like(h)

    def encode(self, x: Float[Array | np.ndarray, " d"]) -> Float[Array, " m"]:
        """Standardised latent code ``(mu(x) - shift) / scale``."""
        mu, _ = self.encode_stats(x)
        return (mu - self.latent_shift) / self.latent_scale

    def decode(self, z: Float[Array | np.ndarray, " m"]) -> Float[Array, " d"]:
        """Image from a standardised code: ``D(shift + scale z)``."""
        self._check(z, self.latent_dim, "z")
        return jnp.tanh(_mlp(self.decoder, self.latent_shift + self.latent_scale * z))

    def reconstruct(self, x: Float[Array | np.ndarray, " d"]) -> Float[Array, " d"]:
        """``decode(encode(x))`` (the mean code, no sampling)."""
        return self.decode(self.encode(x))


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture and training of :func:`train_autoencoder`."""

    latent_dim: int = 8
    hidden: int = 128
    depth: int = 2
    variational: bool = False
    kl_weight: float = 1e-3
    latent_penalty: float = 1e-4
    steps: int = 3000
    batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    grad_clip: float = 1.0

    def __post_init__(self):
        check_positive_int(self.latent_dim, "latent_dim")
        check_positive_int(self.hidden, "hidden")
        check_positive_int(self.depth, "depth")
        check_positive_int(self.steps, "steps")
        check_positive_int(self.batch_size, "batch_size")
        for name in ("kl_weight", "latent_penalty"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be positive, got {self.learning_rate}.")

    def optimiser_config(self) -> TrainConfig:
        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            warmup_steps=self.warmup_steps,
            grad_clip=self.grad_clip,
        )


def _loss(ae: Autoencoder, x: Array, key: jax.Array, config: AutoencoderConfig) -> Array:
    mu, logvar = jax.vmap(ae.encode_stats)(x)
    if ae.variational:
        z = mu + jnp.exp(0.5 * logvar) * jr.normal(key, mu.shape, mu.dtype)
        reg = (
            config.kl_weight
            * jnp.mean(0.5 * jnp.sum(jnp.exp(logvar) + mu**2 - 1.0 - logvar, axis=-1))
            / ae.latent_dim
        )
    else:
        z = mu
        reg = config.latent_penalty * jnp.mean(jnp.sum(mu**2, axis=-1)) / ae.latent_dim
    rec = jax.vmap(lambda zi: jnp.tanh(_mlp(ae.decoder, zi)))(z)
    return jnp.mean((rec - x) ** 2) + reg


@eqx.filter_jit
def _ae_step(ae, opt_state, data, key, step, config: AutoencoderConfig):
    opt = make_optimizer(config.optimiser_config())
    k = jr.fold_in(key, step)
    kb, kz = jr.split(k)
    x = data[jr.randint(kb, (config.batch_size,), 0, data.shape[0])]
    loss, grads = eqx.filter_value_and_grad(_loss)(ae, x, kz, config)
    updates, opt_state = opt.update(grads, opt_state, eqx.filter(ae, eqx.is_inexact_array))
    return eqx.apply_updates(ae, updates), opt_state, loss


def _standardise(ae: Autoencoder, data: Array) -> Autoencoder:
    mu = jax.vmap(lambda x: ae.encode_stats(x)[0])(data)
    shift = jnp.mean(mu, axis=0)
    scale = jnp.maximum(jnp.std(mu, axis=0), 1e-6)
    return eqx.tree_at(lambda a: (a.latent_shift, a.latent_scale), ae, (shift, scale))


def train_autoencoder(
    data: Float[ArrayLike, "N d"],
    config: AutoencoderConfig | None = None,
    *,
    key: jax.Array,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[Autoencoder, np.ndarray]:
    """Train an :class:`Autoencoder` on ``data`` (``(N, d)``, images in ``[-1, 1]``); returns the model
    (latent codes standardised on ``data``) and the per-step loss. Deterministic given ``key``.

    With ``cache_dir`` the trained model is stored as ``<cache_dir>/autoencoder-<fingerprint>.eqx``
    (fingerprint of data, config and key) and reloaded next time instead of retrained.
    """
    config = AutoencoderConfig() if config is None else config
    if not isinstance(config, AutoencoderConfig):
        raise TypeError(f"`config` must be an AutoencoderConfig, got {type(config).__name__}.")
    key = check_key(key)
    x = as_float_array(data, "data", ndim=2)
    if x.shape[0] < 2:
        raise ValueError(f"`data` must hold at least two points, got {x.shape[0]}.")
    k_init, k_train = jr.split(key)
    ae = Autoencoder(
        x.shape[1],
        config.latent_dim,
        key=k_init,
        hidden=config.hidden,
        depth=config.depth,
        variational=config.variational,
    )
    ae = jax.tree.map(lambda a: a.astype(x.dtype) if eqx.is_inexact_array(a) else a, ae)
    path = None
    if cache_dir is not None:
        fp = fingerprint(x, asdict(config), key)
        path = Path(cache_dir) / f"autoencoder-{fp}.eqx"
        if path.exists():
            meta = read_checkpoint_meta(path)
            return load_model(path, ae), np.asarray(meta.get("losses", []), float)
    opt = make_optimizer(config.optimiser_config())
    opt_state = opt.init(eqx.filter(ae, eqx.is_inexact_array))
    losses = np.zeros(config.steps)
    steps = range(config.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="autoencoder", leave=False, dynamic_ncols=True)
    for i in steps:
        ae, opt_state, loss = _ae_step(ae, opt_state, x, k_train, jnp.asarray(i), config)
        losses[i] = float(loss)
        if not math.isfinite(losses[i]):
            raise FloatingPointError(f"Autoencoder training stopped: non-finite loss at step {i}.")
    ae = _standardise(ae, x)
    if path is not None:
        save_model(path, ae, {"losses": losses.tolist(), "config": asdict(config)})
    return ae, losses


@eqx.filter_jit
def _encode_many(ae, x):
    return jax.vmap(ae.encode)(x)


@eqx.filter_jit
def _decode_many(ae, z):
    return jax.vmap(ae.decode)(z)


def encode_batch(ae: Autoencoder, x: Float[ArrayLike, "N d"], batch_size: int = 4096) -> Float[Array, "N m"]:
    """Standardised latent codes of a batch."""
    arr = as_float_array(x, "x", ndim=2)
    if arr.shape[1] != ae.data_dim:
        raise ValueError(f"`x` must have shape (N, {ae.data_dim}), got {arr.shape}.")
    return jnp.concatenate(
        [_encode_many(ae, arr[i : i + batch_size]) for i in range(0, arr.shape[0], batch_size)]
    )


def decode_batch(ae: Autoencoder, z: Float[ArrayLike, "N m"], batch_size: int = 4096) -> Float[Array, "N d"]:
    """Images of a batch of standardised codes."""
    arr = as_float_array(z, "z", ndim=2)
    if arr.shape[1] != ae.latent_dim:
        raise ValueError(f"`z` must have shape (N, {ae.latent_dim}), got {arr.shape}.")
    return jnp.concatenate(
        [_decode_many(ae, arr[i : i + batch_size]) for i in range(0, arr.shape[0], batch_size)]
    )


def reconstruction_error(ae: Autoencoder, x: Float[ArrayLike, "N d"]) -> float:
    """Mean squared reconstruction error per coordinate, ``mean |D(E(x)) - x|^2 / d``."""
    arr = as_float_array(x, "x", ndim=2)
    rec = decode_batch(ae, encode_batch(ae, arr))
    return float(jnp.mean((rec - arr) ** 2))
