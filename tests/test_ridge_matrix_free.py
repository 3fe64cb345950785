"""Matrix-free ridge geometry (block Lanczos on Hessian-vector products) against the dense route.

Independent routes: the dense geometry diagonalises the closed-form Hessian (``GaussianMixture.hessian``,
``EmpiricalScore.hessian``) with ``eigh``; the matrix-free one only differentiates ``score`` (forward or
reverse mode, or through an opaque denoiser). Subspaces are compared through their projectors. At
``d = 4096`` the two-point mixture has closed forms for the tangent direction, the spectrum, the residual
and the Newton distance, and the compiled function is checked to hold no ``d x d`` array."""

import chex
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsim as ds
from diffsim.analysis import ridge
from diffsim.scores.adapters import CallableScore


K_RIDGE = 2


def _lowrank_mixture(d: int, k: int, n_comp: int, seed: int) -> ds.GaussianMixture:
    """Means in the first ``k`` coordinates, variance 1-3 there and 0.05 elsewhere (low rank plus
    isotropic): a clear gap between ``lambda_k`` and ``lambda_{k+1}`` everywhere."""
    rng = np.random.default_rng(seed)
    means = np.zeros((n_comp, d))
    means[:, :k] = 2.0 * rng.normal(size=(n_comp, k))
    covs = np.full((n_comp, d), 0.05)
    covs[:, :k] = rng.uniform(1.0, 3.0, size=(n_comp, k))
    return ds.GaussianMixture(np.ones(n_comp) / n_comp, means, covs)


def _projector(basis):
    basis = np.asarray(basis)
    return np.einsum("...ik,...jk->...ij", basis, basis)


def _assert_geometry_equal(dense, mf, k, atol=1e-6):
    valid = np.asarray(dense.valid)
    assert valid.sum() >= 2, "the comparison needs points where the normal space is defined"
    np.testing.assert_array_equal(np.asarray(mf.valid), valid)
    chex.assert_trees_all_close(mf.top_eigvals, dense.eigvals[..., : k + 1], atol=atol, rtol=atol)
    chex.assert_trees_all_close(mf.smallest_eigval, dense.eigvals[..., -1], atol=atol, rtol=atol)
    chex.assert_trees_all_close(mf.gap, dense.gap, atol=atol, rtol=atol)
    chex.assert_trees_all_close(mf.relative_gap, dense.relative_gap, atol=atol, rtol=atol)
    chex.assert_trees_all_close(mf.gradient, dense.gradient, atol=atol, rtol=atol)
    proj_dense = _projector(dense.tangent_basis)[valid]
    proj_mf = _projector(mf.tangent_basis)[valid]
    np.testing.assert_allclose(proj_mf, proj_dense, atol=atol)
    for name in ("residual", "newton_distance"):
        a, b = np.asarray(getattr(mf, name))[valid], np.asarray(getattr(dense, name))[valid]
        np.testing.assert_allclose(a, b, rtol=atol, atol=0)
        assert np.all(np.isnan(np.asarray(getattr(mf, name))[~valid]))


@pytest.fixture(scope="module")
def mixture64():
    mix = _lowrank_mixture(64, K_RIDGE, 3, seed=0)
    x = np.asarray(mix.sample(jr.key(3), 5)[0])
    return mix, x


@pytest.mark.parametrize("t", [0.1, 0.5])
@pytest.mark.parametrize("num_iter", [None, 5])
def test_matches_dense_on_gaussian_mixture(mixture64, t, num_iter):
    """d = 64, k = 2: the full Krylov space (default, 16 blocks of 4) and a 20-vector one (5 blocks)
    both equal the dense eigendecomposition to 1e-6 in float64."""
    mix, x = mixture64
    dense = ridge.ridge_geometry(mix, t, x, K_RIDGE)
    mf = ridge.ridge_geometry_matrix_free(mix, t, x, K_RIDGE, key=jr.key(1), num_iter=num_iter)
    _assert_geometry_equal(dense, mf, K_RIDGE)
    assert float(np.max(mf.ritz_residual)) < 1e-8


