"""The minibatch AdamW training loop of :func:`diffsim.analysis.probes.train_probe` (one compiled scan over
optax updates of a softmax classifier's layers)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax


def train_probe_scan(probe, x, y, key, steps, batch, lr, wd, noise):
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
