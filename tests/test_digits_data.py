"""Tests for diffsim.data.digits: the 8x8 digits, the MNIST IDX/npz loader, attribute tokens."""

import gzip
import struct

import jax.random as jr
import numpy as np
import pytest
from scipy import ndimage

from diffsim.data.digits import (
    ATTRIBUTES,
    apply_attributes,
    load_digits,
    load_mnist,
    make_attribute_dataset,
    read_idx,
    sample_attribute_tokens,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


# --- 8x8 digits --------------------------------------------------------------------------------------
def test_digits_range_labels_and_split(digits):
    from sklearn.datasets import load_digits as sk

    raw = sk()
    assert digits.train_images.shape[1:] == (8, 8) and digits.train_images.dtype == np.float32
    assert len(digits.train_images) + len(digits.test_images) == 1797
    assert digits.train_images.min() == -1.0 and digits.train_images.max() == 1.0
    assert set(np.unique(digits.train_labels)) == set(range(10)) == set(np.unique(digits.test_labels))
    # the affine map v/8 - 1, checked image by image against scikit-learn's raw grey levels
    all_imgs = np.concatenate([digits.train_images, digits.test_images])
    raw_sorted = {tuple((img / 8.0 - 1.0).ravel().round(6)) for img in raw.images}
    assert all(tuple(img.ravel().round(6)) in raw_sorted for img in all_imgs[:50])
    # stratified: every class has ~20% of its images in the test split
    for c in range(10):
        frac = np.mean(digits.test_labels == c) * len(digits.test_labels) / np.sum(raw.target == c)
        assert abs(frac - 0.2) < 0.01
    x, y = digits.flat("test")
    assert x.shape == (len(digits.test_labels), 64) and y is digits.test_labels


def test_digits_split_is_fixed_and_seeded(digits):
    again = load_digits()
    np.testing.assert_array_equal(again.train_images, digits.train_images)
    np.testing.assert_array_equal(again.test_labels, digits.test_labels)
    other = load_digits(seed=1)
    assert not np.array_equal(other.test_images, digits.test_images)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.5)
    with pytest.raises(ValueError, match="split"):
        digits.flat("validation")


# --- MNIST / IDX -----------------------------------------------------------------------------------
def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write_mnist(tmp_path, gz: bool):
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    ytr = np.array([0, 1, 2, 9, 4], np.uint8)
    xte = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    yte = np.array([7, 3, 5], np.uint8)
    files = {
        "train-images-idx3-ubyte": xtr,
        "train-labels-idx1-ubyte": ytr,
        "t10k-images-idx3-ubyte": xte,
        "t10k-labels-idx1-ubyte": yte,
    }
    for name, arr in files.items():
        payload = _idx_bytes(arr)
        if gz:
            (tmp_path / (name + ".gz")).write_bytes(gzip.compress(payload))
        else:
            (tmp_path / name).write_bytes(payload)
    return xtr, ytr, xte, yte


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_roundtrip(tmp_path, gz):
    xtr, ytr, xte, yte = _write_mnist(tmp_path, gz)
    ds = load_mnist(tmp_path)
    assert ds.image_shape == (28, 28) and ds.n_classes == 10
    np.testing.assert_allclose(ds.train_images, xtr / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(ds.train_labels, ytr)
    np.testing.assert_allclose(ds.test_images, xte / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(ds.test_labels, yte)


def test_read_idx_other_types(tmp_path):
    arr = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    (tmp_path / "a.idx").write_bytes(_idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), arr)


def test_mnist_npz(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=np.arange(4), x_test=x[:2], y_test=np.arange(2))
    ds = load_mnist(tmp_path / "mnist.npz")
    np.testing.assert_allclose(ds.train_images, x / 127.5 - 1.0, atol=1e-6)
    np.savez(tmp_path / "bad.npz", x_train=x)
    with pytest.raises(ValueError, match="y_train"):
        load_mnist(tmp_path / "bad.npz")


def test_mnist_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist(tmp_path / "nowhere")
    _write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_idx_corrupt_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    good = _idx_bytes(np.zeros((2, 3), np.uint8))
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(ValueError, match="expected 6 data bytes"):
        read_idx(tmp_path / "short")
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        read_idx(tmp_path / "missing.idx")


# --- attribute tokens ------------------------------------------------------------------------------
def test_attribute_masks_match_independent_constructions(digits):
    x = digits.train_images[:40]
    n = len(x)
    # each attribute alone, switched on: the changed pixels are exactly the mask
    # (scipy as the independent route)
    on = np.ones((n, 1), np.int32)
    thick = apply_attributes(x, on, ("thickness",))
    np.testing.assert_array_equal(
        thick.images, ndimage.grey_dilation(x, size=(1, 3, 3), mode="constant", cval=-1.0)
    )
    np.testing.assert_array_equal(thick.masks[:, 0], thick.images != x)
    shift = apply_attributes(x, on, ("shift",), shift_pixels=2)
    expected = np.full_like(x, -1.0)
    expected[:, :, 2:] = x[:, :, :-2]
    np.testing.assert_array_equal(shift.images, expected)
    bar = apply_attributes(x, on, ("bar",))
    assert np.all(bar.images[:, 1:7, 0] == 1.0)
    assert not bar.masks[:, 0][:, :, 1:].any() and not bar.masks[:, 0][:, [0, 7], :].any()
    inv = apply_attributes(x, on, ("invert",))
    np.testing.assert_array_equal(inv.images, -x)
    np.testing.assert_array_equal(inv.masks[:, 0], x != 0)
    # switched off: nothing changes, but the counterfactual mask is still reported
    off = apply_attributes(x, 0 * on, ("thickness",))
    np.testing.assert_array_equal(off.images, x)
    np.testing.assert_array_equal(off.masks, thick.masks)


def test_attribute_masks_are_counterfactual_support(digits):
    x = digits.train_images[:30]
    names = ATTRIBUTES
    tok = sample_attribute_tokens(jr.key(0), len(x), len(names))
    batch = apply_attributes(x, tok, names)
    assert batch.alphabet_sizes == (2, 2, 2, 2) and batch.masks.shape == (30, 4, 8, 8)
    for j in range(len(names)):
        flipped = tok.copy()
        flipped[:, j] = 1 - flipped[:, j]
        other = apply_attributes(x, flipped, names)
        np.testing.assert_array_equal(batch.masks[:, j], batch.images != other.images)
    again = make_attribute_dataset(x, jr.key(0), names)
    np.testing.assert_array_equal(again.tokens, tok)
    np.testing.assert_array_equal(again.images, batch.images)


def test_attribute_bad_input(digits):
    x = digits.train_images[:4]
    # images: "N H W" is the annotated contract: the test-time type checker (tests/conftest.py) may reject a
    # flat batch first with a TypeError naming the parameter
    with pytest.raises((ValueError, TypeError), match="shape \\(N, H, W\\)|parameter 'images'"):
        apply_attributes(x.reshape(4, 64), np.zeros((4, 1), int), ("bar",))
    with pytest.raises(ValueError, match="binary"):
        apply_attributes(x, np.full((4, 1), 2), ("bar",))
    with pytest.raises(ValueError, match="tokens"):
        apply_attributes(x, np.zeros((4, 2), int), ("bar",))
    with pytest.raises(ValueError, match="Unknown attribute"):
        apply_attributes(x, np.zeros((4, 1), int), ("colour",))
    with pytest.raises(ValueError, match="shift_pixels"):
        apply_attributes(x, np.zeros((4, 1), int), ("shift",), shift_pixels=8)