def test_matches_dense_through_an_opaque_denoiser_in_reverse_mode(mixture64):
    """The mixture wrapped as an opaque x0-denoiser (no closed form), HVPs by VJP: same geometry as
    the closed-form dense route."""
    mix, x = mixture64
    opaque = CallableScore(
        lambda xb, tb: jax.vmap(mix.denoise)(tb, xb), mix.process, (64,), parametrisation="x0"
    )
    dense = ridge.ridge_geometry(mix, 0.3, x, K_RIDGE)
    mf = ridge.ridge_geometry_matrix_free(opaque, 0.3, x, K_RIDGE, key=jr.key(2), num_iter=6, mode="reverse")
    _assert_geometry_equal(dense, mf, K_RIDGE)


@pytest.mark.parametrize("t", [0.05, 0.2])
def test_matches_dense_on_empirical_score(t):
    """Memorising score of 12 points near a plane in d = 24: where the dense gap mask holds, every
    quantity agrees to 1e-6 (full basis: 6 blocks of 4)."""
    rng = np.random.default_rng(5)
    d = 24
    data = np.zeros((12, d))
    data[:, :2] = rng.uniform(-2, 2, size=(12, 2))
    data[:, 2:] = 0.02 * rng.normal(size=(12, d - 2))
    emp = ds.EmpiricalScore(data)
    x = data[rng.integers(12, size=6)] * 0.5 + data[rng.integers(12, size=6)] * 0.5
    x = x + 0.1 * rng.normal(size=x.shape)
    dense = ridge.ridge_geometry(emp, t, x, K_RIDGE)
    mf = ridge.ridge_geometry_matrix_free(emp, t, x, K_RIDGE, key=jr.key(0))
    _assert_geometry_equal(dense, mf, K_RIDGE)


def test_spectrum_hvp_and_decomposition_match_dense(mixture64):
    mix, x = mixture64
    t = 0.3
    w, v = ridge.hessian_spectrum(mix, t, x)
    w_mf, v_mf = ridge.hessian_spectrum_matrix_free(mix, t, x, 3, key=jr.key(4))
    chex.assert_shape(v_mf, (5, 64, 3))
    chex.assert_trees_all_close(w_mf, w[:, :3], atol=1e-8, rtol=1e-8)
    # eigenvalues 1 and 2 may be close and the third is the 62-fold normal one: compare the 2-dimensional
    # top subspace (gap to the third) only
    np.testing.assert_allclose(_projector(v_mf[:, :, :2]), _projector(v[:, :, :2]), atol=1e-6)
    # HVPs, forward and reverse, against the closed-form Hessian
    hess = np.asarray(ridge.log_density_hessian(mix, t, x[:1]))[0]
    dirs = np.asarray(jr.normal(jr.key(9), (64, 3)))
    np.testing.assert_allclose(ridge.hessian_vector_product(mix, t, x[0], dirs), hess @ dirs, atol=1e-10)
    np.testing.assert_allclose(
        ridge.hessian_vector_product(mix, t, x[0], dirs[:, 0], mode="reverse"), hess @ dirs[:, 0], atol=1e-10
    )
    # normal / tangent split of displacements: dense normal basis vs matrix-free tangent basis
    dense = ridge.ridge_geometry(mix, t, x, K_RIDGE)
    mf = ridge.ridge_geometry_matrix_free(mix, t, x, K_RIDGE, key=jr.key(1))
    disp = np.asarray(jr.normal(jr.key(7), x.shape))
    normal_d, tangent_d = ridge.decompose(disp, dense.normal_basis)
    normal_m, tangent_m = ridge.decompose_matrix_free(disp, mf.tangent_basis)
    np.testing.assert_allclose(normal_m, normal_d, rtol=1e-8)
    np.testing.assert_allclose(tangent_m, tangent_d, rtol=1e-8)


def test_scms_matches_dense():
    mix = _lowrank_mixture(16, 1, 2, seed=1)
    x = np.asarray(mix.sample(jr.key(0), 3)[0])
    dense = ridge.scms_project(mix, 0.4, x, 1, max_iter=60)
    mf = ridge.scms_project_matrix_free(mix, 0.4, x, 1, key=jr.key(0), max_iter=60)
    assert np.all(np.asarray(dense.converged)) and np.all(np.asarray(mf.converged))
    np.testing.assert_array_equal(np.asarray(mf.valid), np.asarray(dense.valid))
    np.testing.assert_allclose(mf.x, dense.x, atol=1e-8)
    np.testing.assert_allclose(mf.distance, dense.distance, atol=1e-8)
    assert float(np.max(mf.residual)) < 1e-8


