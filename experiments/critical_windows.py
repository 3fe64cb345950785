"""Paper-scale run of the ``critical-windows`` study (Li & Chen, ICML 2024; Biroli et al. 2024).

More outer samples, finer T_hat grids, more simulated particles and steps, a wider sweep of separations and
dimensions than the default configuration. Expect tens of minutes on two CPU cores (the sweep is cached per
block: an interrupted run resumes where it stopped).

    python experiments/critical_windows.py [--out runs/critical-windows-paper]
"""

from __future__ import annotations

import argparse

from diffsim.studies import run_study


PAPER_SCALE = {
    "separations": (2.0, 4.0, 8.0, 16.0, 32.0, 64.0),
    "dims": (1, 2, 8, 32, 128),
    "n_t_hats": 121,
    "n_outer": 100_000,
    "n_outer_unreduced": 40_000,
    "n_inner": 64,
    "hierarchy_n_outer": 20_000,
    "hierarchy_n_gh": 20,
    "hierarchy_n_t_hats": 81,
    "random_n_outer": 20_000,
    "random_n_inner": 64,
    "random_n_t_hats": 61,
    "bound_samples": 40_000,
    "n_particles": 40_000,
    "n_steps": 400,
    "n_verify": 5,
    "clone_dim": 64,
    "clone_separation": 8.0,
    "clone_times": 16,
    "clone_particles": 10_000,
    "clone_steps": 1000,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/critical-windows-paper", help="output directory")
    args = parser.parse_args()
    res = run_study("critical-windows", overrides=PAPER_SCALE, out_dir=args.out)
    print(f"{sum(c.passed for c in res.checks)}/{len(res.checks)} checks passed -> {args.out}/report.html")


if __name__ == "__main__":
    main()
