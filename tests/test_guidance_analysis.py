"""Guidance sweeps: the monotonicity claims of Wu et al. (ICML 2024), routes agreeing, distortions, errors."""

import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsim as ds
from diffsim.analysis.guidance import (
    class_direction,
    clean_confidence,
    count_modes,
    count_modes_2d,
    guidance_sweep,
    guided_samples,
    pathwise_monotone_fraction,
    projected_problem,
)


LOG_2PI_E = math.log(2 * math.pi * math.e)
SCALES = [1.0, 1.5, 2.0, 3.0, 5.0, 11.0]  # diffsim scale w; Wu et al.'s eta = w - 1 = 0 ... 10


@pytest.fixture(scope="module")
def sym1d():
    return ds.GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([[-2.0], [2.0]]), 1.0)


@pytest.fixture(scope="module")
def sweep1d(sym1d):
    return guidance_sweep(
        sym1d,
        1,
        SCALES,
        key=jr.key(0),
        n=3000,
        steps=(200,),
        n_pf_ode=400,
        flow_rate_steps=None,
        fp_cells=300,
        quadrature_nodes=80,
    )


def test_pathwise_confidence_increases_two_components(sweep1d):
    """Shared noise across strengths: every particle's confidence is non-decreasing in w, for DDIM and DDPM
    (the comparison theorem), and the continuous-limit DDIM too."""
    for law in ("ddim@200", "ddpm@200", "ddim"):
        assert pathwise_monotone_fraction(sweep1d.log_confidence[law], atol=1e-12) == 1.0, law
        assert np.all(np.diff(sweep1d.laws[law]["confidence"]) >= -1e-12), law
    assert np.all(np.diff(sweep1d.laws["ddpm"]["confidence"]) >= 0)  # continuous DDPM (Fokker-Planck)


def test_pathwise_confidence_increases_in_higher_dimension():
    mu = jnp.array([[1.0, 0.5, -1.0], [-1.0, -0.5, 1.0]])
    mix = ds.GaussianMixture(jnp.array([0.3, 0.7]), mu, 1.0)
    for method in ("ddim", "ddpm"):
        logc = np.stack(
            [
                np.asarray(
                    clean_confidence(
                        mix, 0, guided_samples(mix, 0, w, method, key=jr.key(1), n=500, n_steps=200)
                    )
                )
                for w in SCALES
            ]
        )
        assert pathwise_monotone_fraction(logc, atol=1e-12) == 1.0, method


def test_inverse_confidence_decreases(sweep1d):
    """E[1/p_0(y|X)] is non-increasing in the strength (Li & Jiao 2025)."""
    for law in ("ddim", "ddpm"):
        assert np.all(np.diff(sweep1d.laws[law]["inv_confidence"]) <= 1e-9), law


def test_ddim_entropy_decreases_and_unguided_is_exact(sweep1d):
    q = sweep1d.laws["ddim"]
    h = q["entropy/quadrature"]
    assert np.all(np.diff(h) < 0)
    # w = 1 (eta = 0): the output is the class-conditional N(mu_y, 1) (entropy 1/2 log 2 pi e, mean 2, var 1)
    assert abs(h[0] - 0.5 * LOG_2PI_E) < 1e-5
    # (the PF-ODE translates the prior N(0, 1) by (a_end - a_T) mu_y)
    assert abs(q["mean_u"][0] - 2.0 * (math.exp(-1e-3) - math.exp(-10.0))) < 1e-5
    assert abs(q["var_u"][0] - 1.0) < 1e-5
    # the other routes agree with the (essentially exact) quadrature
    assert np.all(np.abs(q["entropy/fokker_planck"] - h) < 0.05)
    assert np.all(np.abs(q["entropy/pf_ode"] - h) < 4 * q["entropy_se/pf_ode"] + 0.01)
    assert np.all(np.diff(sweep1d.laws["ddim@200"]["entropy/map"]) < 0)
    assert np.all(np.abs(sweep1d.laws["ddim@200"]["entropy/map"] - h) < 4 * q["entropy_se/pf_ode"] + 0.05)


def test_ddpm_shrinks_variance_much_less_than_ddim(sweep1d):
    v_ode = sweep1d.laws["ddim"]["var_u"]
    v_sde = sweep1d.laws["ddpm"]["var_u"]
    assert np.all(np.diff(v_ode) < 0) and np.all(np.diff(v_sde) < 0)
    assert v_sde[-1] / v_sde[0] > 2.0 * v_ode[-1] / v_ode[0]  # measured 0.73 vs 0.22 at w = 11
    assert np.all(np.diff(sweep1d.laws["ddpm"]["entropy/fokker_planck"]) < 0)


