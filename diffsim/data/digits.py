r"""Handwritten digits: scikit-learn's 8x8 set (ships with the package), MNIST from a local path, and
synthetic attribute tokens with known spatial support.

**8x8 digits** (:func:`load_digits`). The 1,797 images of ``sklearn.datasets.load_digits`` (UCI optical
recognition of handwritten digits; grey levels 0..16), mapped affinely to ``[-1, 1]`` by
``x = v / 8 - 1`` (background -1, full ink +1), with a fixed, seeded, class-stratified train/test split.

**MNIST** (:func:`load_mnist`). Nothing is downloaded: pass the path of a directory holding the four
IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each optionally ``.gz``) or of an ``.npz`` file with ``x_train, y_train,
x_test, y_test`` (Keras layout). Grey levels 0..255 map to ``[-1, 1]`` by ``x = v / 127.5 - 1``.
:func:`read_idx` reads one IDX file (LeCun et al. 1998 format: magic ``0x0000 TT NN``, big-endian sizes).

**Attribute tokens** (:func:`apply_attributes`). Binary tokens that change a glyph in a known place,
so that saliency, information maps and concept probes have ground truth:

- ``"thickness"``: grey dilation of the ink (3x3 maximum filter) -- thicker strokes;
- ``"shift"``: move the image ``shift_pixels`` to the right (background enters on the left);
- ``"bar"``: a full-ink vertical bar in a fixed region (the leftmost column(s), rows ``H/8 .. H - H/8``);
- ``"invert"``: intensity inversion ``x -> -x``.

They are applied in that fixed order. The ground-truth mask of attribute ``j`` for an image is the set of
pixels where the image with token ``j`` on differs from the image with token ``j`` off, the other tokens
held at their values (the *counterfactual support*); it is returned whatever the token's value.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
from jaxtyping import Bool, Float, Int

from .._validation import check_key, check_positive_int


__all__ = [
    "ATTRIBUTES",
    "AttributeBatch",
    "ImageDataset",
    "apply_attributes",
    "attribute_masks",
    "load_digits",
    "load_mnist",
    "make_attribute_dataset",
    "read_idx",
    "sample_attribute_tokens",
    "to_unit_interval",
]

ATTRIBUTES = ("thickness", "shift", "bar", "invert")


class ImageDataset(eqx.Module):
    """Images in ``[-1, 1]`` with integer labels, split into train and test.

    ``train_images`` ``(N, H, W)`` float32, ``train_labels`` ``(N,)`` int, same for ``test_*``;
    ``n_classes``; ``name``. :meth:`flat` gives ``(N, H W)`` arrays for the score interface.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    n_classes: int
    name: str

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    @property
    def dim(self) -> int:
        h, w = self.image_shape
        return h * w

    def flat(self, split: str = "train") -> tuple[Float[np.ndarray, "N d"], Int[np.ndarray, " N"]]:
        """``(images (N, H W), labels (N,))`` of ``split`` (``"train"`` or ``"test"``)."""
        if split == "train":
            return self.train_images.reshape(len(self.train_images), -1), self.train_labels
        if split == "test":
            return self.test_images.reshape(len(self.test_images), -1), self.test_labels
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.name}: {len(self.train_images)} train / {len(self.test_images)} test, "
            f"{self.image_shape}, {self.n_classes} classes)"
        )


def to_unit_interval(images: np.ndarray, max_value: float) -> np.ndarray:
    """Map grey levels ``0..max_value`` affinely onto ``[-1, 1]`` (float32)."""
    return (np.asarray(images, np.float32) * (2.0 / max_value) - 1.0).astype(np.float32)


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test = round(test_fraction * idx.size)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train_idx, test_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    return train_idx, test_idx


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 digits in ``[-1, 1]`` (``v / 8 - 1``) with a fixed, class-stratified split.

    The split depends only on ``seed`` and ``test_fraction`` (default: 1,438 train / 359 test images).
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"`test_fraction` must lie in (0, 1), got {test_fraction}.")
    from sklearn.datasets import load_digits as _sk_load

    raw = _sk_load()
    images = to_unit_interval(raw.images, 16.0)
    labels = np.asarray(raw.target, np.int32)
    tr, te = _stratified_split(labels, float(test_fraction), int(seed))
    return ImageDataset(images[tr], labels[tr], images[te], labels[te], 10, "digits8x8")


