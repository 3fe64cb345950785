"""Sharding over devices and the counter-based noise: the same particles on 1 and 4 devices, the counter
noise equal to rows of a batch-level ``jr.normal`` and to a hand-written scan, and bad input.

The multi-device check runs in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
set before JAX is imported (this pytest process has already initialised JAX with one CPU device).
"""

import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsim as ds
from diffsim.sampling import particle_mesh, particle_sharding, simulate_sharded
from diffsim.sampling._noise import counter_normals, counter_words


GMM = ds.GaussianMixture(
    jnp.array([0.3, 0.7]), jnp.array([[-2.0, 0.0, 1.0], [2.0, 1.0, 0.0]]), jnp.array([0.2, 0.5])
)


# --- counter-based noise ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_counter_normals_are_rows_of_a_batch_normal(dtype):
    """Independent route: JAX's own jr.normal on the full array, sliced."""
    key = jr.key(3)
    full = jr.normal(key, (11, 2, 3), dtype)
    for offset, n in [(0, 11), (4, 5), (10, 1)]:
        part = counter_normals(key, offset, n, (2, 3), dtype)
        assert part.dtype == dtype
        np.testing.assert_array_equal(np.asarray(part), np.asarray(full[offset : offset + n]))
    z = np.asarray(counter_normals(key, 0, 20_000, (1,), jnp.float64)).ravel()
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.02


@pytest.mark.parametrize(
    "offset,n,per",
    [
        (0, 5, 3),
        (2**31 - 3, 4, 7),
        (123_456_789, 3, 210_000),
        (4_000_000_000, 3, 2**20 + 3),
        (2**31, 2, 65_537),
    ],
)
def test_counter_words_are_the_64_bit_flat_index(offset, n, per):
    """Independent route: numpy's uint64 arithmetic. The counters past 2**32 (nonzero high word) are what
    lets a run hold N * draws * d >= 2**32 numbers per step."""
    hi, lo = counter_words(np.uint32(offset), n, per)
    got = (np.asarray(hi).astype(np.uint64) << np.uint64(32)) | np.asarray(lo).astype(np.uint64)
    rows = np.uint64(offset) + np.arange(n, dtype=np.uint64)
    want = rows[:, None] * np.uint64(per) + np.arange(per, dtype=np.uint64)[None, :]
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        counter_words(0, 1, 2**32)


def test_counter_noise_past_32_bit_counters():
    """Particles whose counters pass 2**32 (global index 2**30, d = 5: counters from 5.4e9) run on the
    64-bit words: the run equals a hand scan drawing ``counter_normals(wide=True)``, which the 32-bit words
    (``wide=False``, wrapped) do not give; below 2**32 the two paths are the same numbers."""
    mix = ds.GaussianMixture(jnp.array([0.5, 0.5]), jnp.stack([-jnp.ones(5), jnp.ones(5)]), 0.4)
    key, offset = jr.key(8), 2**30
    grid = ds.grids.uniform(mix.process, 5)
    x0 = jr.normal(jr.key(6), (2, 5))
    out = ds.simulate(mix, "euler_maruyama", grid, x=x0, key=key, particle_offset=offset).x
    _, key_path = jr.split(key)
    p = mix.process

    def hand(wide):
        x = x0
        for j in range(5):
            t, dt = grid[j], grid[j + 1] - grid[j]
            z = counter_normals(jr.fold_in(key_path, j), offset, 2, (1, 5), x.dtype, wide=wide)[:, 0]
            drift = jax.vmap(mix.reverse_drift, in_axes=(None, 0))(t, x)
            x = x + drift * dt + p.diffusion(t) * jnp.sqrt(-dt) * z
        return x

    chex.assert_trees_all_close(out, hand(True), rtol=1e-12, atol=1e-12)
    assert not np.allclose(np.asarray(out), np.asarray(hand(False)))
    narrow = counter_normals(key, 1000, 7, (2, 3), jnp.float64, wide=False)
    np.testing.assert_array_equal(
        np.asarray(narrow), np.asarray(counter_normals(key, 1000, 7, (2, 3), jnp.float64))
    )


