"""Conditional denoisers over token subsets: the exact conditional mixture against independent routes
(the foundation's GaussianMixture restricted to consistent components, autodiff, Bayes' rule,
marginalisation), and the adapter over token-conditional networks."""

import itertools

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffsim.data.synthetic import TokenMixture, pid_gate
from diffsim.processes import VE, VP
from diffsim.scores.conditional import (
    ConditionalMixture,
    TokenNetworkDenoiser,
    channel_coefficients,
    subset_mask,
)
from diffsim.scores.mixture import GaussianMixture
from diffsim.scores.nn import AbstractTokenScore, MLPScore


def _random_token_mixture(seed=0, d=3):
    """Three token slots (alphabets 2, 3, 2), one component per tuple with a random positive weight,
    full covariances; a few tuples are left out so that some conditions have zero prior."""
    rng = np.random.default_rng(seed)
    tuples = [t for t in itertools.product(range(2), range(3), range(2)) if t not in ((1, 2, 0), (0, 1, 1))]
    k = len(tuples)
    w = rng.uniform(0.5, 1.5, k)
    w /= w.sum()
    means = rng.normal(size=(k, d)) * 2.0
    a = rng.normal(size=(k, d, d)) * 0.5
    covs = np.einsum("kij,klj->kil", a, a) + 0.2 * np.eye(d)
    mix = GaussianMixture(w, means, covs, process=VP.ou())
    return TokenMixture(mix, np.asarray(tuples, np.int32), (2, 3, 2), ("a", "b", "c"))


@pytest.fixture(scope="module")
def tmix():
    return _random_token_mixture()


@pytest.fixture(scope="module")
def model(tmix):
    return ConditionalMixture.from_token_mixture(tmix)


_eps = jax.jit(lambda m, lam, x, tok, mask: m.eps(lam, x, tok, mask))
_logp = jax.jit(lambda m, lam, x, tok, mask: m.log_prob(lam, x, tok, mask))
_score = jax.jit(lambda m, lam, x, tok, mask: m.score(lam, x, tok, mask))
_denoise = jax.jit(lambda m, lam, x, tok, mask: m.denoise(lam, x, tok, mask))
_grad_logp = jax.jit(jax.grad(lambda x, m, lam, tok, mask: m.log_prob(lam, x, tok, mask)))
_data_logp = jax.jit(lambda m, x, tok, mask: m.data_log_prob(x, tok, mask))


def test_eps_and_density_match_restricted_mixture_for_every_subset(tmix, model):
    """Independent route: the foundation's GaussianMixture restricted to the consistent components
    (TokenMixture.condition), evaluated at the OU time of the log-SNR (alpha_t = a there, so x_t = x)."""
    proc = VP.ou()
    x = jnp.asarray([0.3, -1.2, 0.8])
    tokens = jnp.asarray([1, 1, 0], jnp.int32)
    lams = jnp.asarray([-3.0, 0.5, 4.0])
    ts = proc.t_from_log_snr(lams)
    chex.assert_trees_all_close(proc.alpha(ts), channel_coefficients(lams)[0], rtol=1e-12)
    ours = jax.jit(
        jax.vmap(
            lambda lam, mask: (model.eps(lam, x, tokens, mask), model.log_prob(lam, x, tokens, mask)),
            in_axes=(0, None),
        )
    )
    theirs = jax.jit(jax.vmap(lambda m, t: (m.eps(t, x), m.log_prob(t, x)), in_axes=(None, 0)))
    for subset in [(), (0, 2), (0, 1, 2)]:  # marginalising over all, one and no slots
        ref = tmix.condition({j: int(tokens[j]) for j in subset})
        e_ours, lp_ours = ours(lams, subset_mask(3, subset))
        e_ref, lp_ref = theirs(ref, ts)
        chex.assert_trees_all_close(e_ours, e_ref, rtol=1e-9, atol=1e-12)
        chex.assert_trees_all_close(lp_ours, lp_ref, rtol=1e-9)


def test_score_is_gradient_of_log_prob(model):
    x = jnp.asarray([1.0, 0.2, -0.5])
    tok = jnp.asarray([0, 2, 1], jnp.int32)
    for subset in [(), (0,), (1, 2), (0, 1, 2)]:
        mask = subset_mask(3, subset)
        chex.assert_trees_all_close(
            _score(model, 1.3, x, tok, mask), _grad_logp(x, model, 1.3, tok, mask), rtol=1e-8, atol=1e-10
        )


def test_denoise_is_tweedie(model):
    x = jnp.asarray([1.0, 0.2, -0.5])
    tok = jnp.asarray([0, 2, 1], jnp.int32)
    mask = subset_mask(3, (0,))
    lam = 0.7
    a, b = channel_coefficients(lam)
    s = _score(model, lam, x, tok, mask)
    chex.assert_trees_all_close(_denoise(model, lam, x, tok, mask), (x + b**2 * s) / a, rtol=1e-10)


