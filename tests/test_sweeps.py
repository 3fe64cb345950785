"""Sweeps without recompiling: guidance scales, ``t_hat``, keys and particle counts up to a bucket are traced.

Two ways to count: ``eqx.debug.assert_max_traces`` on the function a sweep calls (a retrace raises), and
XLA's backend-compile events (``jax.monitoring``), which count every compilation in the process, including
those of ``simulate``'s own compiled core. The vmapped sweep (one compiled call) must equal the loop of
single calls to 1e-12 in float64.
"""

import functools
from collections import defaultdict

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsim as ds
from diffsim.sampling._sweep import sweep, sweep_fn
from diffsim.scores.guidance import ClassifierFreeGuidance, guided_mixture


MIX = ds.GaussianMixture(
    jnp.array([0.3, 0.7]),
    jnp.array([[-2.0, 0.0], [2.0, 1.0]]),
    jnp.array([0.2, 0.5]),
    labels=jnp.array([0, 1]),
)
COND_1 = MIX.condition(1)
KEY = jr.key(7)
X0 = jr.normal(jr.key(1), (40, 2))
SCALES = jnp.linspace(0.0, 4.5, 10)
T_HATS = jnp.linspace(0.05, 0.9, 10)

_EVENTS: dict[str, int] = defaultdict(int)
jax.monitoring.register_event_duration_secs_listener(
    lambda name, duration, **kw: _EVENTS.__setitem__(name, _EVENTS[name] + 1)
)


def _compiles() -> int:
    return _EVENTS["/jax/core/compile/backend_compile_duration"]


@eqx.debug.assert_max_traces(max_traces=1)
def _guided_final(w):
    return ds.simulate(guided_mixture(MIX, 0, w), "euler_maruyama", 15, n=60, key=KEY).x


@eqx.debug.assert_max_traces(max_traces=1)
def _renoised_final(t_hat):
    return ds.noise_denoise(MIX, X0, t_hat, key=KEY, n_steps=12).x


@eqx.debug.assert_max_traces(max_traces=1)
def _cfg_trajectory(w):
    score = ClassifierFreeGuidance(MIX, COND_1, w)  # guided_mixture(MIX, 1, w, kind="cfg"), built outside
    return ds.simulate(score, "ddim", 10, x=X0, key=KEY, save="all")


def test_guidance_sweep_compiles_once_and_equals_the_loop():
    out = sweep(_guided_final, SCALES)  # traced once (assert_max_traces raises on a second trace)
    assert out.shape == (10, 60, 2)
    reversed_scales = SCALES[::-1]
    before = _compiles()
    again = sweep(_guided_final, reversed_scales)  # new values, same shapes: no new compilation
    assert _compiles() == before
    np.testing.assert_array_equal(np.asarray(again), np.asarray(out)[::-1])
    loop = np.stack(
        [
            np.asarray(ds.simulate(guided_mixture(MIX, 0, w), "euler_maruyama", 15, n=60, key=KEY).x)
            for w in SCALES
        ]
    )
    np.testing.assert_allclose(np.asarray(out), loop, rtol=0, atol=1e-12)
    assert np.ptp(loop[:, :, 0].mean(1)) > 0.1  # the scales matter


def test_t_hat_sweep_compiles_once_and_equals_the_loop():
    out = sweep(_renoised_final, T_HATS)
    assert out.shape == (10, 40, 2)
    other = T_HATS * 0.9
    before = _compiles()
    sweep(_renoised_final, other).block_until_ready()
    assert _compiles() == before
    loop = np.stack([np.asarray(ds.noise_denoise(MIX, X0, t, key=KEY, n_steps=12).x) for t in T_HATS])
    np.testing.assert_allclose(np.asarray(out), loop, rtol=0, atol=1e-12)


def test_sweep_returns_whole_trajectories():
    traj = sweep(_cfg_trajectory, SCALES[:4])
    assert traj.xs.shape == (4, 11, 40, 2) and traj.x.shape == (4, 40, 2)
    single = ds.simulate(guided_mixture(MIX, 1, SCALES[2], kind="cfg"), "ddim", 10, x=X0, key=KEY, save="all")
    np.testing.assert_allclose(np.asarray(traj.xs[2]), np.asarray(single.xs), rtol=0, atol=1e-12)