def _two_point_mixture(d: int, m: float = 3.0, s0: float = 0.5) -> ds.GaussianMixture:
    means = np.zeros((2, d))
    means[:, 0] = [-m, m]
    return ds.GaussianMixture(np.array([0.5, 0.5]), means, s0**2)


def test_runs_at_d4096_with_closed_forms_and_no_dense_matrix():
    """d = 4096, two components at -/+3 e_1 (variance 0.25): log p_t = -|x|^2 / (2c) + log cosh(mu x_1 / c),
    so the tangent is e_1 with eigenvalue -1/c + (mu/c)^2 sech^2(mu x_1 / c), every normal eigenvalue is
    -1/c, the residual is |x_perp| / c and the Newton distance |x_perp|. The compiled function holds no
    d x d array (jaxpr shapes, and XLA's memory analysis where available)."""
    d, t, m, s0 = 4096, 0.5, 3.0, 0.5
    mix = _two_point_mixture(d, m, s0)
    rng = np.random.default_rng(0)
    x = 0.3 * rng.normal(size=(2, d)) / np.sqrt(d) * 8
    x[:, 0] = [0.1, -0.2]
    geo = ridge.ridge_geometry_matrix_free(mix, t, x, 1, key=jr.key(0))
    a, h = float(mix.process.alpha(t)), float(mix.process.sigma2(t))
    c, mu = a**2 * s0**2 + h, a * m
    lam1 = -1 / c + (mu / c) ** 2 / np.cosh(mu * x[:, 0] / c) ** 2
    perp = np.linalg.norm(x[:, 1:], axis=1)
    assert np.all(np.asarray(geo.valid))
    np.testing.assert_allclose(geo.top_eigvals[:, 0], lam1, rtol=1e-9)
    np.testing.assert_allclose(geo.top_eigvals[:, 1], -1 / c, rtol=1e-9)
    np.testing.assert_allclose(geo.smallest_eigval, -1 / c, rtol=1e-9)
    np.testing.assert_allclose(np.abs(geo.tangent_basis[:, 0, 0]), 1.0, atol=1e-9)
    np.testing.assert_allclose(geo.residual, perp / c, rtol=1e-8)
    np.testing.assert_allclose(geo.newton_distance, perp, rtol=1e-8)

    from diffsim.analysis.ridge._matrix_free import _geometries

    keys = jax.vmap(lambda i: jr.fold_in(jr.key(0), i))(jnp.arange(2))

    def fn(pts):
        return _geometries(mix, jnp.asarray(t), pts, keys, 1, jnp.asarray(1e-2), True, 3, 22, "forward")

    jaxpr = str(jax.make_jaxpr(fn)(jnp.asarray(x)))
    assert f"{d},{d}]" not in jaxpr and f"{d}, {d}]" not in jaxpr
    compiled = jax.jit(fn).lower(jnp.asarray(x)).compile()
    try:
        mem = compiled.memory_analysis()
    except Exception:  # pragma: no cover - backend without memory analysis
        mem = None
    if mem is not None:
        # one d x d float64 matrix is 134 MB; the Krylov basis of 2 points is 2 x 2 x 4096 x 66 x 8 = 8.7 MB
        assert mem.temp_size_in_bytes < d * d * 8 / 4, mem.temp_size_in_bytes


def test_batch_and_key_conventions(mixture64):
    mix, x = mixture64
    batch = ridge.ridge_geometry_matrix_free(mix, 0.5, x[:2], K_RIDGE, key=jr.key(1), num_iter=5)
    single = ridge.ridge_geometry_matrix_free(mix, 0.5, x[0], K_RIDGE, key=jr.key(1), num_iter=5)
    chex.assert_shape(single.top_eigvecs, (64, K_RIDGE + 1))
    chex.assert_trees_all_close(single.top_eigvals, batch.top_eigvals[0], atol=1e-12)
    chex.assert_trees_all_close(single.newton_distance, batch.newton_distance[0], atol=1e-12)


