"""Random-feature scores: frozen features, the moment quadratic against the forward-pass objective, the
closed-form gradient flow against its ODE and against optax gradient descent, the limit with its null-space
term, and the normal / tangent split of the loss on the two-point set (normal -> 0, tangent plateau)."""

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsim as ds
from diffsim.scores import random_features as rf


TWO = jnp.array([[-3.0, 0.0], [3.0, 0.0]])


@pytest.fixture(scope="module")
def setups():
    """(model, training set, moments) for both parametrisations on the two-point set (small sizes)."""
    out = {}
    for param, weighting in (("denoiser", "denoiser"), ("score", "eps")):
        ts = rf.make_training_set(
            TWO,
            key=jr.key(0),
            parametrisation=param,
            weighting=weighting,
            n_times=21,
            n_noise=16,
            time_grid="log" if param == "score" else "uniform",
        )
        model = rf.RandomFeatureScore(2, 48, key=jr.key(1), n_freqs=4, parametrisation=param)
        out[param] = (model, ts, rf.fit_moments(model, ts))
    return out


@eqx.filter_jit
def _forward_terms(model, ts):
    """Per-coordinate loss and error against the reference, by the forward pass (independent route)."""
    out = jax.vmap(lambda t, x: jax.vmap(lambda xi: model.output(t, xi))(x))(ts.times, ts.inputs)
    w = ts.weights[:, None]
    loss = jnp.sum(w * jnp.mean((out - ts.targets) ** 2, axis=1), axis=0) / model.dim
    err = jnp.sum(w * jnp.mean((out - ts.reference) ** 2, axis=1), axis=0) / model.dim
    opt = jnp.sum(w * jnp.mean((ts.reference - ts.targets) ** 2, axis=1), axis=0) / model.dim
    return loss, err, opt


@pytest.mark.parametrize("param", ["denoiser", "score"])
def test_moment_quadratic_equals_forward_objective(setups, param):
    model, ts, mom = setups[param]
    for seed in range(2):
        a = jr.normal(jr.key(10 + seed), model.readout.shape)
        m = model.with_readout(a)
        loss, err, opt = _forward_terms(m, ts)
        chex.assert_trees_all_close(mom.loss_per_coordinate(a), loss, rtol=1e-9)
        chex.assert_trees_all_close(mom.loss(a), rf.dsm_objective(m, ts), rtol=1e-9)
        chex.assert_trees_all_close(mom.error_per_coordinate(a), err, rtol=1e-8)
    chex.assert_trees_all_close(mom.L_opt, opt, rtol=1e-9)
    # the reference is the exact empirical optimum: its output at the training inputs
    emp = ds.EmpiricalScore(TWO)
    t, x = ts.times[3], ts.inputs[3, :5]
    if param == "denoiser":
        want = jax.vmap(lambda xi: emp.process.alpha(t) * emp.denoise(t, xi))(x)
    else:
        want = jax.vmap(lambda xi: emp.score(t, xi))(x)
    chex.assert_trees_all_close(ts.reference[3, :5], want, rtol=1e-12)


def test_frozen_weights_get_no_gradient(setups):
    model, ts, _ = setups["denoiser"]
    grads = eqx.filter_grad(rf.dsm_objective)(model, ts)
    for name in ("weights_x", "weights_t", "bias"):
        assert float(jnp.max(jnp.abs(getattr(grads, name)))) == 0.0
    assert float(jnp.max(jnp.abs(grads.readout))) > 0.0
    trained, _ = rf.train_readout(model, ts, learning_rate=0.001, n_steps=200)
    for name in ("weights_x", "weights_t", "bias"):
        np.testing.assert_array_equal(np.asarray(getattr(trained, name)), np.asarray(getattr(model, name)))
    assert not np.allclose(np.asarray(trained.readout), np.asarray(model.readout))