def test_sweep_over_keys_equals_separate_seeds():
    keys = jr.split(KEY, 5)

    def final(k):
        return ds.simulate(MIX, "euler_maruyama", 8, n=30, key=k).x

    out = sweep(final, keys)
    for i in range(5):
        np.testing.assert_allclose(np.asarray(out[i]), np.asarray(final(keys[i])), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda w: ds.simulate(guided_mixture(MIX, 0, w), "euler_maruyama", 15, n=60, key=KEY), id="scale"
        ),
        pytest.param(lambda w: ds.noise_denoise(MIX, X0, 0.1 + 0.1 * w, key=KEY, n_steps=12), id="t_hat"),
        pytest.param(
            lambda w: ds.simulate(MIX, "euler_maruyama", 15, n=60, key=jr.fold_in(KEY, int(10 * w))), id="key"
        ),
        pytest.param(lambda w: ds.simulate(MIX, "euler_maruyama", 15, x=X0 * (1.0 + w), key=KEY), id="x"),
    ],
)
def test_a_loop_of_plain_calls_does_not_recompile(make):
    """Ten plain ``simulate`` / ``noise_denoise`` calls with new numbers: only the first compiles."""
    jax.block_until_ready(make(0.0).x)
    before = _compiles()
    for w in np.linspace(0.1, 4.0, 10):
        jax.block_until_ready(make(float(w)).x)
    assert _compiles() == before


def test_pad_to_reuses_one_compilation_and_keeps_the_particles():
    """Particle counts up to a bucket: the run compiles once; only the tiny slice is per size."""
    sizes = [5, 17, 40, 64]
    ref = {n: np.asarray(ds.simulate(MIX, "euler_maruyama", 9, n=n, key=KEY).x) for n in sizes}
    ds.simulate(MIX, "euler_maruyama", 9, n=3, key=KEY, pad_to=64)
    counts = []
    for n in sizes:
        before = _compiles()
        out = ds.simulate(MIX, "euler_maruyama", 9, n=n, key=KEY, pad_to=64)
        counts.append(_compiles() - before)
        # as for chunking: equal up to XLA's batch-size-dependent vectorisation (1e-16 here)
        np.testing.assert_allclose(np.asarray(out.x), ref[n], rtol=1e-12, atol=1e-12)
    assert max(counts) <= 1  # at most the slice to N particles; the sampling run itself is not recompiled
    xs = ds.simulate(MIX, "euler_maruyama", 9, x=X0[:11], key=KEY, save="all", pad_to=40, noise="counter")
    full = ds.simulate(MIX, "euler_maruyama", 9, x=X0[:11], key=KEY, save="all", noise="counter")
    np.testing.assert_allclose(np.asarray(xs.xs), np.asarray(full.xs), rtol=1e-12, atol=1e-12)


def test_pad_to_bad_input():
    with pytest.raises(ValueError, match="pad_to"):
        ds.simulate(MIX, "euler_maruyama", 5, n=10, key=KEY, pad_to=4)
    with pytest.raises(ValueError, match="not both"):
        ds.simulate(MIX, "euler_maruyama", 5, n=10, key=KEY, pad_to=16, chunk_size=4)
    with pytest.raises(TypeError, match="pad_to"):
        ds.simulate(MIX, "euler_maruyama", 5, n=10, key=KEY, pad_to=16.0)


def test_repeated_calls_reuse_the_resolution():
    """The memo: the same sampler, grid and saved times come back; a new grid array is checked again."""
    a = ds.simulate(MIX, "euler_maruyama", 6, n=10, key=KEY, save=2)
    b = ds.simulate(MIX, "euler_maruyama", 6, n=10, key=KEY, save=2)
    assert a.ts is b.ts
    np.testing.assert_array_equal(np.asarray(a.xs), np.asarray(b.xs))
    bad = jnp.array([1.0, 0.5, 0.7])
    for _ in range(2):  # checked on every call with an unchecked array
        with pytest.raises(ValueError, match="decreasing"):
            ds.simulate(MIX, "euler_maruyama", bad, n=4, key=KEY)
    nan_x = jnp.full((3, 2), jnp.nan)
    for _ in range(2):
        with pytest.raises(ValueError, match="non-finite"):
            ds.simulate(MIX, "euler_maruyama", 4, x=nan_x, key=KEY)


def test_sweep_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        sweep(_guided_final)
    with pytest.raises(ValueError, match="one leading batch size"):
        sweep(lambda a, b: a + b, jnp.ones(3), jnp.ones(4))
    with pytest.raises(TypeError, match="callable"):
        sweep_fn(3)


def test_t_end_sweep_equals_the_loop():
    def renoised(t_end):
        return ds.noise_denoise(MIX, X0, 0.8, key=KEY, n_steps=6, t_end=t_end).x

    ends = jnp.array([0.01, 0.05, 0.2])
    out = sweep(renoised, ends)
    loop = np.stack([np.asarray(renoised(float(t))) for t in ends])
    np.testing.assert_allclose(np.asarray(out), loop, rtol=0, atol=1e-12)


