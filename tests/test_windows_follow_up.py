"""Li, Karan & Chen's (2025) dimension-free window bound, its closed forms and the eps-mixture tree.

Independent routes: the closed forms (pairwise distances, Phi) against crossings of the numerical forward TV
(quadrature / Monte Carlo of :func:`submixture_tv`); the bound against the exact noising-denoising TV
(route (a), :func:`window_curve`) inside the certified window; the tree's decision times against the exact
TV of the protocol started from each child.
"""

import chex
import jax.random as jr
import numpy as np
import pytest

from diffsim.analysis import windows
from diffsim.data import hierarchy_2d
from diffsim.processes import VP
from diffsim.scores.mixture import GaussianMixture


EPS = 0.05


def _mixture(weights, means, variance=1.0):
    return GaussianMixture(np.asarray(weights), np.asarray(means, float), variance, process=VP.ou())


@pytest.fixture(scope="module")
def three_1d():
    # a fine pair {0, 1} (distance 4) far from component 2 (distance ~200): a non-empty theorem window
    return _mixture([0.3, 0.3, 0.4], [[-100.0], [-96.0], [100.0]])


def test_error_and_calibration():
    assert windows.follow_up_error(0.05, 0.0) == pytest.approx(0.05 * (1 + 1 / np.sqrt(2)))
    assert windows.follow_up_error(0.05, 4.0) == pytest.approx(0.05 * (1 + 4 / np.sqrt(2)))
    for odds in (0.0, 0.5, 3.0):
        eps = windows.follow_up_eps(0.05, odds)
        assert windows.follow_up_error(eps, odds) == pytest.approx(0.05)


def test_crossing_time_inverts_the_closed_form_tv():
    """``spherical_crossing_time`` is where ``gaussian_tv_equal_cov`` (independent formula) hits the level."""
    proc = VP.ou()
    for dist, s2, level in ((8.0, 1.0, 0.05), (8.0, 0.5, 0.9975), (30.0, 2.0, 0.3)):
        t = windows.spherical_crossing_time(dist, level, variance=s2)
        a, var = float(proc.alpha(t)), float(proc.sigma2(t))
        tv = float(windows.gaussian_tv_equal_cov(np.array([a * dist]), np.array([0.0]), a**2 * s2 + var))
        assert tv == pytest.approx(level, abs=1e-9)
    assert windows.spherical_crossing_time(1.0, 0.999) == 0.0  # already below the level at t = 0
    assert windows.spherical_crossing_time(1.0, 1.5) == 0.0
    assert windows.spherical_crossing_time(1.0, 0.0) == float("inf")


@pytest.mark.parametrize(("weights", "variance"), [((0.5, 0.5), 1.0), ((0.3, 0.7), 0.5)])
def test_two_gaussians_closed_form_equals_numerical(weights, variance):
    """Two spherical Gaussians: the closed form is exact; the numerical route crosses the exact forward TV."""
    means = [[6.0, 0.0], [-6.0, 0.0]]
    gm = _mixture(weights, means, variance)
    for s_init, s_targ in (([0], [0]), ([1], [1]), ([0], [0, 1])):
        num = windows.follow_up_bound(gm, s_init, s_targ, EPS)
        cf = windows.spherical_follow_up_bound(means, weights, s_init, s_targ, EPS, variance=variance)
        assert cf.method == "closed_form" and num.method == "numerical"
        chex.assert_trees_all_close((cf.t_start, cf.t_end), (num.t_start, num.t_end), atol=2e-3)
        assert cf.odds == pytest.approx(num.odds) and cf.error == pytest.approx(num.error)


def test_random_means_closed_form_brackets_numerical():
    """Random means in d = 8: the closed-form window lies inside the numerical one (max/min distances)."""
    rng = np.random.default_rng(3)
    means = rng.normal(scale=3.0, size=(4, 8))
    weights = np.array([0.2, 0.3, 0.25, 0.25])
    gm = _mixture(weights, means)
    for s_init, s_targ in (([0], [0]), ([0], [0, 1]), ([2], [1, 2, 3])):
        num = windows.follow_up_bound(gm, s_init, s_targ, EPS, key=jr.key(1), n_samples=4000)
        cf = windows.spherical_follow_up_bound(means, weights, s_init, s_targ, EPS)
        assert cf.t_start <= num.t_start + 0.01, (s_targ, cf, num)
        assert cf.t_end >= num.t_end - 0.01, (s_init, s_targ, cf, num)