def test_closed_form_flow_solves_its_ode(setups):
    model, _, mom = setups["denoiser"]
    a0 = model.readout
    chex.assert_trees_all_close(mom.readout_at(a0, 0.0), a0, rtol=1e-12, atol=1e-12)
    sp = np.sqrt(model.width)
    for tau in (0.3, 5.0):
        a = mom.readout_at(a0, tau)
        da = jax.jacfwd(lambda s: mom.readout_at(a0, s))(jnp.asarray(tau))
        chex.assert_trees_all_close(da, -2.0 * (a @ mom.U - sp * mom.V), rtol=1e-7, atol=1e-9)
    stack = mom.readout_at(a0, jnp.array([0.3, 5.0]))
    chex.assert_trees_all_close(stack[1], mom.readout_at(a0, 5.0), rtol=1e-12)


def test_closed_form_matches_gradient_descent(setups):
    """GD with step eta on L reaches tau = eta * steps / d; its error against the flow is O(eta)."""
    model, ts, mom = setups["denoiser"]
    lam_max = float(mom.eigvals[-1])
    tau = 4.0
    diffs = []
    for n_steps in (200, 400):
        eta = tau * model.dim / n_steps
        assert eta * lam_max < 0.5 * model.dim  # stable
        trained, losses = rf.train_readout(model, ts, learning_rate=eta, n_steps=n_steps)
        a_cf = mom.readout_at(model.readout, tau)
        diffs.append(float(jnp.linalg.norm(trained.readout - a_cf) / jnp.linalg.norm(a_cf - model.readout)))
        assert np.all(np.diff(np.asarray(losses)) <= 1e-12)  # GD on a convex quadratic: monotone
    assert diffs[-1] < 2e-3, diffs
    assert 1.6 < diffs[0] / diffs[1] < 2.4, diffs  # first order in the step


