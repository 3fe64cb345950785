"""``model_guidance_sweep`` (guidance on any model) against the exact routes of the guidance study.

Oracle: the ``sym1d`` case of the ``guidance`` study (``N(-2, 1)``, ``N(2, 1)``, target ``+``, OU process),
wrapped as OPAQUE denoisers (``CallableScore`` of the mixture's denoiser: no closed form reaches the
sweep), the conditional branch being the target class's component mixture, measured with the exact clean
posterior classifier. The exact routes are the guidance study's: Gauss-Hermite quadrature through the
PF-ODE for DDIM, the Fokker-Planck equation for DDPM (continuous limits; 1000 log-SNR steps make the
samplers' discretisation error small against the Monte-Carlo error, measured in docs/any-model/guidance.md).
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from diffsim.analysis import ModelGuidanceSweep, model_guidance_sweep
from diffsim.analysis.guidance import guidance_sweep
from diffsim.data import guidance_cases
from diffsim.scores import ClassifierFreeGuidance, ClassifierGuidance
from diffsim.scores.adapters import CallableClassifier, CallableScore
from diffsim.scores.guidance import MixtureClassifier


SCALES = (1.0, 4.0)
N = 4_000
STEPS = 1_000
Z = 4.0  # tolerances: Z standard errors (+ the exact route's own numerical error, measured)


def _opaque(mix):
    return CallableScore(
        lambda x, t: jax.vmap(mix.denoise)(t, x), mix.process, (mix.dim,), parametrisation="x0"
    )


@pytest.fixture(scope="module")
def problem():
    case = guidance_cases(2.0, 8, 0)["sym1d"]
    mix, label = case.mixture, case.label
    exact = MixtureClassifier(mix)

    def logits(x):  # the exact clean posterior classifier p_0(y | x), as any callable batch -> logits
        return jax.vmap(lambda z: exact.log_probs(0.0, z))(x)

    cfg = ClassifierFreeGuidance(_opaque(mix), _opaque(mix.condition(label)), 1.0)
    return mix, label, logits, cfg


@pytest.fixture(scope="module")
def exact(problem):
    mix, label, _, _ = problem
    sw = guidance_sweep(
        mix, label, SCALES, key=jr.key(1), samplers=(), n_pf_ode=50, flow_rate_steps=None, knn=False
    )
    return sw.laws


@pytest.fixture(scope="module")
def swept(problem):
    _, label, logits, cfg = problem
    return model_guidance_sweep(cfg, SCALES, logits, label, key=jr.key(0), n=N, grid=STEPS, keep_samples=True)


def test_oracle_confidence_and_entropy(exact, swept):
    """DDPM and DDIM: confidence, target fraction, kNN entropy and variance agree with the exact routes."""
    assert isinstance(swept, ModelGuidanceSweep) and swept.vectorised
    assert swept.confidence.shape == (2, len(SCALES)) and swept.samplers == ("ddpm", "ddim")
    # the Fokker-Planck grid's own entropy error, measured where quadrature is exact (DDIM)
    fp_err = float(
        np.max(np.abs(exact["ddim"]["entropy/fokker_planck"] - exact["ddim"]["entropy/quadrature"]))
    )
    assert fp_err < 0.03
    routes = {
        "ddim": ("confidence", "entropy/quadrature", 0.0),
        "ddpm": ("confidence", "entropy/fokker_planck", fp_err),
    }
    for sampler, (conf_key, ent_key, ent_extra) in routes.items():
        i = swept.index(sampler)
        conf, h = exact[sampler][conf_key], exact[sampler][ent_key]
        tol_c = Z * swept.confidence_se[i] + 2e-6  # + the quadrature/FP resolution at confidence ~1
        tol_h = Z * swept.knn_entropy_se[i] + ent_extra
        np.testing.assert_array_less(np.abs(swept.confidence[i] - conf), tol_c)
        np.testing.assert_array_less(np.abs(swept.knn_entropy[i] - h), tol_h)
        # the tolerances resolve the effect of guidance: the test would fail with the scales swapped
        assert np.all(np.abs(swept.confidence[i] - conf[::-1]) > tol_c)
        assert np.all(np.abs(swept.knn_entropy[i] - h[::-1]) > tol_h)
        # per-coordinate variance (d = 1: the variance along u), with the standard error of a variance
        x = swept.samples[i][..., 0]
        se_var = np.sqrt(np.var((x - x.mean(1, keepdims=True)) ** 2, axis=1) / N)
        np.testing.assert_array_less(
            np.abs(swept.pixel_variance[i] - exact[sampler]["var_u"]), Z * se_var + 2e-3
        )
        # the target fraction is the probability mass where the exact posterior favours the target
        hit = (x > 0).mean(1)
        np.testing.assert_allclose(swept.target_fraction[i], hit, atol=1e-12)
    # Wu et al.: guidance raises confidence and lowers entropy, more for DDIM than DDPM
    assert np.all(np.diff(swept.confidence, axis=1) > 0) and np.all(np.diff(swept.knn_entropy, axis=1) < 0)
    assert swept.knn_entropy[1, -1] < swept.knn_entropy[0, -1] - 0.2


def test_classifier_guidance_loop_and_features(problem, exact):
    """Classifier guidance (opaque base + opaque noisy classifier) gives the CFG outputs of the same
    mixture pathwise; the loop over scales equals the vmapped sweep; kNN entropy follows the features."""
    mix, label, logits, cfg = problem
    noisy = CallableClassifier(
        lambda x, t: jax.vmap(MixtureClassifier(mix).log_probs)(t, x), mix.process, (1,), 2, time_input="t"
    )
    cg = ClassifierGuidance(_opaque(mix), noisy, label)
    kw = dict(key=jr.key(3), n=300, grid=50, keep_samples=True)
    a = model_guidance_sweep(cfg, SCALES, logits, label, **kw)
    b = model_guidance_sweep(cg, SCALES, logits, label, vectorise=False, **kw)
    assert not b.vectorised
    np.testing.assert_allclose(a.samples, b.samples, atol=1e-8)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-8)
    # the measuring classifier as a diffsim noisy classifier at t = 0: the same numbers
    c = model_guidance_sweep(cfg, SCALES, MixtureClassifier(mix), label, classifier_time=0.0, **kw)
    np.testing.assert_allclose(c.confidence, a.confidence, atol=1e-12)
    # H(2X) = H(X) + d log 2 for the Kozachenko-Leonenko estimator (distances scale by 2)
    f = model_guidance_sweep(cfg, SCALES, logits, label, features=lambda x: 2.0 * x, **kw)
    np.testing.assert_allclose(f.knn_entropy, a.knn_entropy + np.log(2.0), atol=1e-9)
    np.testing.assert_allclose(f.pixel_variance, a.pixel_variance, atol=1e-12)
    d = a.to_dict()
    assert d["samplers"]["ddim"]["confidence"] == a.confidence[1].tolist()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(scales=(1.0, -1.0)), ValueError, "`scales`"),
        (dict(scales=(1.0, float("nan"))), ValueError, "`scales`"),
        (dict(scales=()), ValueError, "`scales`"),
        (dict(samplers=("ddpm", "nope")), ValueError, "`samplers`"),
        (dict(classifier=lambda x: jnp.zeros((x.shape[0],))), ValueError, "`classifier`"),
        (dict(classifier=lambda x: jnp.zeros((3, 2))), ValueError, "`classifier`"),
        (dict(features=lambda x: x[:2]), ValueError, "`features`"),
        (dict(target=5), ValueError, "`target`"),
        (
            dict(guided="cfg"),
            TypeError,
            "guided",
        ),  # the function's own error or the type checker's: both name it
        (dict(grid=jnp.array([0.1, 0.5])), ValueError, "`grid`"),
    ],
)
def test_bad_inputs(problem, kwargs, error, match):
    _, label, logits, cfg = problem
    args = dict(guided=cfg, scales=SCALES, classifier=logits, target=label, key=jr.key(0), n=20, grid=5)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        model_guidance_sweep(**args)