def test_bad_inputs_name_the_argument(mixture64):
    mix, x = mixture64
    key = jr.key(0)
    with pytest.raises(ValueError, match="intrinsic_dim"):
        ridge.ridge_geometry_matrix_free(mix, 0.5, x, 0, key=key)
    with pytest.raises(ValueError, match="intrinsic_dim"):
        ridge.ridge_geometry_matrix_free(mix, 0.5, x, 64, key=key)
    with pytest.raises(ValueError, match="num_eigs"):
        ridge.hessian_spectrum_matrix_free(mix, 0.5, x, 64, key=key)
    with pytest.raises(ValueError, match="`x`"):
        ridge.hessian_vector_product(mix, 0.5, x, x[0])  # a batch where one point is expected
    with pytest.raises(ValueError, match="`x`"):
        ridge.ridge_geometry_matrix_free(mix, 0.5, x[None], K_RIDGE, key=key)
    with pytest.raises(ValueError, match="`x`"):
        ridge.ridge_geometry_matrix_free(mix, 0.5, x[:, :10], K_RIDGE, key=key)
    bad = x.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="`x`"):
        ridge.ridge_geometry_matrix_free(mix, 0.5, bad, K_RIDGE, key=key)
    with pytest.raises(ValueError, match="`t`"):
        ridge.ridge_geometry_matrix_free(mix, float("nan"), x, K_RIDGE, key=key)
    # (under the tests' jaxtyping hook the shape mismatch with `x` is caught first, naming `v` too)
    with pytest.raises((ValueError, TypeError), match="`v`|'v'"):
        ridge.hessian_vector_product(mix, 0.5, x[0], np.ones(3))
    with pytest.raises(ValueError, match="num_iter"):
        ridge.ridge_geometry_matrix_free(mix, 0.5, x, K_RIDGE, key=key, num_iter=17)
    with pytest.raises(ValueError, match="block_size"):
        ridge.ridge_geometry_matrix_free(mix, 0.5, x, K_RIDGE, key=key, block_size=65)
    with pytest.raises(TypeError, match="key"):
        ridge.ridge_geometry_matrix_free(mix, 0.5, x, K_RIDGE, key=None)
    with pytest.raises(ValueError, match="mode"):
        ridge.ridge_geometry_matrix_free(mix, 0.5, x, K_RIDGE, key=key, mode="sideways")
    with pytest.raises((ValueError, TypeError), match="tangent_basis"):
        ridge.decompose_matrix_free(x, np.ones((5, 63, 2)))


def test_learned_score_with_a_non_symmetric_jacobian_uses_its_symmetric_part():
    """A learned score is not a gradient field: its Jacobian J is not symmetric. The default ``mode="auto"``
    takes the symmetric part (J + J^T) / 2 for such scores, which is what the dense route's ``eigh`` reads;
    plain forward or reverse products would run Lanczos on a non-symmetric operator (wrong spectrum)."""
    d, k = 12, 2
    rng = np.random.default_rng(3)
    sym = rng.normal(size=(d, d))
    sym = -(sym @ sym.T) / d - np.diag(np.linspace(0.1, 3.0, d))  # negative definite, distinct eigenvalues
    skew = 0.8 * (lambda a: a - a.T)(rng.normal(size=(d, d)))
    jac = jnp.asarray(sym + skew)
    process = ds.VP.ou()
    score = CallableScore(lambda x, t: x @ jac.T, process, (d,), parametrisation="score")
    x = jnp.asarray(rng.normal(size=(3, d)))
    dense = ridge.ridge_geometry(score, 0.5, x, k)
    mf = ridge.ridge_geometry_matrix_free(score, 0.5, x, k, key=jr.key(0), num_iter=d // (k + 2))
    chex.assert_trees_all_close(mf.top_eigvals, dense.eigvals[..., : k + 1], atol=1e-10)
    np.testing.assert_allclose(_projector(mf.tangent_basis), _projector(dense.tangent_basis), atol=1e-8)
    v = jnp.asarray(rng.normal(size=(d,)))
    chex.assert_trees_all_close(
        ridge.hessian_vector_product(score, 0.5, x[0], v), jnp.asarray(sym) @ v, atol=1e-12
    )
    assert float(jnp.max(mf.ritz_residual)) < 1e-8
    # the forward product is J v, not the symmetric part: its Ritz pairs are not eigenpairs of the operator
    fwd = ridge.ridge_geometry_matrix_free(
        score, 0.5, x, k, key=jr.key(0), num_iter=d // (k + 2), mode="forward"
    )
    assert float(jnp.min(jnp.max(fwd.ritz_residual, axis=-1))) > 1e-3
