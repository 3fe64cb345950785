r"""Matrix-free ridge geometry: the normal space of ``\nabla^2 log p_t`` from Hessian-vector products.

The Hessian of ``log p_t`` is the Jacobian of the score, so ``H v = d/de score(t, x + e v)`` is one
forward-mode product, ``jax.jvp(lambda y: score(t, y), (x,), (v,))[1]``, at the cost of about one score
evaluation and without forming ``H``. The ``k``-ridge (Genovese et al. 2014, Ann. Statist. 42:1511;
Ozertem & Erdogmus 2011, JMLR 12:1249) needs the normal space spanned by the ``D - k`` most negative
eigenvectors. In high dimension ``D - k`` is close to ``D``, so the normal space is never stored: it is the
orthogonal complement of the *tangent* space ``V_k = [v_1, ..., v_k]`` of the ``k`` algebraically largest
eigenvalues, ``P_perp = I - V_k V_k^T``, which costs ``O(D k)`` memory.

**Algorithm: block Lanczos with full reorthogonalisation and Rayleigh-Ritz** (Golub & Van Loan, Matrix
Computations, sec. 10.3; Saad, Numerical Methods for Large Eigenvalue Problems, ch. 6). Starting from the
block ``[g, z_1, ..., z_{b-1}]`` (the score ``g`` and ``b - 1`` Gaussian columns drawn from the explicit
key, orthonormalised by QR), each of ``m`` iterations applies ``H`` to the newest block of ``b`` columns
(``b`` HVPs, batched by ``vmap`` of one linearisation), orthogonalises the result against *every* basis
vector so far (classical Gram-Schmidt twice, then once more after the QR, so the basis stays orthonormal to
rounding even when the Krylov space becomes invariant) and appends it. The Rayleigh-Ritz matrix
``T = Q^T H Q`` (``n x n``, ``n = m b``) is assembled from the stored products ``H Q`` (not from a
three-term recurrence), symmetrised, and diagonalised; Ritz pairs ``(theta_j, Q s_j)`` approximate the
eigenpairs. Why block Lanczos rather than subspace iteration: Lanczos converges to *both* ends of the
spectrum at once (the top ``k + 1`` eigenvalues and ``lambda_D`` for the relative gap come from one run),
at a rate set by the gaps relative to the spread rather than by ratios ``lambda_{k+1} / lambda_k`` (which
subspace iteration would need a shift to make smaller than one for negative eigenvalues); the block
(``b >= k + 1`` by default) resolves repeated eigenvalues that single-vector Lanczos cannot see, and its
``b`` HVPs per iteration run as one batched call. Full reorthogonalisation costs ``O(D n^2)`` flops, tiny
against ``n`` score evaluations for the ``n <= ~100`` used here. With ``n = D`` the basis spans the whole
space and the result equals the dense eigendecomposition to rounding.

**Newton distance.** Because ``g`` is in the basis, ``g = sum_j c_j y_j`` over all Ritz vectors ``y_j``
and the Newton distance ``|Lambda_perp^{-1} V_perp^T g|`` is approximated by the Galerkin solution
``(sum_{j > k} (c_j / theta_j)^2)^{1/2}``: the normal Hessian solved on the Krylov space, the block
analogue of conjugate gradients, exact when the normal spectrum has few distinct values (the diffused
mixtures and empirical distributions: ``H = -I / c + `` low rank) and converging at CG's rate otherwise.
The residual ``|P_perp g| = |g - V_k V_k^T g|`` needs only the tangent basis.

**Cost and memory per point.** One linearisation of the score plus ``n = num_iter * block_size`` HVPs
(each about one score evaluation in forward mode), ``O(D n^2)`` flops of orthogonalisation and an
``n x n`` eigendecomposition; memory ``2 D n`` floats for ``Q`` and ``H Q`` plus ``D (k + 1)`` for the
Ritz vectors: ``O(D k)`` for a fixed number of iterations. No ``D x D`` array is formed.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from ..._validation import as_float_array, check_key, check_point, check_positive_int
from ...scores._base import AbstractAnalyticScore, AbstractScore
from ._geometry import (
    SCMSResult,
    _check_intrinsic_dim,
    _check_points,
    _check_score,
    _check_t,
    _check_threshold,
    _unbatch,
)


_MODES = ("auto", "forward", "reverse", "symmetric")


# =====================================================================================================
# validation
# =====================================================================================================
def _check_mode(mode, score=None) -> str:
    """The Hessian-vector product mode; ``"auto"`` is ``"forward"`` for a score with a closed-form
    density (an exact gradient field: its Jacobian is symmetric) and ``"symmetric"`` for any other score
    (a learned score is not a gradient field: its Jacobian ``J`` is not symmetric, and the Hessian estimate
    is the symmetric part ``(J + J^T) / 2``, which is also what the dense route's ``eigh`` reads)."""
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of {_MODES}, got {mode!r}.")
    if mode == "auto":
        return "forward" if isinstance(score, AbstractAnalyticScore) else "symmetric"
    return mode


def _check_num_eigs(n, d: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"`num_eigs` must be an integer, got {type(n).__name__}.")
    if not 1 <= int(n) <= d - 1:
        raise ValueError(f"`num_eigs` must lie in [1, d - 1] = [1, {d - 1}], got {n}.")
    return int(n)


def _krylov_sizes(d: int, keep: int, block_size, num_iter) -> tuple[int, int]:
    """``(block_size, num_iter)``: defaults ``b = keep + 1`` (``g`` plus ``keep`` random columns) and a
    basis of about ``max(64, 4 b)`` vectors, never more than ``d``."""
    if block_size is None:
        block_size = min(keep + 1, d)
    block_size = check_positive_int(block_size, "block_size")
    if block_size > d:
        raise ValueError(f"`block_size` must be <= d = {d}, got {block_size}.")
    if num_iter is None:
        num_iter = max(1, min(d // block_size, math.ceil(max(64, 4 * block_size) / block_size)))
    num_iter = check_positive_int(num_iter, "num_iter")
    n = num_iter * block_size
    if n > d:
        raise ValueError(
            f"`num_iter * block_size` = {num_iter} * {block_size} = {n} exceeds d = {d}: the Krylov basis "
            f"cannot hold more than d orthonormal vectors (use num_iter <= {d // block_size})."
        )
    if n < keep + 1:
        raise ValueError(
            f"`num_iter * block_size` = {n} must be >= {keep + 1} (the eigenpairs needed plus one); "
            "increase `num_iter` or `block_size`."
        )
    return block_size, num_iter


def _prepare(score, t, x, key, mode):
    _check_score(score)
    t = _check_t(score, t)
    pts, single = _check_points(x, score.dim)
    key = check_key(key)
    mode = _check_mode(mode, score)
    keys = jax.vmap(lambda i: jr.fold_in(key, i))(jnp.arange(pts.shape[0]))
    return t.astype(pts.dtype), pts, single, keys, mode


# =====================================================================================================
# Hessian-vector products and block Lanczos (one point)
# =====================================================================================================
def _linearise(score, t, x, mode: str):
    """``(g, matvec)``: the score at ``x`` and ``V -> H V`` on a ``(D, b)`` block (columns batched by vmap
    of one linearisation; ``mode="reverse"`` uses the VJP, equal for a symmetric Jacobian)."""

    def fn(y):
        return score.score(t, y)

    if mode == "forward":
        g, lin = jax.linearize(fn, x)
        return g, jax.vmap(lin, in_axes=1, out_axes=1)
    if mode == "reverse":
        g, pullback = jax.vjp(fn, x)
        return g, jax.vmap(lambda v: pullback(v)[0], in_axes=1, out_axes=1)
    g, lin = jax.linearize(fn, x)
    lin_t = jax.linear_transpose(lin, x)
    return g, jax.vmap(lambda v: 0.5 * (lin(v) + lin_t(v)[0]), in_axes=1, out_axes=1)


def _orthonormalise_against(basis, block):
    """Block orthogonal to ``basis`` (zero columns of ``basis`` are inert) and orthonormal within."""
    block = block - basis @ (basis.T @ block)
    block = block - basis @ (basis.T @ block)
    q, _ = jnp.linalg.qr(block)
    q = q - basis @ (basis.T @ q)  # once more after QR: directions that were pure rounding stay orthogonal
    q, _ = jnp.linalg.qr(q)
    return q


def _block_lanczos(matvec, start, num_iter: int):
    """Orthonormal block-Krylov basis ``Q`` (``D x n``) of ``matvec`` from ``start`` (``D x b``) and the
    products ``H Q``, with full reorthogonalisation, in one ``lax.fori_loop`` of ``num_iter`` steps."""
    d, b = start.shape
    n = num_iter * b
    q0, _ = jnp.linalg.qr(start)
    basis = jnp.zeros((d, n), start.dtype)
    basis = jax.lax.dynamic_update_slice_in_dim(basis, q0, 0, axis=1)
    products = jnp.zeros((d, n), start.dtype)

    def body(j, carry):
        basis, products = carry
        block = jax.lax.dynamic_slice_in_dim(basis, j * b, b, axis=1)
        w = matvec(block)
        products = jax.lax.dynamic_update_slice_in_dim(products, w, j * b, axis=1)
        nxt = _orthonormalise_against(basis, w)
        start_col = jnp.minimum((j + 1) * b, n - b)
        updated = jax.lax.dynamic_update_slice_in_dim(basis, nxt, start_col, axis=1)
        basis = jnp.where(j + 1 < num_iter, updated, basis)
        return basis, products

    return jax.lax.fori_loop(0, num_iter, body, (basis, products))


class _Ritz(eqx.Module):
    eigvals: Float[Array, " n"]  # all Ritz values, descending
    eigvecs: Float[Array, "D keep"]  # the top ``keep`` Ritz vectors
    residuals: Float[Array, " keep"]  # |H y - theta y| of those
    coefficients: Float[Array, " n"]  # y_j^T g for every Ritz vector
    gradient: Float[Array, " D"]


def _ritz_point(score, t, x, key, keep: int, block_size: int, num_iter: int, mode: str) -> _Ritz:
    g, matvec = _linearise(score, t, x, mode)
    noise = jr.normal(key, (x.shape[0], block_size - 1), dtype=x.dtype)
    start = jnp.concatenate([g[:, None], noise], axis=1)
    basis, products = _block_lanczos(matvec, start, num_iter)
    small = basis.T @ products
    small = 0.5 * (small + small.T)  # Rayleigh-Ritz of the symmetric part of the Jacobian
    theta, rot = jnp.linalg.eigh(small)
    theta, rot = theta[::-1], rot[:, ::-1]
    top = rot[:, :keep]
    vecs = basis @ top
    residuals = jnp.linalg.norm(products @ top - vecs * theta[None, :keep], axis=0)
    coefficients = rot.T @ (basis.T @ g)
    return _Ritz(theta, vecs, residuals, coefficients, g)


# =====================================================================================================
# public: HVP and top eigenpairs
# =====================================================================================================
@eqx.filter_jit
def _hvp(score, t, x, v, mode):
    _, matvec = _linearise(score, t, x, mode)
    return matvec(v)


def hessian_vector_product(
    score: AbstractScore,
    t: ArrayLike,
    x: Float[ArrayLike, "*N D"],
    v: Float[ArrayLike, " D *m"],
    *,
    mode: str = "auto",
) -> Float[Array, " D *m"]:
    r"""``\nabla^2 log p_t(x) v`` at ONE point without forming the Hessian: the Jacobian of the score
    applied to ``v``, ``jax.jvp(lambda y: score(t, y), (x,), (v,))[1]``.

    Args:
        score: any diffsim score.
        t: forward time ``t > 0``.
        x: one point, shape ``(D,)`` (a batch is an error: ``vmap`` this function).
        v: one direction ``(D,)`` or a block of directions ``(D, m)`` (columns).
        mode: ``"auto"`` (default: ``"forward"`` for closed-form scores, ``"symmetric"`` otherwise),
            ``"symmetric"`` (``(J v + J^T v) / 2``: the Hessian estimate of a learned score, whose Jacobian
            ``J`` is not symmetric), ``"forward"`` (JVP) or ``"reverse"`` (VJP ``v^T J``: the same for a
            gradient field,
            and the route for scores that support only reverse mode, e.g. a PyTorch adapter).
    """
    _check_score(score)
    t = _check_t(score, t)
    arr = as_float_array(x, "x", ndim=(1, 2))
    check_point(arr, score.dim, "x")
    vec = as_float_array(v, "v", ndim=(1, 2))
    if vec.shape[0] != score.dim:
        raise ValueError(f"`v` must have shape ({score.dim},) or ({score.dim}, m), got {vec.shape}.")
    mode = _check_mode(mode, score)
    block = vec[:, None] if vec.ndim == 1 else vec
    out = _hvp(score, t.astype(arr.dtype), arr, block.astype(arr.dtype), mode)
    return out[:, 0] if vec.ndim == 1 else out


@eqx.filter_jit
def _top_spectra(score, t, pts, keys, keep, block_size, num_iter, mode):
    def one(xi, ki):
        ritz = _ritz_point(score, t, xi, ki, keep, block_size, num_iter, mode)
        return ritz.eigvals[:keep], ritz.eigvecs

    return jax.vmap(one)(pts, keys)


def hessian_spectrum_matrix_free(
    score: AbstractScore,
    t: ArrayLike,
    x: Float[ArrayLike, "*N D"],
    num_eigs: int,
    *,
    key: PRNGKeyArray,
    block_size: int | None = None,
    num_iter: int | None = None,
    mode: str = "auto",
) -> tuple[Float[Array, "*N k"], Float[Array, "*N D k"]]:
    r"""The ``num_eigs`` algebraically largest eigenvalues (descending) and eigenvectors (columns) of
    ``\nabla^2 log p_t`` at each point, by block Lanczos on Hessian-vector products (module docstring):
    the matrix-free counterpart of :func:`hessian_spectrum` (whose leading ``num_eigs`` entries it
    approximates), in ``O(D (num_eigs + num_iter * block_size))`` memory and
    ``num_iter * block_size`` HVPs per point.

    Args:
        score: any diffsim score.
        t: forward time ``t > 0``.
        x: points ``(N, D)`` or one point ``(D,)``.
        num_eigs: how many eigenpairs, ``1 <= num_eigs <= D - 1``.
        key: PRNG key of the random start block; point ``i`` of a batch uses ``fold_in(key, i)``.
        block_size: columns per Lanczos block (default ``num_eigs + 1``: the score and ``num_eigs``
            random columns). It must be at least the multiplicity of any repeated eigenvalue wanted.
        num_iter: block iterations (default: a basis of about ``max(64, 4 block_size)`` vectors, at most
            ``D``); ``num_iter * block_size <= D``.
        mode: ``"auto"`` (default: ``"forward"`` for closed-form scores, ``"symmetric"`` ``(J + J^T) / 2``
            for learned ones), ``"forward"`` (JVP), ``"reverse"`` (VJP) or ``"symmetric"`` products.
    """
    _check_score(score)
    keep = _check_num_eigs(num_eigs, score.dim)
    b, m = _krylov_sizes(score.dim, keep, block_size, num_iter)
    t, pts, single, keys, mode = _prepare(score, t, x, key, mode)
    return _unbatch(_top_spectra(score, t, pts, keys, keep, b, m, mode), single)


# =====================================================================================================
# public: ridge geometry
# =====================================================================================================
class MatrixFreeRidgeGeometry(eqx.Module):
    r"""Local ridge geometry from :func:`ridge_geometry_matrix_free` (leading axes ``...``). The fields
    shared with :class:`RidgeGeometry` mean the same; the spectrum is kept only where it is ``O(D k)``.
    The normal space is the complement of ``tangent_basis``: :func:`decompose_matrix_free` splits vectors
    with it.

    Attributes:
        top_eigvals: ``(..., k + 1)`` the top Hessian eigenvalues, descending.
        top_eigvecs: ``(..., D, k + 1)`` their eigenvectors (columns).
        smallest_eigval: ``(...)`` ``lambda_D`` (the scale of the relative gap and of the SCMS step).
        ritz_residual: ``(..., k + 1)`` ``|H y_j - theta_j y_j|`` of the top Ritz pairs (a converged pair
            has a residual small against the gap).
        gradient: ``(..., D)`` ``\nabla log p_t``.
        gap: ``(...)`` ``lambda_k - lambda_{k+1}``.
        relative_gap: ``(...)`` ``gap / |lambda_D|``.
        curvature: ``(...)`` ``lambda_{k+1}``.
        valid: ``(...)`` eigengap above threshold and ``lambda_{k+1} < 0``.
        residual: ``(...)`` ``|P_perp g|``, NaN where not ``valid``.
        newton_distance: ``(...)`` the one-step Newton distance to the ridge, NaN where not ``valid``.
        intrinsic_dim: the ridge dimension ``k``.
    """

    top_eigvals: Float[Array, "... K"]
    top_eigvecs: Float[Array, "... D K"]
    smallest_eigval: Float[Array, ...]
    ritz_residual: Float[Array, "... K"]
    gradient: Float[Array, "... D"]
    gap: Float[Array, ...]
    relative_gap: Float[Array, ...]
    curvature: Float[Array, ...]
    valid: Bool[Array, ...]
    residual: Float[Array, ...]
    newton_distance: Float[Array, ...]
    intrinsic_dim: int = eqx.field(static=True)

    @property
    def tangent_basis(self) -> Float[Array, "... D k"]:
        """Eigenvectors of the ``k`` largest eigenvalues (the normal space is their complement)."""
        return self.top_eigvecs[..., :, : self.intrinsic_dim]


def _geometry_from_ritz(ritz: _Ritz, k: int, thr, relative: bool) -> MatrixFreeRidgeGeometry:
    theta, g = ritz.eigvals, ritz.gradient
    gap = theta[k - 1] - theta[k]
    smallest = theta[-1]
    scale = jnp.abs(smallest)
    rel_gap = gap / jnp.where(scale > 0, scale, 1.0)
    curv = theta[k]
    finite = jnp.all(jnp.isfinite(theta)) & jnp.all(jnp.isfinite(g))
    valid = ((rel_gap if relative else gap) > thr) & (curv < 0) & finite
    tangent = ritz.eigvecs[:, :k]
    normal_part = g - tangent @ (tangent.T @ g)
    safe = jnp.where(valid, theta[k:], -1.0)
    nan = jnp.asarray(jnp.nan, g.dtype)
    residual = jnp.where(valid, jnp.linalg.norm(normal_part), nan)
    newton = jnp.where(valid, jnp.linalg.norm(ritz.coefficients[k:] / safe), nan)
    return MatrixFreeRidgeGeometry(
        theta[: k + 1],
        ritz.eigvecs,
        smallest,
        ritz.residuals,
        g,
        gap,
        rel_gap,
        curv,
        valid,
        residual,
        newton,
        k,
    )


@eqx.filter_jit
def _geometries(score, t, pts, keys, k, thr, relative, block_size, num_iter, mode):
    def one(xi, ki):
        ritz = _ritz_point(score, t, xi, ki, k + 1, block_size, num_iter, mode)
        return _geometry_from_ritz(ritz, k, thr, relative)

    return jax.vmap(one)(pts, keys)


def ridge_geometry_matrix_free(
    score: AbstractScore,
    t: ArrayLike,
    x: Float[ArrayLike, "*N D"],
    intrinsic_dim: int,
    *,
    key: PRNGKeyArray,
    gap_threshold: float = 1e-2,
    relative_gap: bool = True,
    block_size: int | None = None,
    num_iter: int | None = None,
    mode: str = "auto",
) -> MatrixFreeRidgeGeometry:
    r"""Ridge geometry of the ``intrinsic_dim``-ridge of ``log p_t`` from Hessian-vector products: the
    matrix-free counterpart of :func:`ridge_geometry` (same gap, mask, residual ``|P_perp g|`` and
    Newton distance ``|Lambda_perp^{-1} V_perp^T g|``, NaN where not ``valid``), with
    ``P_perp = I - V_k V_k^T`` built from the top ``k`` Ritz vectors. Memory ``O(D (k + n))`` and
    ``n = num_iter * block_size`` HVPs per point (module docstring); no ``D x D`` array.

    Args:
        score: any diffsim score.
        t: forward time ``t > 0``.
        x: points ``(N, D)`` or one point ``(D,)``.
        intrinsic_dim: ridge dimension ``k``, ``1 <= k <= D - 1``.
        key: PRNG key of the random start block; point ``i`` of a batch uses ``fold_in(key, i)``.
        gap_threshold: mask threshold on ``lambda_k - lambda_{k+1}`` (relative to ``|lambda_D|`` when
            ``relative_gap``), as in :func:`ridge_geometry`.
        relative_gap: compare the relative (default) or the absolute gap with ``gap_threshold``.
        block_size: columns per Lanczos block (default ``k + 2``: the score and ``k + 1`` random columns).
        num_iter: block iterations (default: a basis of about ``max(64, 4 block_size)`` vectors, at most
            ``D``); ``num_iter * block_size <= D``.
        mode: ``"auto"`` (default: ``"forward"`` for closed-form scores, ``"symmetric"`` ``(J + J^T) / 2``
            for learned ones), ``"forward"`` (JVP), ``"reverse"`` (VJP) or ``"symmetric"`` products.
    """
    _check_score(score)
    k = _check_intrinsic_dim(intrinsic_dim, score.dim)
    b, m = _krylov_sizes(score.dim, k + 1, block_size, num_iter)
    thr = _check_threshold(gap_threshold)
    t, pts, single, keys, mode = _prepare(score, t, x, key, mode)
    dt = pts.dtype
    geo = _geometries(score, t, pts, keys, k, jnp.asarray(thr, dt), bool(relative_gap), b, m, mode)
    return _unbatch(geo, single)


def decompose_matrix_free(
    vectors: Float[ArrayLike, "... D"], tangent_basis: Float[ArrayLike, "... D k"]
) -> tuple[Float[Array, ...], Float[Array, ...]]:
    """Norms of the normal part ``|u - V_k V_k^T u|`` and of the tangent part ``|V_k^T u|`` of each
    vector (e.g. a displacement), from the tangent basis of :class:`MatrixFreeRidgeGeometry`: the
    counterpart of :func:`decompose`, which takes the normal basis, in ``O(D k)``.

    Args:
        vectors: vectors ``(..., D)``.
        tangent_basis: orthonormal tangent bases ``(..., D, k)`` with the same leading axes.
    """
    u = as_float_array(vectors, "vectors")
    vt = as_float_array(tangent_basis, "tangent_basis")
    if vt.ndim < 2 or u.ndim < 1 or vt.shape[:-1] != u.shape:
        raise ValueError(
            f"`tangent_basis` must have shape (..., D, k) matching `vectors` (..., D) = {u.shape}, got "
            f"{vt.shape}."
        )
    coef = jnp.einsum("...dk,...d->...k", vt, u)
    tangent = jnp.einsum("...dk,...k->...d", vt, coef)
    return jnp.linalg.norm(u - tangent, axis=-1), jnp.linalg.norm(coef, axis=-1)


# =====================================================================================================
# public: SCMS projection
# =====================================================================================================
def _scms_point(score, t, x0, key, k, thr, relative, tol, max_iter, step_size, block_size, num_iter, mode):
    loop_key, final_key = jr.split(key)

    def cond(state):
        _, i, done, _ = state
        return (i < max_iter) & ~done

    def body(state):
        x, i, _, _ = state
        ritz = _ritz_point(score, t, x, jr.fold_in(loop_key, i), k + 1, block_size, num_iter, mode)
        tangent = ritz.eigvecs[:, :k]
        pg = ritz.gradient - tangent @ (tangent.T @ ritz.gradient)
        curv = jnp.abs(ritz.eigvals[-1])
        newton_len = jnp.linalg.norm(pg) / curv
        done = newton_len < tol
        eta = jnp.where(step_size > 0, step_size, 1.0 / curv)
        return jnp.where(done, x, x + eta * pg), i + 1, done, newton_len

    init = (x0, jnp.asarray(0, jnp.int32), jnp.asarray(False), jnp.asarray(jnp.inf, x0.dtype))
    x, n_iter, done, step = jax.lax.while_loop(cond, body, init)
    ritz = _ritz_point(score, t, x, final_key, k + 1, block_size, num_iter, mode)
    geo = _geometry_from_ritz(ritz, k, thr, relative)
    tangent = ritz.eigvecs[:, :k]
    resid = jnp.linalg.norm(ritz.gradient - tangent @ (tangent.T @ ritz.gradient))
    return SCMSResult(x, jnp.linalg.norm(x - x0), done, n_iter, resid, step, geo.valid)


@eqx.filter_jit
def _scms(score, t, pts, keys, k, thr, relative, tol, max_iter, step_size, block_size, num_iter, mode):
    def one(xi, ki):
        return _scms_point(
            score, t, xi, ki, k, thr, relative, tol, max_iter, step_size, block_size, num_iter, mode
        )

    return jax.vmap(one)(pts, keys)


def scms_project_matrix_free(
    score: AbstractScore,
    t: ArrayLike,
    x: Float[ArrayLike, "*N D"],
    intrinsic_dim: int,
    *,
    key: PRNGKeyArray,
    tol: float | None = None,
    max_iter: int = 500,
    step_size: float | None = None,
    gap_threshold: float = 1e-2,
    relative_gap: bool = True,
    block_size: int | None = None,
    num_iter: int | None = None,
    mode: str = "auto",
) -> SCMSResult:
    r"""Subspace-constrained mean shift onto the ``intrinsic_dim``-ridge from Hessian-vector products:
    the matrix-free counterpart of :func:`scms_project` (same iteration
    ``x <- x + eta (I - V_k V_k^T) \nabla log p_t(x)``, same default ``eta = 1 / |lambda_D(x)|``, same
    stopping rule and :class:`SCMSResult`). Each iteration runs one block Lanczos
    (``num_iter * block_size`` HVPs), with key ``fold_in(key_i, iteration)``.

    Args:
        score: any diffsim score.
        t: forward time ``t > 0``.
        x: starting points ``(N, D)`` or one point ``(D,)`` (inside the tube: SCMS has no global
            convergence guarantee).
        intrinsic_dim: ridge dimension ``k``, ``1 <= k <= D - 1``.
        key: PRNG key; point ``i`` uses ``fold_in(key, i)``.
        tol: stop when ``|P_perp g| / |lambda_D| < tol`` (default 1e-10 in float64, 1e-5 in float32).
        max_iter: at most this many SCMS steps.
        step_size: ``eta`` (default ``1 / |lambda_D(x)|``).
        gap_threshold: eigengap mask threshold of the end point, as in :func:`ridge_geometry`.
        relative_gap: relative (default) or absolute gap.
        block_size: columns per Lanczos block (default ``k + 2``).
        num_iter: block iterations per Lanczos run (default as in :func:`ridge_geometry_matrix_free`).
        mode: ``"auto"`` (default: ``"forward"`` for closed-form scores, ``"symmetric"`` ``(J + J^T) / 2``
            for learned ones), ``"forward"`` (JVP), ``"reverse"`` (VJP) or ``"symmetric"`` products.
    """
    _check_score(score)
    k = _check_intrinsic_dim(intrinsic_dim, score.dim)
    b, m = _krylov_sizes(score.dim, k + 1, block_size, num_iter)
    thr = _check_threshold(gap_threshold)
    max_iter = check_positive_int(max_iter, "max_iter")
    t, pts, single, keys, mode = _prepare(score, t, x, key, mode)
    dt = pts.dtype
    if tol is None:
        tol = 1e-10 if dt == jnp.float64 else 1e-5
    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"`tol` must be positive and finite, got {tol}.")
    if step_size is not None and not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"`step_size` must be positive and finite, got {step_size}.")
    res = _scms(
        score,
        t,
        pts,
        keys,
        k,
        jnp.asarray(thr, dt),
        bool(relative_gap),
        jnp.asarray(tol, dt),
        jnp.asarray(max_iter, jnp.int32),
        jnp.asarray(0.0 if step_size is None else step_size, dt),
        b,
        m,
        mode,
    )
    return _unbatch(res, single)