def test_limit_with_null_space_term(setups):
    """Duplicated features make U exactly rank deficient: the limit keeps A(0) on the null space of U,
    matches an explicit pseudo-inverse formula, is stationary, and is where the flow goes."""
    model, ts, _ = setups["denoiser"]
    half = model.width // 2
    dup = lambda a: jnp.concatenate([a[:half], a[:half]])  # noqa: E731
    model = eqx.tree_at(
        lambda m: (m.weights_x, m.weights_t, m.bias),
        model,
        (dup(model.weights_x), dup(model.weights_t), dup(model.bias)),
    )
    mom = rf.fit_moments(model, ts)
    lam = np.asarray(mom.eigvals)
    kept = lam > 1e-12 * lam.max()
    assert kept.sum() <= half and (~kept).sum() >= half
    u, v, a0 = (np.asarray(z) for z in (mom.U, mom.V, model.readout))
    sp = np.sqrt(model.width)
    u_pinv = np.linalg.pinv(u, rcond=1e-10, hermitian=True)
    want = sp * (v @ u_pinv + a0 / sp @ (np.eye(model.width) - u @ u_pinv))
    a_inf = np.asarray(mom.readout_limit(model.readout))
    np.testing.assert_allclose(a_inf, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    null = np.asarray(mom.eigvecs)[:, ~kept]
    np.testing.assert_allclose((a_inf - a0) @ null, 0.0, atol=1e-8 * np.abs(a0).max())
    # the flow: with the spectrum spread over decades, compare on the modes that have converged
    tau = 60.0 / lam[kept].min() if lam[kept].min() > 1e-8 * lam.max() else 1e9
    q_fast = np.asarray(mom.eigvecs)[:, lam * tau > 30]
    a_tau = np.asarray(mom.readout_at(model.readout, tau))
    np.testing.assert_allclose(a_tau @ q_fast, a_inf @ q_fast, rtol=1e-6, atol=1e-6 * np.abs(a_inf).max())
    np.testing.assert_allclose(a_tau @ null, a0 @ null, atol=1e-8 * np.abs(a0).max())
    # stationary: the gradient vanishes at the limit
    np.testing.assert_allclose(a_inf @ u - sp * v, 0.0, atol=1e-7 * np.abs(sp * v).max())


def test_normal_loss_vanishes_tangent_loss_plateaus(setups):
    """Two points on the x-axis: the ridge is the x-axis, so y is normal and x tangent. The target of the
    denoiser has y = 0, so the normal loss decays to 0 (pure optimisation error); the tangent loss
    plateaus above the empirical optimum's (architectural bias)."""
    model, _, mom = setups["denoiser"]
    taus = jnp.asarray(np.geomspace(0.1, 1e4, 12))
    a_tau = mom.readout_at(model.readout, taus)
    a_inf = mom.readout_limit(model.readout)
    loss = np.asarray(mom.loss_per_coordinate(a_tau))
    loss_inf = np.asarray(mom.loss_per_coordinate(a_inf))
    err = np.asarray(mom.error_per_coordinate(a_tau))
    err_inf = np.asarray(mom.error_per_coordinate(a_inf))
    assert np.all(np.diff(loss, axis=0) < 0)  # both strictly decreasing along the flow
    assert loss_inf[1] < 1e-9 * loss[0, 1]  # normal -> 0 ...
    assert err_inf[1] < 1e-9 * loss[0, 1]
    assert float(mom.L_opt[1]) == 0.0  # ... which is also the optimum's normal loss
    bias = loss_inf[0] - float(mom.L_opt[0])
    assert bias > 0.2 * float(mom.L_opt[0]), (loss_inf, mom.L_opt)  # tangent plateau above the optimum
    assert abs(loss[-1, 0] - loss_inf[0]) < 0.05 * bias  # ... and reached: a plateau
    assert err_inf[0] > 0.5 * bias  # the architectural bias is a tangent error against the optimum
    assert err[-1, 1] < 1e-3 * err[0, 1]


def test_parametrisations_and_simulate(setups):
    model, _, _ = setups["denoiser"]
    p = model.process
    x = jnp.array([0.4, -1.2])
    for t in (0.01, 1.0):
        out = model.output(t, x)
        chex.assert_trees_all_close(model.score(t, x), (out - x) / p.sigma2(t), rtol=1e-12)
        chex.assert_trees_all_close(
            model.denoise(t, x), ds.scores.x0_from_score(p, t, x, model.score(t, x)), rtol=1e-10
        )
    smodel, _, _ = setups["score"]
    chex.assert_trees_all_close(smodel.score(0.3, x), smodel.output(0.3, x), rtol=1e-12)
    tr = ds.simulate(model, "euler_maruyama", 20, n=16, key=jr.key(0))
    chex.assert_tree_all_finite(tr.x)


def test_simpson_nodes():
    t, w = rf.simpson_nodes(0.5, 2.5, 11)
    assert abs(np.sum(w * t**3) - (2.5**4 - 0.5**4) / 4) < 1e-12  # Simpson is exact for cubics
    t, w = rf.simpson_nodes(1e-3, 10.0, 201, "log")
    assert abs(np.sum(w / t) - np.log(1e4)) < 1e-12  # d(log t) integrand is constant in the log nodes
    assert abs(np.sum(w) - (10.0 - 1e-3)) < 1e-5


def test_bad_input(setups):
    model, ts, mom = setups["denoiser"]
    with pytest.raises(ValueError, match="parametrisation"):
        rf.RandomFeatureScore(2, 8, key=jr.key(0), parametrisation="eps")
    with pytest.raises(ValueError, match="width"):
        rf.RandomFeatureScore(2, 0, key=jr.key(0))
    with pytest.raises(ValueError, match="weighting"):
        rf.make_training_set(TWO, key=jr.key(0), weighting="x0")
    with pytest.raises(ValueError, match="odd"):
        rf.make_training_set(TWO, key=jr.key(0), n_times=20)
    with pytest.raises(ValueError, match="data"):
        rf.make_training_set(jnp.zeros((0, 2)), key=jr.key(0))
    with pytest.raises(ValueError, match="t_min"):
        rf.make_training_set(TWO, key=jr.key(0), t_min=0.0)
    smodel, sts, _ = setups["score"]
    with pytest.raises(ValueError, match="parametrisation"):
        rf.fit_moments(model, sts)
    with pytest.raises(ValueError, match="parametrisation"):
        rf.train_readout(smodel, ts, learning_rate=0.1, n_steps=1)
    with pytest.raises(ValueError, match="learning_rate"):
        rf.train_readout(model, ts, learning_rate=0.0, n_steps=1)
    with pytest.raises(ValueError, match="tau"):
        mom.readout_at(model.readout, -1.0)
    with pytest.raises(ValueError, match="readout"):
        mom.readout_at(jnp.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="readout"):
        model.with_readout(jnp.zeros((3, 48)))
