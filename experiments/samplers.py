"""Paper-scale run of the ``samplers`` study: more particles and finer grids than the CPU default.

python experiments/samplers.py [--out runs/samplers-paper]
"""

import argparse

from diffsim.studies import run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/samplers-paper")
    args = parser.parse_args()
    res = run_study(
        "samplers",
        out_dir=args.out,
        overrides=dict(
            dims=(2, 16, 64),
            steps=(8, 16, 32, 64, 128, 256, 512),
            n_particles=200_000,
            n_energy=10_000,
            n_entropy=1_000_000,
        ),
    )
    print(f"{sum(c.passed for c in res.checks)}/{len(res.checks)} checks passed -> {args.out}/report.html")


if __name__ == "__main__":
    main()
