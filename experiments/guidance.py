"""Paper-scale run of the ``guidance`` study (Wu, Chen, Li, Wang & Wei, ICML 2024).

More particles, finer Fokker-Planck grids, more strengths, step counts up to 3000 and a longer distortion
search than the default (about 3 minutes on two cores). Not timed end to end: extrapolating the default run's
timings (samplers ~ particles x steps x strengths, 1-D Fokker-Planck SDE ~ cells^3, 2-D ~ cells^4) gives
roughly 2-3 hours on two CPU cores, dominated by the 1-D samplers at 10^5 particles and 3000 steps, the
160^2-cell 2-D solves and the 400-trial search. Usage::

    python experiments/guidance.py [--out runs/guidance_paper]
"""

from __future__ import annotations

import argparse

from diffsim.studies import run_study


PAPER = {
    "scales": (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 11.0),  # eta = w - 1 from 0 to 10
    "n_particles": 100_000,
    "n_pf_ode": 10_000,
    "steps": (10, 30, 100, 300, 1000, 3000),
    "fp_cells_1d": 800,
    "fp_cells_2d": 160,
    "flow_rate_steps": 1000,
    "search_trials": 200,
    "search_scales": (1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 11.0, 21.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/guidance_paper", help="output directory")
    args = parser.parse_args()
    res = run_study("guidance", overrides=PAPER, out_dir=args.out)
    print(f"{sum(c.passed for c in res.checks)}/{len(res.checks)} checks passed -> {args.out}/report.html")


if __name__ == "__main__":
    main()
