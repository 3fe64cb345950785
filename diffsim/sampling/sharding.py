r"""Spread particles over all devices, and over hosts, with ``jax.sharding``.

Particles are independent given the score, so the natural parallelism is data parallelism over the particle
axis: a one-axis :class:`jax.sharding.Mesh` over every device (``jax.devices()``: all local devices, and every
host's devices once :func:`initialize_multihost` has run), and a :class:`~jax.sharding.NamedSharding` that
splits the particle axis of the starting points across it. The compiled ``simulate`` core is then
partitioned by XLA's SPMD partitioner: every device steps its own block of particles, the (small) score
parameters are replicated, and no communication happens inside the time loop.

**Identical results.** Particle ``i``'s randomness depends only on its global index ``i`` (its key is
``fold_in(k_path, i)``, or with ``noise="counter"`` its normals are counter-hashed from ``i``), and every
operation of a step acts on one particle at a time. So :func:`simulate_sharded` returns the same particles
as :func:`diffsim.simulate` with the same key, on one device or many. When ``N`` is not a multiple of the
number of devices the particle axis is padded with extra particles (indices ``N, N+1, ...``) that are
dropped from the result.

**Several hosts.** Start the same program on every host, call :func:`initialize_multihost` first (it wraps
``jax.distributed.initialize``), build the same score and key everywhere and call :func:`simulate_sharded`.
The result holds global arrays whose shards live on the hosts that computed them; ``gather=True`` copies
the whole result to every host (``multihost_utils.process_allgather``), as arrays on its default device. See
``docs/performance.md`` for a launch recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._types import SaveSpec
from ..scores._base import AbstractScore
from ._registry import AbstractSampler
from ._run import prepare
from ._scan import prior_draws, run_chunk
from ._trajectory import Trajectory


__all__ = ["PARTICLE_AXIS", "initialize_multihost", "particle_mesh", "particle_sharding", "simulate_sharded"]

PARTICLE_AXIS = "particles"


def particle_mesh(devices: Sequence[jax.Device] | None = None, axis_name: str = PARTICLE_AXIS) -> Mesh:
    """A one-axis mesh over ``devices`` (default: every device of every host, ``jax.devices()``).

    Args:
        devices: the devices, a non-empty sequence of ``jax.Device``; ``None`` (default): ``jax.devices()``.
        axis_name: the mesh axis's name (default ``"particles"``).
    """
    devs = jax.devices() if devices is None else list(devices)
    if len(devs) == 0:
        raise ValueError("`devices` must hold at least one device.")
    if not all(isinstance(d, jax.Device) for d in devs):
        raise TypeError("`devices` must be a sequence of jax.Device objects (e.g. jax.devices()).")
    return Mesh(np.asarray(devs), (axis_name,))


def particle_sharding(mesh: Mesh | None = None, axis_name: str = PARTICLE_AXIS) -> NamedSharding:
    """Sharding that splits the leading (particle) axis over ``mesh``'s ``axis_name`` axis.

    Args:
        mesh: a :class:`jax.sharding.Mesh` with an axis ``axis_name``; ``None`` (default):
            :func:`particle_mesh` over every device.
        axis_name: the mesh axis to split the particles over (default ``"particles"``).
    """
    mesh = particle_mesh(axis_name=axis_name) if mesh is None else mesh
    _check_mesh(mesh, axis_name)
    return NamedSharding(mesh, PartitionSpec(axis_name))


def initialize_multihost(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **kwargs: Any,
) -> None:
    """Join a multi-host run: ``jax.distributed.initialize(coordinator_address, num_processes, process_id)``.

    Call it on every host before any other JAX call. On managed clusters (SLURM, Open MPI, Cloud TPU) the
    arguments can be left out and are read from the environment. Afterwards ``jax.devices()`` lists every
    host's devices and :func:`particle_mesh` spans them all.

    Args:
        coordinator_address: ``host:port`` of process 0's coordinator; ``None`` (default): from the
            cluster environment.
        num_processes: number of processes (hosts) in the run; ``None``: from the environment.
        process_id: this process's index in ``0 .. num_processes - 1``; ``None``: from the environment.
        **kwargs: further arguments of ``jax.distributed.initialize``.
    """
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id, **kwargs
    )


def _check_mesh(mesh, axis_name):
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
    if axis_name not in mesh.axis_names:
        raise ValueError(f"`mesh` has no axis {axis_name!r} (its axes are {mesh.axis_names}).")


def _place(x_host: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host array that every process holds in full (works on one or many hosts)."""
    return jax.make_array_from_callback(x_host.shape, sharding, lambda idx: x_host[idx])


