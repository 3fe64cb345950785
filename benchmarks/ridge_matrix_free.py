r"""Time per point of the matrix-free ridge geometry against the dense one, in one run.

    python benchmarks/ridge_matrix_free.py               # d in {64, 1024, 4096}, dense at 64 and 1024
    python benchmarks/ridge_matrix_free.py --smoke       # tiny sizes (the tests run this)

Problem: a low-rank-plus-isotropic Gaussian mixture (``K`` components, means in the first ``r``
coordinates, variances 1-3 there and 0.05 in the other ``d - r``; OU process), ``N`` points drawn from
it, ``t = 0.3``, ridge dimension ``k = 2``, float64. For each ``d``:

- ``matrix_free``: :func:`diffsim.analysis.ridge_geometry_matrix_free` with its defaults (block Lanczos,
  block ``k + 2``, about 64 Hessian-vector products per point);
- ``dense`` (``d <= --dense-max``): :func:`diffsim.analysis.ridge_geometry` (closed-form ``d x d`` Hessian
  and ``eigh``).

Each is compiled once (the compile time is recorded), then timed warm, best of ``--reps``; time per point is
that time over ``N``. Where both run, the largest disagreements (eigenvalues, tangent projectors, residual,
Newton distance) are recorded, and XLA's compiled memory analysis (temporary bytes) of both. Writes
``<out>/ridge_matrix_free.json`` (``ridge_matrix_free-smoke.json`` with ``--smoke``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import diffsim as ds  # noqa: E402
from diffsim._io import write_atomic  # noqa: E402
from diffsim.analysis import ridge  # noqa: E402
from diffsim.analysis.ridge import _geometry, _matrix_free  # noqa: E402


T_EVAL = 0.3
K_RIDGE = 2


def make_mixture(d: int, n_comp: int = 8, rank: int = 4, seed: int = 0) -> ds.GaussianMixture:
    rng = np.random.default_rng(seed)
    means = np.zeros((n_comp, d))
    means[:, :rank] = 2.0 * rng.normal(size=(n_comp, rank))
    covs = np.full((n_comp, d), 0.05)
    covs[:, :rank] = rng.uniform(1.0, 3.0, size=(n_comp, rank))
    return ds.GaussianMixture(np.ones(n_comp) / n_comp, means, covs)


def _temp_bytes(fn, *args) -> int | None:
    try:
        mem = jax.jit(fn).lower(*args).compile().memory_analysis()
        return None if mem is None else int(mem.temp_size_in_bytes)
    except Exception:  # noqa: BLE001 - backend without memory analysis
        return None


def _time(fn, reps: int) -> tuple[float, float]:
    """(first call incl. compile, best warm call) in seconds."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return first, best


def measure(d: int, n: int, reps: int, dense: bool, log=print) -> dict:
    mix = make_mixture(d)
    x = jnp.asarray(mix.sample(jr.key(1), n)[0])
    t = jnp.asarray(T_EVAL)
    key = jr.key(0)
    b, m = _matrix_free._krylov_sizes(d, K_RIDGE + 1, None, None)
    keys = jax.vmap(lambda i: jr.fold_in(key, i))(jnp.arange(n))
    thr = jnp.asarray(1e-2)

    def mf_call():
        return ridge.ridge_geometry_matrix_free(mix, T_EVAL, x, K_RIDGE, key=key)

    first, best = _time(mf_call, reps)
    rec = {
        "d": d,
        "N": n,
        "block_size": b,
        "num_iter": m,
        "hvps_per_point": b * m,
        "matrix_free": {
            "first_call_s": first,
            "time_s": best,
            "time_per_point_s": best / n,
            "temp_bytes": _temp_bytes(
                lambda p: _matrix_free._geometries(mix, t, p, keys, K_RIDGE, thr, True, b, m, "forward"), x
            ),
        },
        "dense_matrix_bytes_per_point": d * d * 8,
    }
    log(f"d={d}: matrix-free {best / n * 1e3:.2f} ms/point ({b * m} HVPs), first call {first:.1f} s")
    if dense:

        def dense_call():
            return ridge.ridge_geometry(mix, T_EVAL, x, K_RIDGE)

        first_d, best_d = _time(dense_call, reps)
        rec["dense"] = {
            "first_call_s": first_d,
            "time_s": best_d,
            "time_per_point_s": best_d / n,
            "temp_bytes": _temp_bytes(lambda p: _geometry._geometries(mix, t, p, K_RIDGE, thr, True), x),
        }
        rec["dense_over_matrix_free"] = best_d / best
        geo_d, geo_m = dense_call(), mf_call()
        valid = np.asarray(geo_d.valid)
        proj = lambda v: np.einsum("nik,njk->nij", np.asarray(v), np.asarray(v))  # noqa: E731
        rec["agreement"] = {
            "n_valid_dense": int(valid.sum()),
            "same_mask": bool(np.array_equal(valid, np.asarray(geo_m.valid))),
            "max_abs_eigval_error": float(
                np.max(np.abs(np.asarray(geo_d.eigvals)[:, : K_RIDGE + 1] - np.asarray(geo_m.top_eigvals)))
            ),
            "max_abs_projector_error": float(
                np.max(np.abs(proj(geo_d.tangent_basis) - proj(geo_m.tangent_basis))[valid], initial=0.0)
            ),
            "max_rel_residual_error": float(
                np.max(
                    np.abs(np.asarray(geo_m.residual) - np.asarray(geo_d.residual))[valid]
                    / np.asarray(geo_d.residual)[valid],
                    initial=0.0,
                )
            ),
            "max_rel_newton_error": float(
                np.max(
                    np.abs(np.asarray(geo_m.newton_distance) - np.asarray(geo_d.newton_distance))[valid]
                    / np.asarray(geo_d.newton_distance)[valid],
                    initial=0.0,
                )
            ),
        }
        log(
            f"d={d}: dense {best_d / n * 1e3:.2f} ms/point, ratio dense/matrix-free {best_d / best:.2f}; "
            f"agreement {rec['agreement']}"
        )
    return rec


def device_info() -> dict:
    dev = jax.devices()[0]
    info = {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition (tests)")
    parser.add_argument("--d", default="64,1024,4096", help="comma-separated dimensions")
    parser.add_argument("--n", type=int, default=8, help="points per call")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dense-max", type=int, default=1024, help="largest d timed densely")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    dims = [16] if args.smoke else [int(v) for v in args.d.split(",")]
    n = 2 if args.smoke else args.n
    reps = 1 if args.smoke else args.reps
    results = {
        "benchmark": "ridge_matrix_free",
        "problem": {
            "mixture": "8 components, means in 4 coordinates, variances U(1, 3) there and 0.05 elsewhere",
            "t": T_EVAL,
            "intrinsic_dim": K_RIDGE,
            "dtype": "float64",
        },
        "device": device_info(),
        "loadavg_start": list(os.getloadavg()),
        "records": [measure(d, n, reps, d <= args.dense_max) for d in dims],
        "loadavg_end": list(os.getloadavg()),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "ridge_matrix_free-smoke.json" if args.smoke else "ridge_matrix_free.json"
    write_atomic(out / name, json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