def test_projected_sweep_in_higher_dimension():
    """d = 4 projects to the 1-D problem plus three standard-Gaussian coordinates: quadrature + closed-form
    entropy agrees with the d-dimensional PF-ODE change of variables (Hutchinson divergence)."""
    mu = jnp.array([[1.2, -1.2, 0.8, 0.5], [-1.2, 1.2, -0.8, 0.5]])
    mix = ds.GaussianMixture(jnp.array([0.5, 0.5]), mu, 1.0)
    assert projected_problem(mix, 0) is not None
    sw = guidance_sweep(
        mix,
        0,
        [1.0, 4.0],
        key=jr.key(2),
        samplers=(),
        n_pf_ode=300,
        hutchinson_dim=2,
        flow_rate_steps=None,
        fp_cells=300,
        knn=False,
    )
    q = sw.laws["ddim"]
    assert abs(q["entropy/quadrature"][0] - 2.0 * LOG_2PI_E) < 1e-4
    assert np.all(np.abs(q["entropy/pf_ode"] - q["entropy/quadrature"]) < 4 * q["entropy_se/pf_ode"] + 0.02)
    assert np.all(np.abs(q["entropy/fokker_planck"] - q["entropy/quadrature"]) < 0.05)
    skew = ds.GaussianMixture(jnp.array([0.5, 0.5]), mu, jnp.array([1.0, 2.0]))
    assert projected_problem(skew, 0) is None


def test_component_splitting_with_unequal_variances():
    """A wide target class with a narrow other class at its centre: moderate guidance splits the DDIM output
    into two modes (the target is a single Gaussian); identity covariances never split."""
    mix = ds.GaussianMixture(
        jnp.array([0.5, 0.25, 0.25]), jnp.array([[0.0], [0.0], [4.0]]), jnp.array([4.0, 0.25, 1.0])
    )
    z = jnp.linspace(-5.0, 5.0, 401)[:, None]
    from diffsim.analysis.entropy import pf_ode_entropy
    from diffsim.scores.guidance import guided_mixture

    modes = [
        count_modes(np.exp(pf_ode_entropy(guided_mixture(mix, 0, w), z=z).log_density)) for w in (1.0, 3.0)
    ]
    assert modes == [1, 2]


def test_count_modes():
    x = np.linspace(-6, 6, 601)
    one = np.exp(-0.5 * x**2)
    two = np.exp(-0.5 * (x - 2) ** 2) + np.exp(-0.5 * (x + 2) ** 2)
    shoulder = np.exp(-0.5 * x**2) + 0.3 * np.exp(-0.5 * (x - 1) ** 2)
    assert (count_modes(one), count_modes(two), count_modes(shoulder)) == (1, 2, 1)
    assert count_modes(two + 1e-4 * np.exp(-0.5 * ((x - 5) / 0.1) ** 2)) == 2  # a tiny bump is ignored
    xx, yy = np.meshgrid(x[::10], x[::10], indexing="ij")
    assert (
        count_modes_2d(np.exp(-0.5 * ((xx - 2) ** 2 + yy**2)) + np.exp(-0.5 * ((xx + 2) ** 2 + yy**2))) == 2
    )


def test_bad_input(sym1d):
    with pytest.raises(ValueError, match=">= 0"):
        guidance_sweep(sym1d, 1, [-1.0, 2.0], key=jr.key(0))
    with pytest.raises(ValueError, match="increasing"):
        guidance_sweep(sym1d, 1, [3.0, 2.0], key=jr.key(0))
    with pytest.raises(ValueError, match="out of range"):
        guidance_sweep(sym1d, 2, [1.0, 2.0], key=jr.key(0))
    with pytest.raises(ValueError, match="out of range"):
        class_direction(sym1d, 5)
    with pytest.raises(ValueError, match=">= 0"):
        guided_samples(sym1d, 1, -0.5, key=jr.key(0), n=10)
    with pytest.raises(ValueError, match="samplers"):
        guidance_sweep(sym1d, 1, [1.0, 2.0], key=jr.key(0), samplers=("heun",))
    with pytest.raises(TypeError):
        clean_confidence(sym1d, 1.5, jnp.zeros((3, 1)))
    with pytest.raises(ValueError, match="shape"):
        pathwise_monotone_fraction(np.zeros(5))


def test_sweep_summary_is_json_able(sweep1d):
    import json

    d = sweep1d.to_dict()
    json.dumps(d)
    assert d["etas"] == [w - 1 for w in SCALES]
    assert set(d["laws"]) == {"ddim@200", "ddpm@200", "ddim", "ddpm"}