# =====================================================================================================
# MNIST from a local path
# =====================================================================================================
_IDX_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped when the name ends in ``.gz`` or the content starts with the gzip magic).

    Format: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, then one big-endian uint32 per dimension and the data.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()}).")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{type_code:02x}.")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise ValueError(f"{path}: truncated IDX header.")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header_end])
    dtype = np.dtype(_IDX_TYPES[type_code])
    count = int(np.prod(shape)) if ndim else 1
    if len(raw) - header_end != count * dtype.itemsize:
        raise ValueError(
            f"{path}: expected {count * dtype.itemsize} data bytes for shape {shape}, "
            f"found {len(raw) - header_end}."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, stem: str) -> Path:
    for cand in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / cand).exists():
            return directory / cand
    raise FileNotFoundError(
        f"MNIST file missing: {directory / stem} (or {stem}.gz) not found in {directory}. "
        f"Expected the four files {', '.join(MNIST_FILES.values())} (optionally .gz)."
    )


def load_mnist(path: str | os.PathLike) -> ImageDataset:
    """MNIST (28x28, 60,000 train / 10,000 test) from a local directory of IDX files or an ``.npz`` file.

    Nothing is downloaded. A missing path or file raises ``FileNotFoundError`` naming it.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"MNIST path not found: {path}. Pass a directory with the IDX files "
            f"({', '.join(MNIST_FILES.values())}, optionally .gz) or an .npz file."
        )
    if path.is_file():
        if path.suffix != ".npz":
            raise ValueError(f"{path}: expected a directory of IDX files or an .npz file.")
        with np.load(path) as f:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f]
            if missing:
                raise ValueError(
                    f"{path} lacks the arrays {missing} (expected x_train, y_train, x_test, y_test)."
                )
            arrays = {k: np.asarray(f[k]) for k in ("x_train", "y_train", "x_test", "y_test")}
        xtr, ytr, xte, yte = arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
    else:
        xtr = read_idx(_find_idx(path, MNIST_FILES["train_images"]))
        ytr = read_idx(_find_idx(path, MNIST_FILES["train_labels"]))
        xte = read_idx(_find_idx(path, MNIST_FILES["test_images"]))
        yte = read_idx(_find_idx(path, MNIST_FILES["test_labels"]))
    for name, img, lab in (("train", xtr, ytr), ("test", xte, yte)):
        if img.ndim != 3:
            raise ValueError(f"MNIST {name} images must have shape (N, H, W), got {img.shape}.")
        if lab.shape != (img.shape[0],):
            raise ValueError(f"MNIST {name} labels must have shape ({img.shape[0]},), got {lab.shape}.")
    n_classes = int(max(ytr.max(initial=0), yte.max(initial=0))) + 1
    return ImageDataset(
        to_unit_interval(xtr, 255.0),
        ytr.astype(np.int32),
        to_unit_interval(xte, 255.0),
        yte.astype(np.int32),
        n_classes,
        "mnist",
    )


# =====================================================================================================
# attribute tokens with known spatial support
# =====================================================================================================
class AttributeBatch(eqx.Module):
    """Images with attribute tokens and their ground-truth support.

    - ``images``: ``(N, H, W)`` modified images in ``[-1, 1]``;
    - ``tokens``: ``(N, A)`` int, the value (0 off, 1 on) of each attribute;
    - ``masks``: ``(N, A, H, W)`` bool, pixels that attribute ``j`` changes for that image
      (counterfactual support, see the module docstring);
    - ``names``: the attribute names (``A`` of them); ``alphabet_sizes``: ``(2,) * A``.
    """

    images: np.ndarray
    tokens: np.ndarray
    masks: np.ndarray
    names: tuple[str, ...]

    @property
    def alphabet_sizes(self) -> tuple[int, ...]:
        return (2,) * len(self.names)


def _check_images(images, name="images") -> np.ndarray:
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"`{name}` must have shape (N, H, W), got {arr.shape}.")
    if arr.shape[1] < 4 or arr.shape[2] < 4:
        raise ValueError(f"`{name}` must be at least 4x4 images, got {arr.shape[1:]}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains non-finite values.")
    return arr


def _check_names(names) -> tuple[str, ...]:
    names = tuple(names)
    if not names:
        raise ValueError("`attributes` must name at least one attribute.")
    for n in names:
        if n not in ATTRIBUTES:
            raise ValueError(f"Unknown attribute {n!r}; known attributes: {ATTRIBUTES}.")
    if len(set(names)) != len(names):
        raise ValueError(f"`attributes` contains repeats: {names}.")
    return names


def _dilate(x: np.ndarray) -> np.ndarray:
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=-1.0)
    h, w = x.shape[1:]
    out = x.copy()
    for di in range(3):
        for dj in range(3):
            out = np.maximum(out, pad[:, di : di + h, dj : dj + w])
    return out


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, -1.0)
    out[:, :, k:] = x[:, :, :-k]
    return out


def _bar_region(h: int, w: int) -> tuple[slice, slice]:
    m = max(1, h // 8)
    return slice(m, h - m), slice(0, max(1, w // 8))


def _apply(x: np.ndarray, on: dict[str, np.ndarray], shift_pixels: int) -> np.ndarray:
    """Apply the attributes in the fixed order; ``on[name]`` is a boolean per image."""
    x = x.copy()
    if "thickness" in on:
        x = np.where(on["thickness"][:, None, None], _dilate(x), x)
    if "shift" in on:
        x = np.where(on["shift"][:, None, None], _shift(x, shift_pixels), x)
    if "bar" in on:
        rows, cols = _bar_region(*x.shape[1:])
        barred = x.copy()
        barred[:, rows, cols] = 1.0
        x = np.where(on["bar"][:, None, None], barred, x)
    if "invert" in on:
        x = np.where(on["invert"][:, None, None], -x, x)
    return x


def apply_attributes(
    images: Float[np.ndarray, "N H W"],
    tokens: Int[np.ndarray, "N A"],
    attributes: Sequence[str] = ("thickness", "bar"),
    *,
    shift_pixels: int = 1,
) -> AttributeBatch:
    """Apply binary attribute ``tokens`` (column ``j`` for ``attributes[j]``) to ``images`` in ``[-1, 1]``.

    Returns an :class:`AttributeBatch` with the modified images, the tokens and, for every attribute,
    the mask of pixels where switching that token changes the image (others held fixed).
    """
    x = _check_images(images)
    names = _check_names(attributes)
    tok = np.asarray(tokens)
    if tok.shape != (x.shape[0], len(names)):
        raise ValueError(f"`tokens` must have shape ({x.shape[0]}, {len(names)}), got {tok.shape}.")
    if not np.issubdtype(tok.dtype, np.integer) or np.any((tok != 0) & (tok != 1)):
        raise ValueError("`tokens` must hold binary integer values (0 off, 1 on).")
    shift_pixels = check_positive_int(shift_pixels, "shift_pixels")
    if shift_pixels >= x.shape[2]:
        raise ValueError(
            f"`shift_pixels` must be smaller than the image width {x.shape[2]}, got {shift_pixels}."
        )
    on = {n: tok[:, j].astype(bool) for j, n in enumerate(names)}
    out = _apply(x, on, shift_pixels)
    masks = np.zeros((x.shape[0], len(names)) + x.shape[1:], bool)
    for j, n in enumerate(names):
        with_j = _apply(x, {**on, n: np.ones(x.shape[0], bool)}, shift_pixels)
        without_j = _apply(x, {**on, n: np.zeros(x.shape[0], bool)}, shift_pixels)
        masks[:, j] = with_j != without_j
    return AttributeBatch(out.astype(np.float32), tok.astype(np.int32), masks, names)


def attribute_masks(
    images: Float[np.ndarray, "N H W"],
    tokens: Int[np.ndarray, "N A"],
    attributes: Sequence[str] = ("thickness", "bar"),
    *,
    shift_pixels: int = 1,
) -> Bool[np.ndarray, "N A H W"]:
    """The ground-truth masks of :func:`apply_attributes` alone."""
    return apply_attributes(images, tokens, attributes, shift_pixels=shift_pixels).masks


def sample_attribute_tokens(
    key: jax.Array, n: int, n_attributes: int, p: float | Sequence[float] = 0.5
) -> Int[np.ndarray, "n A"]:
    """Independent Bernoulli(``p``) tokens, shape ``(n, n_attributes)`` (``p`` scalar or per attribute)."""
    key = check_key(key)
    n = check_positive_int(n, "n")
    a = check_positive_int(n_attributes, "n_attributes")
    probs = np.broadcast_to(np.asarray(p, float), (a,))
    if np.any((probs < 0) | (probs > 1)):
        raise ValueError(f"`p` must lie in [0, 1], got {p}.")
    u = np.asarray(jr.uniform(key, (n, a)))
    return (u < probs[None, :]).astype(np.int32)


def make_attribute_dataset(
    images: Float[np.ndarray, "N H W"],
    key: jax.Array,
    attributes: Sequence[str] = ("thickness", "bar"),
    *,
    p: float = 0.5,
    shift_pixels: int = 1,
) -> AttributeBatch:
    """Draw Bernoulli(``p``) tokens for every image and apply them (:func:`apply_attributes`)."""
    x = _check_images(images)
    names = _check_names(attributes)
    tok = sample_attribute_tokens(key, x.shape[0], len(names), p)
    return apply_attributes(x, tok, names, shift_pixels=shift_pixels)