def test_particle_offset_continues_the_population():
    """Two calls with consecutive ``particle_offset`` equal one call over all particles (prior draws and
    per-step noise of a stochastic sampler), for both noise schemes; a bad offset is a clear error."""
    mix = ds.GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [0.5, 1.0], process=ds.VP.linear())
    for noise in ("per_particle", "counter"):
        whole = ds.simulate(mix, "ddpm", 8, n=7, key=jr.key(3), noise=noise).x
        first = ds.simulate(mix, "ddpm", 8, n=3, key=jr.key(3), noise=noise).x
        rest = ds.simulate(mix, "ddpm", 8, n=4, key=jr.key(3), noise=noise, particle_offset=3).x
        np.testing.assert_allclose(np.concatenate([first, rest]), whole, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="particle_offset"):
        ds.simulate(mix, "ddpm", 8, n=3, key=jr.key(3), particle_offset=-1)
    with pytest.raises(TypeError, match="particle_offset"):
        ds.simulate(mix, "ddpm", 8, n=3, key=jr.key(3), particle_offset=1.5)


# --- sampler options: an option passed as a JAX array is traced ------------------------------------------
ETAS = jnp.linspace(0.1, 1.0, 10)
_OPTION_SAMPLERS = {
    "ddim": ("eta", ETAS),
    "euler_ancestral": ("eta", ETAS),
    "dpmpp_2s_ancestral": ("eta", ETAS),
    "dpmpp_2m_sde": ("eta", ETAS),
    "dpmpp_3m_sde": ("eta", ETAS),
    "heun": ("churn", jnp.linspace(0.5, 5.0, 10)),
    "pc": ("snr", jnp.linspace(0.05, 0.3, 10)),
}


def _with_option(method, value):
    name = _OPTION_SAMPLERS[method][0]
    return ds.simulate(MIX, method, 12, x=X0, key=KEY, **{name: value}).x


@pytest.mark.filterwarnings("ignore:Heun churn moves")  # the churned first step is clamped to t_max
@pytest.mark.parametrize("method", list(_OPTION_SAMPLERS))
def test_sampler_option_as_array_is_traced_and_equals_the_python_number(method):
    """A loop over ten option values passed as arrays compiles once; each result equals the call with the
    Python number (a compile-time constant, the default path) to 1e-12; one vmapped sweep equals the loop."""
    values = _OPTION_SAMPLERS[method][1]
    arrays = [jnp.asarray(v) for v in np.asarray(values)]  # (indexing `values` would itself compile)
    jax.block_until_ready(_with_option(method, arrays[0]))
    before = _compiles()
    loop = [np.asarray(_with_option(method, v)) for v in arrays]
    assert _compiles() == before, f"{method}: an option passed as an array recompiled"
    for v, got in zip(np.asarray(values)[::3], loop[::3], strict=True):
        np.testing.assert_allclose(got, np.asarray(_with_option(method, float(v))), rtol=0, atol=1e-12)
    swept = sweep(functools.partial(_OPTION_FNS[method]), values)
    np.testing.assert_allclose(np.asarray(swept), np.stack(loop), rtol=0, atol=1e-12)
    assert np.ptp(np.stack(loop)[:, :, 0].mean(1)) > 0  # the option matters


_OPTION_FNS = {m: functools.partial(_with_option, m) for m in _OPTION_SAMPLERS}


def test_zero_option_traced_in_a_sweep_adds_exactly_no_noise():
    """Inside a sweep an option is traced, so the kernel keeps its noisy structure; at eta = 0 the noise it
    adds is exactly zero, so the result is the deterministic DDIM's."""
    swept = sweep(_OPTION_FNS["ddim"], jnp.array([0.0, 0.5]))
    np.testing.assert_allclose(
        np.asarray(swept[0]), np.asarray(_with_option("ddim", 0.0)), rtol=0, atol=1e-12
    )


def test_sampler_option_bad_input():
    from diffsim.sampling import get_sampler

    with pytest.raises(ValueError, match="eta"):
        get_sampler("ddim", eta=jnp.asarray(1.5))
    with pytest.raises(ValueError, match="`eta` must be a scalar"):
        get_sampler("ddim", eta=jnp.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="contradicts"):
        get_sampler("euler_ancestral", eta=0.0, noisy=True)
    with pytest.raises(ValueError, match="churn"):
        get_sampler("heun", churn=jnp.asarray(-1.0))