def simulate_sharded(
    score: AbstractScore,
    method: str | AbstractSampler = "euler_maruyama",
    grid: ArrayLike | int | None = None,
    *,
    x: Float[Array, "N d"] | None = None,
    n: int | None = None,
    key: jax.Array,
    mesh: Mesh | None = None,
    axis_name: str = PARTICLE_AXIS,
    save: SaveSpec = "final",
    stats: Callable[[Array, Array], PyTree] | None = None,
    save_states: bool = True,
    noise: str | None = None,
    gather: bool = False,
    **method_options: Any,
) -> Trajectory:
    r""":func:`diffsim.simulate` with the particles spread over the devices of ``mesh``.

    Same arguments and same particles as :func:`diffsim.simulate` (same ``key`` -> same result), plus
    ``mesh``, ``axis_name`` and ``gather``.

    Args:
        score: any :class:`~diffsim.scores.AbstractScore`, as for :func:`diffsim.simulate`.
        method: a registered sampler name or a sampler instance (default ``"euler_maruyama"``).
        grid: array of times or a number of steps, as for :func:`diffsim.simulate` (``None``: 100 steps).
        x: starting points ``(N, d)`` at ``grid[0]``, the full array on every host; or ``n``.
        n: draw ``n`` particles from the prior (drawn directly in their shards).
        key: PRNG key (required).
        mesh: a :class:`jax.sharding.Mesh` with an axis ``axis_name`` (default :func:`particle_mesh`: all
            devices of all hosts).
        axis_name: the mesh axis the particles are split over (default ``"particles"``).
        save: ``"final"`` (default), ``"all"``, an int stride, or grid indices to save.
        stats: optional ``stats(t, x) -> pytree`` per particle, recorded at the saved times.
        save_states: keep ``xs`` (default ``True``).
        noise: ``None`` (default: ``"counter"`` where it applies), ``"counter"`` or ``"per_particle"``, as
            for :func:`diffsim.simulate`.
        gather: return arrays holding every particle on every host, on its default device (needed to
            read a multi-host result on one host); otherwise ``xs`` / ``stats`` / ``x`` are global
            ``jax.Array`` s sharded over the particle axis (axis 1 of ``xs`` and ``stats`` leaves, axis 0
            of ``x``).
        **method_options: constructor options of the sampler named by ``method``.

    Returns:
        A :class:`~diffsim.sampling.Trajectory` with the same particles as :func:`diffsim.simulate`.
    """
    mesh = particle_mesh(axis_name=axis_name) if mesh is None else mesh
    _check_mesh(mesh, axis_name)
    run, _ = prepare(
        score,
        method,
        grid,
        x=x,
        n=n,
        key=key,
        save=save,
        stats=stats,
        save_states=save_states,
        chunk_size=None,
        noise=noise,
        method_options=method_options,
    )
    n_dev = int(mesh.shape[axis_name])
    n_true = run.n_particles
    n_pad = -(-n_true // n_dev) * n_dev
    sharding = NamedSharding(mesh, PartitionSpec(axis_name))
    if run.x_init is None:
        # prior draws of particles 0 .. n_pad - 1, produced directly in their shards
        x0 = jax.jit(lambda k: prior_draws(run.score, k, jnp.int32(0), n_pad), out_shardings=sharding)(
            run.key
        )
    else:
        xh = np.asarray(run.x_init)
        if n_pad > n_true:
            xh = np.concatenate([xh, np.zeros((n_pad - n_true, xh.shape[1]), xh.dtype)])
        x0 = _place(xh, sharding)
    xs, st, xf = run_chunk(
        run.score,
        run.sampler,
        run.ts,
        x0,
        run.key,
        0,
        n_pad,
        run.save_idx,
        run.stats,
        run.save_states,
        run.noise,
    )
    if n_pad > n_true:
        xs = None if xs is None else xs[:, :n_true]
        st = None if st is None else jax.tree.map(lambda a: a[:, :n_true], st)
        xf = xf[:n_true]
    if gather:
        xs, st, xf = _gather((xs, st, xf))
    return Trajectory(run.ts_saved, xs, st, xf, run.nfe)


def _gather(tree):
    """Every leaf as an array holding all particles, on every host's default device."""
    if jax.process_count() == 1:
        return jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(lambda a: jnp.asarray(multihost_utils.process_allgather(a, tiled=True)), tree)