def test_default_noise_is_counter_where_it_applies():
    """The default scheme: counter on fixed-grid samplers with threefry keys; per-particle keys for the
    Diffrax "sde" method and other key implementations (which counter noise cannot serve)."""
    grid = ds.grids.uniform(GMM.process, 6)
    for method in ("euler_maruyama", "ddpm"):
        default = ds.simulate(GMM, method, grid, n=5, key=jr.key(1)).x
        counter = ds.simulate(GMM, method, grid, n=5, key=jr.key(1), noise="counter").x
        np.testing.assert_array_equal(np.asarray(default), np.asarray(counter))
    rbg = jr.key(1, impl="rbg")
    default = ds.simulate(GMM, "euler_maruyama", grid, n=5, key=rbg).x
    per_particle = ds.simulate(GMM, "euler_maruyama", grid, n=5, key=rbg, noise="per_particle").x
    np.testing.assert_array_equal(np.asarray(default), np.asarray(per_particle))
    sde = ds.simulate(GMM, "sde", 4, n=3, key=jr.key(2)).x
    sde_pp = ds.simulate(GMM, "sde", 4, n=3, key=jr.key(2), noise="per_particle").x
    np.testing.assert_array_equal(np.asarray(sde), np.asarray(sde_pp))


def test_counter_noise_equals_a_hand_fused_scan():
    """simulate(noise="counter") on Euler-Maruyama is the textbook scan with jr.normal on the whole batch."""
    key = jr.key(5)
    grid = ds.grids.uniform(GMM.process, 15)
    x0 = jr.normal(jr.key(6), (9, 3))
    out = ds.simulate(GMM, "euler_maruyama", grid, x=x0, key=key, noise="counter").x
    _, key_path = jr.split(key)
    p = GMM.process

    def body(x, inp):
        j, t, tn = inp
        dt = tn - t
        z = jr.normal(jr.fold_in(key_path, j), x.shape, x.dtype)
        drift = jax.vmap(GMM.reverse_drift, in_axes=(None, 0))(t, x)
        return x + drift * dt + p.diffusion(t) * jnp.sqrt(-dt) * z, None

    ref, _ = jax.lax.scan(body, x0, (jnp.arange(15), grid[:-1], grid[1:]))
    chex.assert_trees_all_close(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method,opts", [("euler_maruyama", {}), ("pc", {"n_corrector": 2})])
def test_counter_noise_batching_and_chunking_invariance(method, opts):
    key = jr.key(11)
    grid = ds.grids.logsnr_uniform(GMM.process, 10)
    small = ds.simulate(GMM, method, grid, n=6, key=key, noise="counter", **opts)
    large = ds.simulate(GMM, method, grid, n=15, key=key, noise="counter", **opts)
    chunked = ds.simulate(GMM, method, grid, n=15, key=key, chunk_size=4, noise="counter", **opts)
    chex.assert_trees_all_close(small.x, large.x[:6], rtol=1e-12, atol=1e-12)
    chex.assert_trees_all_close(np.asarray(chunked.x), np.asarray(large.x), rtol=1e-12, atol=1e-12)
    default = ds.simulate(GMM, method, grid, n=6, key=key, **opts)
    np.testing.assert_array_equal(np.asarray(default.x), np.asarray(small.x))  # the default scheme
    per_particle = ds.simulate(GMM, method, grid, n=6, key=key, noise="per_particle", **opts)
    assert not np.allclose(per_particle.x, small.x)  # a different scheme: different (equally valid) draws
    other = ds.simulate(GMM, method, grid, n=6, key=jr.key(12), noise="counter", **opts)
    assert not np.allclose(other.x, small.x)


@pytest.mark.slow
def test_counter_noise_samples_the_right_law():
    """Same mixture law with either noise scheme: mode weights within Monte Carlo error."""
    gm = ds.GaussianMixture(jnp.array([0.25, 0.75]), jnp.array([[-3.0, 0.0], [3.0, 0.0]]), 0.3)
    out = ds.simulate(gm, "euler_maruyama", 200, n=4000, key=jr.key(0), noise="counter").x
    frac = float(np.mean(np.asarray(out[:, 0]) < 0))
    assert abs(frac - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 4000) + 0.01, frac


# --- sharding on this process's single device -------------------------------------------------------------
def test_single_device_sharded_equals_simulate():
    key = jr.key(0)
    a = ds.simulate(GMM, "euler_maruyama", 10, n=7, key=key, save="all")
    b = simulate_sharded(GMM, "euler_maruyama", 10, n=7, key=key, save="all")
    np.testing.assert_array_equal(np.asarray(a.x), np.asarray(b.x))
    np.testing.assert_array_equal(np.asarray(a.xs), np.asarray(b.xs))
    g = simulate_sharded(GMM, "euler_maruyama", 10, n=7, key=key, gather=True)
    assert isinstance(g.x, jax.Array) and isinstance(g.xs, jax.Array)  # one array kind, gathered or not
    np.testing.assert_array_equal(g.x, np.asarray(a.x))
    sh = particle_sharding(particle_mesh())
    assert sh.spec == jax.sharding.PartitionSpec("particles")


def test_bad_input():
    with pytest.raises(TypeError, match="mesh"):
        simulate_sharded(GMM, "euler_maruyama", 5, n=4, key=jr.key(0), mesh="all")
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("batch",))
    with pytest.raises(ValueError, match="particles"):
        simulate_sharded(GMM, "euler_maruyama", 5, n=4, key=jr.key(0), mesh=mesh)
    with pytest.raises(ValueError, match="at least one device"):
        particle_mesh([])
    with pytest.raises(TypeError, match="jax.Device"):
        particle_mesh(["cpu:0"])
    with pytest.raises(ValueError, match="noise"):
        ds.simulate(GMM, "euler_maruyama", 5, n=4, key=jr.key(0), noise="bogus")
    with pytest.raises(ValueError, match="counter"):
        ds.simulate(GMM, "sde", 5, n=4, key=jr.key(0), noise="counter")
    with pytest.raises(ValueError, match="threefry"):
        ds.simulate(GMM, "euler_maruyama", 5, n=4, key=jr.key(0, impl="rbg"), noise="counter")
    with pytest.raises(TypeError, match="key"):
        simulate_sharded(GMM, "euler_maruyama", 5, n=4, key=None)