def test_marginalisation_over_missing_tokens(tmix, model):
    """p(x | y_a) = sum_{y_b, y_c} p(y_b, y_c | y_a) p(x | y_a, y_b, y_c): weights are marginalised."""
    prior = model.token_prior
    chex.assert_trees_all_close(prior, tmix.prior, rtol=1e-12)
    x = jnp.asarray([0.1, 0.4, -0.3])
    full = subset_mask(3, (0, 1, 2))
    ya = 1
    terms = []
    for yb in range(3):
        for yc in range(2):
            if prior[ya, yb, yc] > 0:
                lp = _data_logp(model, x, jnp.asarray([ya, yb, yc], jnp.int32), full)
                terms.append(np.log(prior[ya, yb, yc] / prior[ya].sum()) + float(lp))
    lhs = _data_logp(model, x, jnp.asarray([ya, 0, 0], jnp.int32), subset_mask(3, (0,)))
    chex.assert_trees_all_close(lhs, np.logaddexp.reduce(terms), rtol=1e-10)


def test_token_posterior_is_bayes(model):
    """p(y | x_lambda, y_S) from responsibilities equals Bayes over the exact conditional densities."""
    prior = model.token_prior
    x = jnp.asarray([0.5, -0.2, 1.0])
    cond = jnp.asarray([0, 0, 1], jnp.int32)
    mask = subset_mask(3, (2,))  # condition on slot c = 1
    full = subset_mask(3, (0, 1, 2))
    ys = [y for y in itertools.product(range(2), range(3), range(2)) if prior[y] > 0 and y[2] == 1]
    toks = jnp.asarray(ys, jnp.int32)
    lp_data = jax.jit(jax.vmap(lambda t: model.data_log_prob(x, t, full)))(toks)
    lp_lam = jax.jit(jax.vmap(lambda t: model.log_prob(0.3, x, t, full)))(toks)
    posts = jax.jit(
        lambda: (model.token_posterior(0.3, x, cond, mask), model.data_token_posterior(x, cond, mask))
    )()
    for post, lp in ((posts[0], lp_lam), (posts[1], lp_data)):
        ref = np.zeros_like(prior)
        for y, v in zip(ys, np.asarray(lp), strict=False):
            ref[y] = prior[y] * np.exp(v)
        chex.assert_trees_all_close(np.asarray(post), ref / ref.sum(), atol=1e-10)


def test_eps_conditions_share_the_noisy_point(model):
    x = jnp.asarray([0.5, -0.2, 1.0])
    toks = jnp.asarray([[0, 0, 0], [1, 2, 1], [0, 1, 0]], jnp.int32)
    masks = jnp.asarray([[False] * 3, [True, False, True], [True, True, True]])
    out = jax.jit(lambda t, m: model.eps_conditions(-0.4, x, t, m))(toks, masks)
    chex.assert_shape(out, (3, 3))
    one_by_one = jax.jit(jax.vmap(lambda t, m: model.eps(-0.4, x, t, m)))(toks, masks)  # the generic route
    chex.assert_trees_all_close(out, one_by_one, rtol=1e-10, atol=1e-14)


def test_gate_conditional_denoiser_is_single_component_when_tokens_fix_it():
    """AND gate: given y1 = 0 every consistent component has g = 0 (one mean, std 0.5), so the
    conditional denoiser is the single-Gaussian Wiener filter mu + a s^2 / (a^2 s^2 + b^2) (x - a mu),
    while given (1, 1) it is the g = 1 filter."""
    m = ConditionalMixture.from_token_mixture(pid_gate("AND", separation=6.0, std=0.5))
    mu = np.asarray(m.means)  # components (0,0), (0,1), (1,0), (1,1): g = 0, 0, 0, 1
    lam = 2.0
    a, b = (float(v) for v in channel_coefficients(lam))
    x = jnp.asarray([0.4, -1.1])
    gain = a * 0.25 / (a**2 * 0.25 + b**2)
    for tok, mask, g_mean in (([0, 1], [True, False], mu[0]), ([1, 1], [True, True], mu[3])):
        got = _denoise(m, lam, x, jnp.asarray(tok), jnp.asarray(mask))
        chex.assert_trees_all_close(got, g_mean + gain * (np.asarray(x) - a * g_mean), rtol=1e-10)


# --- network adapter -------------------------------------------------------------------------------
class _MixtureNet(AbstractTokenScore):
    """A 'network' whose output is the exact conditional mixture (null id = slot unconditioned), on an
    arbitrary process: lets the adapter's log-SNR <-> time and scaling be checked exactly."""

    cm: ConditionalMixture
    process: object
    alphabet_sizes: tuple = eqx.field(static=True)
    parametrisation: str = eqx.field(static=True)

    def __init__(self, cm, process, alphabet_sizes):
        self.cm, self.process, self.alphabet_sizes, self.parametrisation = cm, process, alphabet_sizes, "eps"

    @property
    def dim(self):
        return self.cm.dim

    def raw(self, t, x, tokens):
        lam = self.process.log_snr(t)
        a, _ = channel_coefficients(lam)
        mask = tokens < jnp.asarray(self.alphabet_sizes, tokens.dtype)
        tok = jnp.where(mask, tokens, 0)
        return self.cm.eps(lam, x * a / self.process.alpha(t), tok, mask)


