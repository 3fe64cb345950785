"""Tests for diffsim.data.autoencoder: training, standardised latent codes, cache, bad input."""

import chex
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from diffsim.data.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    decode_batch,
    encode_batch,
    reconstruction_error,
    train_autoencoder,
)
from diffsim.data.digits import load_digits


CFG = AutoencoderConfig(latent_dim=8, hidden=64, steps=400, batch_size=128, learning_rate=3e-3)


@pytest.fixture(scope="module")
def digits():
    ds = load_digits()
    return ds.flat("train")[0], ds.flat("test")[0]  # float32, as studies use them


@pytest.fixture(scope="module")
def trained(digits):
    return train_autoencoder(digits[0], CFG, key=jr.key(0), progress=False)


def test_autoencoder_reconstructs_held_out_digits(digits, trained):
    """Independent reference: the best LINEAR 8-d code (PCA fitted on the training digits). After 400 steps
    the autoencoder's held-out MSE must be within 10% of it or better (measured: 0.086 vs PCA 0.098, and
    0.29 for the mean image)."""
    x_train, x_test = digits
    ae, losses = trained
    assert losses.shape == (CFG.steps,) and np.all(np.isfinite(losses))
    assert losses[-20:].mean() < 0.3 * losses[:20].mean()
    mean = x_train.mean(0)
    _, _, vt = np.linalg.svd(x_train - mean, full_matrices=False)
    resid = (x_test - mean) - (x_test - mean) @ vt[:8].T @ vt[:8]
    pca_err = float(np.mean(resid**2))
    err = reconstruction_error(ae, x_test)
    assert err < 1.1 * pca_err, (err, pca_err)


def test_latents_are_standardised_and_decode_inverts(digits, trained):
    x_train, _ = digits
    ae, _ = trained
    z = encode_batch(ae, x_train)
    assert z.shape == (len(x_train), 8)
    chex.assert_trees_all_close(jnp.mean(z, 0), jnp.zeros(8), atol=1e-5)
    chex.assert_trees_all_close(jnp.std(z, 0), jnp.ones(8), rtol=1e-5)
    rec = decode_batch(ae, z[:5])
    chex.assert_trees_all_close(
        rec, jnp.stack([ae.reconstruct(x) for x in x_train[:5]]), rtol=1e-5, atol=1e-6
    )
    assert float(jnp.max(jnp.abs(rec))) <= 1.0  # tanh output stays in the data range


def test_training_is_deterministic_and_cached(tmp_path, digits, trained):
    """Same data, config and key as the fixture: retraining is bit-identical, and a second call with a
    cache directory loads the stored model instead of training."""
    x = digits[0]
    ae0, l0 = trained
    a, la = train_autoencoder(x, CFG, key=jr.key(0), cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(la, l0)
    np.testing.assert_array_equal(np.asarray(encode_batch(a, x)), np.asarray(encode_batch(ae0, x)))
    assert len(list(tmp_path.glob("autoencoder-*.eqx"))) == 1
    b, lb = train_autoencoder(x, CFG, key=jr.key(0), cache_dir=tmp_path, progress=False)  # from the cache
    np.testing.assert_array_equal(lb, l0)
    np.testing.assert_array_equal(np.asarray(encode_batch(b, x)), np.asarray(encode_batch(ae0, x)))
    c, _ = train_autoencoder(x, CFG, key=jr.key(5), progress=False)  # another key: another model
    assert not np.array_equal(np.asarray(encode_batch(c, x[:5])), np.asarray(encode_batch(ae0, x[:5])))


def test_variational_autoencoder(digits):
    x = digits[0][:300]
    cfg = AutoencoderConfig(latent_dim=3, hidden=16, depth=1, steps=30, variational=True, kl_weight=0.1)
    ae, losses = train_autoencoder(x, cfg, key=jr.key(2), progress=False)
    assert ae.variational and np.all(np.isfinite(losses))
    mu, logvar = ae.encode_stats(jnp.asarray(x[0]))
    assert mu.shape == logvar.shape == (3,)
    assert encode_batch(ae, x).shape == (300, 3)


def test_bad_input(trained):
    ae, _ = trained
    with pytest.raises(ValueError, match="latent_dim"):
        Autoencoder(8, 8, key=jr.key(0))
    with pytest.raises(ValueError, match=r"shape \(64,\)"):
        ae.encode(jnp.zeros(63))
    with pytest.raises(ValueError, match=r"shape \(N, 8\)"):
        decode_batch(ae, jnp.zeros((2, 7)))
    with pytest.raises(ValueError, match=r"shape \(N, 64\)"):
        encode_batch(ae, jnp.zeros((2, 8, 8)).reshape(2, 64)[:, :32])
    with pytest.raises(ValueError, match="latent_dim"):
        AutoencoderConfig(latent_dim=0)
    # data: "N d" is the annotated contract: the test-time type checker (tests/conftest.py) may reject a 1-D
    # array first with a TypeError naming the parameter
    with pytest.raises((ValueError, TypeError), match="2 dimensions|parameter 'data'"):
        train_autoencoder(np.zeros(10), CFG, key=jr.key(0), progress=False)