# --- four forced host devices, in a subprocess ------------------------------------------------------------
_MULTI_DEVICE_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, jax.random as jr, numpy as np
    jax.config.update("jax_enable_x64", True)
    import diffsim as ds
    from diffsim.sampling import simulate_sharded, particle_mesh

    assert jax.device_count() == 4, jax.devices()
    gm = ds.GaussianMixture(jnp.array([0.3, 0.7]), jnp.array([[-2.0, 0.0, 1.0], [2.0, 1.0, 0.0]]),
                            jnp.array([0.2, 0.5]))
    key = jr.key(0)
    stats = lambda t, x: gm.posterior(t, x)
    # Identical up to floating-point rounding: every particle gets the same keys / counters and the same
    # arithmetic; XLA's CPU code for a matrix product or a vectorised loop may round the last bit
    # differently for another per-device batch length (as between two batch sizes on one device).
    methods = [("euler_maruyama", {}), ("euler_maruyama", {"noise": "counter"}), ("pc", {}), ("ddim", {})]
    n_equal = n_total = 0
    for n in (10,):  # padded to 12 = 4 x 3 (the divisible layout is checked below)
        for method, opts in methods:
            a = ds.simulate(gm, method, 12, n=n, key=key, save="all", stats=stats, **opts)
            b = simulate_sharded(gm, method, 12, n=n, key=key, save="all", stats=stats, **opts)
            for u, v in ((a.x, b.x), (a.xs, b.xs), (a.stats, b.stats)):
                u, v = np.asarray(u), np.asarray(v)
                assert u.shape == v.shape, (method, u.shape, v.shape)
                np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13, err_msg=f"{method} {opts} n={n}")
                n_equal += int(np.sum(u == v))
                n_total += u.size
    assert n_equal > 0.5 * n_total, (n_equal, n_total)  # most numbers are bit-for-bit equal
    print("bitwise equal fraction", n_equal / n_total)
    b = simulate_sharded(gm, "euler_maruyama", 12, n=12, key=key, save="all")
    assert len(b.x.sharding.device_set) == 4 and b.x.sharding.spec[0] == "particles", b.x.sharding
    assert [s.data.shape for s in b.x.addressable_shards] == [(3, 3)] * 4
    x0 = jr.normal(jr.key(1), (13, 3))
    a = ds.simulate(gm, "euler_maruyama", 20, x=x0, key=key)
    b = simulate_sharded(gm, "euler_maruyama", 20, x=x0, key=key, gather=True)
    np.testing.assert_allclose(np.asarray(a.x), b.x, rtol=1e-12, atol=1e-13)
    two = simulate_sharded(gm, "euler_maruyama", 20, x=x0, key=key, mesh=particle_mesh(jax.devices()[:2]))
    np.testing.assert_allclose(np.asarray(a.x), np.asarray(two.x), rtol=1e-12, atol=1e-13)
    print("MULTI_DEVICE_OK")
    """
)


def test_four_devices_give_identical_particles():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", _MULTI_DEVICE_SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MULTI_DEVICE_OK" in proc.stdout
    # a wrong key offset per shard would give O(1) differences; the check above allows ~1e-12
