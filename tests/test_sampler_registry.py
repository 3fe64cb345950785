"""The one sampler registry: defining a sampler class registers it (a toy sampler runs through
``simulate``), every built-in sampler is listed with its metadata, and unknown names get a clear error."""

from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffsim as ds
from diffsim.sampling import (
    ADAPTIVE,
    SAMPLER_REGISTRY,
    SAMPLERS,
    AbstractFixedSampler,
    State,
    get_sampler,
    normal_like,
    unregister_sampler,
)


GMM = ds.GaussianMixture(jnp.array([0.3, 0.7]), jnp.array([[-2.0, 0.0], [2.0, 1.0]]), jnp.array([0.2, 0.5]))

# name: (class name, order, stochastic, noise_draws, adaptive, direction)
BUILT_IN = {
    "euler_maruyama": ("EulerMaruyama", 1, True, 1, False, "reverse"),
    "ddpm": ("DDPM", 1, True, 1, False, "reverse"),
    "ddim": ("DDIM", 1, False, 0, False, "reverse"),
    "euler": ("Euler", 1, False, 0, False, "reverse"),
    "heun": ("Heun", 2, False, 0, False, "reverse"),
    "dpm_solver_2m": ("DPMSolver2M", 2, False, 0, False, "reverse"),
    "pc": ("PredictorCorrector", 1, True, 2, False, "reverse"),
    "euler_ancestral": ("EulerAncestral", 1, True, 1, False, "reverse"),
    "dpmpp_2s_ancestral": ("DPMPP2SAncestral", 2, True, 1, False, "reverse"),
    "dpmpp_2m_sde": ("DPMPP2MSDE", 1, True, 1, False, "reverse"),
    "dpmpp_3m_sde": ("DPMPP3MSDE", 1, True, 1, False, "reverse"),
    "unipc": ("UniPC", 3, False, 0, False, "reverse"),
    "lms": ("LMS", 2, False, 0, False, "reverse"),
    "forward": ("ForwardExact", None, True, 1, False, "forward"),
    "forward_em": ("ForwardEulerMaruyama", 1, True, 1, False, "forward"),
    "adaptive_ode": ("AdaptiveODE", 5, False, 0, True, "reverse"),
    "tsit5": ("Tsit5", 5, False, 0, True, "reverse"),
    "dopri5": ("Dopri5", 5, False, 0, True, "reverse"),
    "dopri8": ("Dopri8", 8, False, 0, True, "reverse"),
    "sde": ("DiffraxSDE", 1, True, 1, True, "reverse"),
}


def test_registry_lists_every_built_in_sampler_with_its_metadata():
    for name, (cls_name, order, stochastic, draws, adaptive, direction) in BUILT_IN.items():
        cls = SAMPLER_REGISTRY[name]
        assert cls.__name__ == cls_name and cls.name == name
        assert (cls.order, cls.stochastic, cls.noise_draws, cls.adaptive, cls.direction) == (
            order,
            stochastic,
            draws,
            adaptive,
            direction,
        ), name
        assert (name in ADAPTIVE) == adaptive and (name in SAMPLERS) == (not adaptive)
        assert type(get_sampler(name)) is cls
    # the instances report what their options make of the class defaults
    assert get_sampler("ddim", eta=0.5).is_stochastic() and get_sampler("ddim", eta=0.5).draws_per_step() == 1
    assert get_sampler("heun", churn=1.0).draws_per_step() == 1
    assert get_sampler("pc", n_corrector=3).draws_per_step() == 4
    assert not get_sampler("ddim").is_stochastic() and get_sampler("euler").draws_per_step() == 0


def test_unknown_name_lists_the_known_samplers():
    with pytest.raises(ValueError, match="Unknown sampler 'nope'; known samplers: ") as err:
        get_sampler("nope")
    for name in BUILT_IN:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="known samplers: .*dpm_solver_2m"):
        ds.simulate(GMM, "nope", 4, n=2, key=jax.random.key(0))
    with pytest.raises(TypeError, match="Bad options for sampler 'tsit5'"):
        ds.simulate(GMM, "tsit5", 4, n=2, key=jax.random.key(0), etaa=1.0)


@pytest.fixture
def toy_samplers():
    """Names registered by a test are removed afterwards."""
    names = []
    yield names
    for name in names:
        if name in SAMPLER_REGISTRY:
            unregister_sampler(name)


def test_a_sampler_class_is_registered_and_runs_through_simulate(toy_samplers):
    toy_samplers += ["toy_half_euler", "toy_noisy"]

    class HalfEuler(AbstractFixedSampler):
        """Euler on the PF-ODE, written as a user would: metadata and a step, nothing else."""

        name: ClassVar[str] = "toy_half_euler"
        order: ClassVar[float] = 1.0
        stochastic: ClassVar[bool] = False
        noise_draws: ClassVar[int] = 0

        def step(self, key, state, t, t_next, score):
            return State(state.x + score.velocity(t, state.x) * (t_next - t))

    assert SAMPLER_REGISTRY["toy_half_euler"] is HalfEuler and "toy_half_euler" in SAMPLERS
    x0 = jax.random.normal(jax.random.key(0), (5, 2))
    grid = ds.grids.logsnr_uniform(GMM.process, 8)
    toy = ds.simulate(GMM, "toy_half_euler", grid, x=x0, key=jax.random.key(1), save="all")
    ref = ds.simulate(GMM, "euler", grid, x=x0, key=jax.random.key(1), save="all")
    np.testing.assert_array_equal(np.asarray(toy.xs), np.asarray(ref.xs))
    assert toy.nfe == 8

    class Noisy(AbstractFixedSampler):
        name: ClassVar[str] = "toy_noisy"
        order: ClassVar[float] = 1.0
        stochastic: ClassVar[bool] = True
        noise_draws: ClassVar[int] = 1

        def step(self, key, state, t, t_next, score):
            return State(state.x + 0.1 * normal_like(key, state.x))

    # its metadata drives the counter noise: draws of one particle do not depend on the batch
    for noise in ("per_particle", "counter"):
        small = ds.simulate(GMM, "toy_noisy", grid, n=3, key=jax.random.key(2), noise=noise)
        large = ds.simulate(GMM, Noisy(), grid, n=9, key=jax.random.key(2), noise=noise, chunk_size=4)
        chex.assert_trees_all_close(small.x, large.x[:3], rtol=1e-12, atol=1e-12)


def test_registration_checks_the_metadata(toy_samplers):
    toy_samplers += ["toy_bad", "toy_taken"]
    with pytest.raises(TypeError, match="must declare order"):

        class NoOrder(AbstractFixedSampler):
            name: ClassVar[str] = "toy_bad"
            stochastic: ClassVar[bool] = False
            noise_draws: ClassVar[int] = 0

    with pytest.raises(TypeError, match="noise_draws"):

        class Inconsistent(AbstractFixedSampler):
            name: ClassVar[str] = "toy_bad"
            order: ClassVar[float] = 1.0
            stochastic: ClassVar[bool] = True
            noise_draws: ClassVar[int] = 0

    assert "toy_bad" not in SAMPLER_REGISTRY
    with pytest.raises(ValueError, match="already taken"):

        class Taken(AbstractFixedSampler):
            name: ClassVar[str] = "euler"
            order: ClassVar[float] = 1.0
            stochastic: ClassVar[bool] = False
            noise_draws: ClassVar[int] = 0

    assert SAMPLER_REGISTRY["euler"] is ds.sampling.Euler
