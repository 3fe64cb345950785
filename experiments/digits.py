"""Paper-scale run of the ``digits`` study: a wider UNet trained longer, more samples, finer grids.

    python experiments/digits.py [--out runs/digits-paper] [--cache runs/models]

The trained network is cached under ``--cache`` (keyed by a hash of model, data, training config and
key), so the ridge, information and concept studies can reuse it.
"""

import argparse

from diffsim.studies import run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/digits-paper")
    parser.add_argument(
        "--cache", default="", help="directory of cached trained networks (default: <out>/models)"
    )
    args = parser.parse_args()
    res = run_study(
        "digits",
        out_dir=args.out,
        overrides={
            "train_steps": 20_000,
            "batch_size": 256,
            "base_channels": 32,
            "channel_mults": (1, 2),
            "samplers": ("ddim", "ddpm", "heun", "dpm_solver_2m", "euler_maruyama"),
            "n_steps": 100,
            "guidance": (0.0, 0.5, 1.0, 2.0, 3.0, 5.0),
            "n_per_class": 200,
            "classifier_steps": 5000,
            "cache_dir": args.cache,
        },
    )
    print(f"{sum(c.passed for c in res.checks)}/{len(res.checks)} checks passed -> {args.out}/report.html")


if __name__ == "__main__":
    main()
