"""Explicit dtype promotion (``diffsim._promotion``) and samplers stepping in the particles' dtype
(``diffsim.sampling._precision``). The suite runs under strict dtype promotion (``tests/conftest.py``), so
every call here would raise on an implicit float32 / float64 mix."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffsim as ds
from diffsim._promotion import common_dtype, promote
from diffsim.sampling._precision import ParticleDtypeScore, in_particle_dtype


_DTYPES = [jnp.int32, jnp.int64, jnp.float32, jnp.float64, jnp.complex64]


@pytest.mark.parametrize("a", _DTYPES)
@pytest.mark.parametrize("b", _DTYPES)
def test_common_dtype_is_what_an_operation_would_give_under_standard_promotion(a, b):
    """Independent route: the dtype of an actual ``+`` between the two, traced under standard promotion."""
    x, y = jnp.ones((2,), a), jnp.ones((2,), b)
    with jax.numpy_dtype_promotion("standard"):
        expected = (x + y).dtype
        expected_weak = (x + 2.0).dtype  # a Python scalar is weakly typed: the array's dtype wins
    assert jax.config.jax_numpy_dtype_promotion == "strict"  # the suite's setting: common_dtype ignores it
    assert common_dtype(x, y) == expected
    assert common_dtype(x, 2.0) == expected_weak
    px, py = promote(x, y)
    assert px.dtype == py.dtype == expected
    chex.assert_trees_all_equal(px.astype(jnp.complex128), x.astype(jnp.complex128))


def _mixed_model():
    """A float64 exact model on a float64 discrete schedule (as ``from_alpha_bar`` builds under x64)."""
    p = ds.VP.from_alpha_bar(np.cumprod(1.0 - np.linspace(1e-4, 0.02, 200)))
    gm = ds.GaussianMixture(
        jnp.array([0.4, 0.6]), jnp.array([[-1.0, 0.5], [1.0, 0.0]]), jnp.array([0.3, 0.5]), process=p
    )
    assert gm.means.dtype == p.schedule.knots_b.dtype == jnp.float64
    return gm


def test_particle_dtype_view_casts_the_process_and_the_outputs_only():
    gm = _mixed_model()
    view = in_particle_dtype(gm, jnp.float32)
    assert isinstance(view, ParticleDtypeScore) and view.dim == gm.dim
    assert view.process.schedule.knots_b.dtype == jnp.float32
    assert view.model is gm  # the model itself keeps its float64 arrays
    t, x = jnp.float32(0.4), jnp.asarray([0.3, -0.7], jnp.float32)
    for method in ("score", "denoise", "eps", "v_prediction", "velocity", "reverse_drift"):
        got, full = getattr(view, method)(t, x), getattr(gm, method)(t, x)
        assert full.dtype == jnp.float64 and got.dtype == jnp.float32, method
        chex.assert_trees_all_equal(got, full.astype(jnp.float32))  # the float64 value, rounded once
    assert view.posterior(t, x).dtype == jnp.float64  # other attributes: the model's own, uncast
    assert view.n_components == gm.n_components
    with pytest.raises(AttributeError):
        _ = view.no_such_attribute
    lap = view.laplacian(t, x)
    assert lap.dtype == jnp.float32
    chex.assert_trees_all_close(view.process.alpha(t), gm.process.alpha(t).astype(jnp.float32), rtol=1e-6)
    # one dtype throughout: every cast is the identity, bit for bit
    same = in_particle_dtype(gm, jnp.float64)
    x64 = x.astype(jnp.float64)
    chex.assert_trees_all_equal(same.score(t, x64), gm.score(t, x64))
    chex.assert_trees_all_equal(same.process.sigma(0.3), gm.process.sigma(0.3))


def test_a_kernel_steps_in_the_particle_dtype():
    """A DDIM step on float32 particles with the float64 model returns float32 from float32 arithmetic
    (given the view); with the model itself JAX would promote the step to float64 (and strict rejects it)."""
    gm = _mixed_model()
    ddim = ds.sampling.get_sampler("ddim")
    x = jnp.asarray([0.3, -0.7], jnp.float32)
    t, t_next = jnp.float32(0.5), jnp.float32(0.4)
    out = ddim.step(None, ddim.init(t, x), t, t_next, in_particle_dtype(gm, jnp.float32))
    assert ddim.position(out).dtype == jnp.float32
    with jax.numpy_dtype_promotion("standard"):
        promoted = ddim.step(None, ddim.init(t, x), t, t_next, gm)
    assert ddim.position(promoted).dtype == jnp.float64
    chex.assert_trees_all_close(ddim.position(out), ddim.position(promoted).astype(jnp.float32), rtol=1e-5)
    with pytest.raises(jax.dtypes.TypePromotionError):
        ddim.step(None, ddim.init(t, x), t, t_next, gm)


_REVERSE = [n for n, c in sorted(ds.sampling.SAMPLER_REGISTRY.items()) if c.direction == "reverse"]


@pytest.mark.parametrize("method", _REVERSE)
def test_every_sampler_runs_float32_particles_on_a_float64_model_under_strict_promotion(method):
    gm = _mixed_model()
    x = gm.process.prior_std * jax.random.normal(jax.random.key(0), (3, 2), jnp.float32)
    traj = ds.simulate(gm, method, 4, x=x, key=jax.random.key(1))
    assert traj.x.dtype == jnp.float32
    chex.assert_tree_all_finite(traj.x)