@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_bound_holds_on_exact_window(three_1d, sampler):
    """Inside [T_end, T_start] the exact noising-denoising TV is at most eps (1 + max(1, W) / sqrt 2)."""
    gm = three_1d
    for s_init, s_targ in (([0], [0, 1]), ([0, 1], [0, 1]), ([2], [0, 1, 2])):
        b = windows.follow_up_bound(gm, s_init, s_targ, EPS)
        assert b.nonempty, b
        hi = min(b.t_start, 8.0)
        ts = np.linspace(max(b.t_end, 0.05), hi, 3)
        curve = windows.window_curve(gm, s_init, s_targ, ts, key=jr.key(2), sampler=sampler, n_outer=4000)
        assert np.all(curve.tv <= b.error), (s_init, s_targ, curve.tv, b.error)
    # and the window is not vacuous: just before T_end the fine feature is still visible
    b = windows.follow_up_bound(gm, [0], [0, 1], EPS)
    curve = windows.window_curve(
        gm, [0], [0, 1], [0.5 * b.t_end], key=jr.key(2), sampler=sampler, n_outer=4000
    )
    assert curve.tv[0] > b.error


@pytest.fixture(scope="module")
def hierarchy_tree():
    gm = hierarchy_2d()
    return gm, windows.eps_mixture_tree(gm, EPS, key=jr.key(0), n_samples=4000)


def test_eps_tree_of_the_hierarchy(hierarchy_tree):
    gm, tree = hierarchy_tree
    assert sorted(sorted(g) for g in tree.root.nested()) == [[0, 1], [2, 3]]
    assert tree.satisfies_definition() and tree.root.depth() == 2
    # noise levels are the closed-form pairwise closeness times (complete linkage)
    tau = lambda i, j: windows.spherical_crossing_time(float(np.linalg.norm(gm.means[i] - gm.means[j])), EPS)  # noqa: E731
    chex.assert_trees_all_close(
        tree.decision_times,
        (max(tau(0, 2), tau(0, 3), tau(1, 2), tau(1, 3)), tau(0, 1), tau(2, 3)),
        atol=2e-3,
    )
    inner = [n for n in tree.root.internal_nodes() if n is not tree.root]
    for n in inner:  # condition (ii) with the closed-form lower bound on the separation time
        cf = windows.spherical_follow_up_bound(
            np.asarray(gm.means), np.asarray(gm.weights), n.components, n.components, EPS
        )
        assert cf.t_start <= n.separation_time + 0.01
        assert n.noise_amount <= n.separation_time


def test_eps_tree_decisions_against_exact_windows(hierarchy_tree):
    """At each NoiseAmount(u) the protocol from any child (or u) lands within the theorem's error of p^u."""
    gm, tree = hierarchy_tree
    dec = windows.eps_tree_decisions(gm, tree, key=jr.key(4), n_outer=1000, n_gh=10)
    assert len(dec) == 2 + 2 * 3
    for d in dec:
        assert d.holds, d
    rec = windows.eps_tree_record(tree, dec)
    assert rec["depth"] == 2 and rec["satisfies_definition"] and len(rec["decisions"]) == 8
    # the exact window of the fine feature ends well before the coarse decision time: order coarse -> fine
    assert tree.decision_order[0] == "{0,1,2,3}"


def test_random_means_tree_is_flat():
    """Random means in high dimension: pairwise distances concentrate, no sub-group is separated: depth 1."""
    rng = np.random.default_rng(0)
    means = rng.normal(scale=3.0, size=(4, 64))
    gm = _mixture([0.25] * 4, means)
    tree = windows.eps_mixture_tree(gm, EPS, key=jr.key(0), n_samples=2000)
    assert tree.root.depth() == 1 and tree.satisfies_definition()
    assert len(tree.dissolved) == 2  # both internal candidates of the binary linkage tree


def test_bad_inputs(three_1d):
    gm = three_1d
    with pytest.raises(ValueError, match="eps"):
        windows.follow_up_error(1.5, 1.0)
    with pytest.raises(ValueError, match="odds"):
        windows.follow_up_eps(0.05, -1.0)
    with pytest.raises(TypeError, match="odds"):
        windows.follow_up_error(0.05, "many")
    with pytest.raises(ValueError, match="subset"):
        windows.follow_up_bound(gm, [2], [0, 1], EPS)
    with pytest.raises(ValueError, match="s_targ"):
        windows.follow_up_bound(gm, [0], [0, 7], EPS)
    with pytest.raises(ValueError, match="weights"):
        windows.spherical_follow_up_bound([[0.0], [1.0]], [0.5, 0.6], [0], [0], EPS)
    with pytest.raises(ValueError, match="means"):
        windows.spherical_follow_up_bound([0.0, 1.0], [0.5, 0.5], [0], [0], EPS)
    with pytest.raises(ValueError, match="variance"):
        windows.spherical_follow_up_bound([[0.0], [1.0]], [0.5, 0.5], [0], [0], EPS, variance=0.0)
    with pytest.raises(ValueError, match="distance"):
        windows.spherical_crossing_time(-1.0, 0.5)
    with pytest.raises(TypeError, match="tree"):
        windows.eps_tree_decisions(gm, "not a tree", key=jr.key(0))
    with pytest.raises(ValueError, match="n_samples"):
        windows.follow_up_bound(gm, [0], [0], EPS, n_samples=0)