@pytest.mark.parametrize("process", [VP.linear(), VE(0.01, 50.0)], ids=["vp-linear", "ve"])
def test_network_adapter_reproduces_exact_model(model, process):
    net = _MixtureNet(model, process, model.alphabet_sizes)
    adapter = TokenNetworkDenoiser(net, model.token_prior)
    x = jnp.asarray([0.5, -0.2, 1.0])
    tok = jnp.asarray([1, 0, 1], jnp.int32)
    lo, hi = adapter.log_snr_range
    lams = jnp.asarray([-2.0, 0.3, 3.0])
    assert lo < float(lams.min()) and float(lams.max()) < hi
    masks = jnp.asarray([[False] * 3, [True, False, False], [False, True, True], [True] * 3])
    grid = jax.vmap(
        lambda lam: jax.vmap(lambda mk: (adapter.eps(lam, x, tok, mk), model.eps(lam, x, tok, mk)))(masks)
    )
    ours, exact = jax.jit(grid)(lams)
    chex.assert_trees_all_close(ours, exact, rtol=1e-7, atol=1e-9)
    chex.assert_trees_all_close(adapter.token_prior, model.token_prior)


def test_network_adapter_masks_tokens_to_null(key):
    net = MLPScore(4, key=key, alphabet_sizes=(2, 3), width=16, depth=1, process=VP.linear())
    adapter = TokenNetworkDenoiser(net)
    x = jnp.asarray([0.1, -0.3, 0.2, 0.9])
    lam = 1.5
    t = net.process.t_from_log_snr(lam)
    tok = jnp.asarray([1, 2], jnp.int32)
    keeps = jnp.asarray([[True, False], [False, True], [True, True], [False, False]])
    ours = jax.jit(jax.vmap(lambda k: adapter.eps(lam, x, tok, k)))(keeps)
    null = net.null_tokens
    theirs = jax.jit(jax.vmap(lambda k: net.eps(t, x, jnp.where(k, tok, null))))(keeps)  # VP: alpha_t = a
    chex.assert_trees_all_close(ours, theirs, rtol=1e-6, atol=1e-8)
    assert not np.allclose(ours[0], ours[3])  # the token changes the output: the test can fail
    assert adapter.token_prior is None
    assert adapter.alphabet_sizes == (2, 3)


# --- bad input ---------------------------------------------------------------------------------------
def test_bad_tokens_and_masks(model):
    with pytest.raises(ValueError, match="token slot"):
        model.check_tokens(jnp.asarray([0, 1], jnp.int32))
    with pytest.raises(ValueError, match="slot 1 holds 3"):
        model.check_tokens(jnp.asarray([0, 3, 0], jnp.int32))
    with pytest.raises(TypeError, match="integer"):
        model.check_tokens(jnp.asarray([0.0, 1.0, 0.0]))
    with pytest.raises(TypeError, match="boolean"):
        model.check_mask(jnp.asarray([0, 1, 0]))
    with pytest.raises(ValueError, match="zero prior"):  # (1, 2, 0) was left out of the mixture
        model.check_condition(jnp.asarray([1, 2, 0], jnp.int32), jnp.asarray([True, True, True]))
    model.check_condition(jnp.asarray([1, 2, 0], jnp.int32), jnp.asarray([True, True, False]))  # fine
    with pytest.raises(ValueError, match="out of range"):
        subset_mask(3, (3,))
    with pytest.raises(ValueError, match="repeated"):
        model.mask((0, 0))


def test_bad_constructor_arguments(tmix, key):
    with pytest.raises(ValueError, match="component_tokens"):
        ConditionalMixture(tmix.mixture, np.zeros((3, 3), np.int32), (2, 3, 2))
    with pytest.raises(ValueError, match="slot 1"):
        ConditionalMixture(
            tmix.mixture, np.full((tmix.mixture.n_components, 3), 2, np.int32) * [0, 2, 0], (2, 2, 2)
        )
    with pytest.raises(TypeError, match="GaussianMixture"):
        ConditionalMixture("not a mixture", np.zeros((1, 1), np.int32), (2,))
    with pytest.raises(TypeError, match="TokenMixture"):
        ConditionalMixture.from_token_mixture(tmix.mixture)
    net = MLPScore(2, key=key, alphabet_sizes=(2, 2), width=8, depth=1)
    with pytest.raises(ValueError, match="token_prior"):
        TokenNetworkDenoiser(net, np.full((2, 3), 1 / 6))
    with pytest.raises(ValueError, match="sum to one"):
        TokenNetworkDenoiser(net, np.full((2, 2), 0.3))
    with pytest.raises(TypeError, match="AbstractTokenScore"):
        TokenNetworkDenoiser(tmix.mixture)
