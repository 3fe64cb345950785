"""Paper-scale run of the ``information`` study: denser log-SNR sampling, more noise draws and samples,
a finer ablation grid, a longer-trained digits network and more samples of the trained homonym networks
than the CPU default.

    python experiments/information.py [--out runs/information-paper]
"""

import argparse

from diffsim.studies import run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/information-paper")
    args = parser.parse_args()
    res = run_study(
        "information",
        out_dir=args.out,
        overrides=dict(
            n_logsnr=512,
            n_noise=32,
            n_per_component=64,
            curve_logsnr=192,
            curve_noise=1024,
            n_nll_points=128,
            n_block_samples=256,
            correlations=(0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.95),
            bias_per_component=64,
            ablation_logsnr=(8, 16, 32, 64, 128, 256, 512, 1024),
            ablation_noise=(1, 4, 16, 64),
            ablation_repeats=8,
            ablation_per_component=16,
            digits_n_images=64,
            digits_n_logsnr=128,
            digits_n_noise=16,
            digits_train_steps=20_000,
            digits_width=512,
            trained_homonym_samples=1024,
        ),
    )
    print(f"{sum(c.passed for c in res.checks)}/{len(res.checks)} checks passed -> {args.out}/report.html")


if __name__ == "__main__":
    main()
