"""Paper-scale run of the ``concepts`` study: more trajectories and finer grids for the emergence curves,
more samples for the information rates and the schedules, more masks, samples and steps for the saliency
maps and the insertion/deletion games, and longer-trained networks than the CPU default. Park et al.
(2024) use N = 30 steps with lambda in {30, 60}; the schedule comparison here keeps a small N (where the
schedules differ) and the paper's lambda = 60.

    python experiments/concepts.py [--out runs/concepts-paper]
"""

import argparse

from diffsim.studies import run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/concepts-paper")
    args = parser.parse_args()
    res = run_study(
        "concepts",
        out_dir=args.out,
        overrides=dict(
            n_particles=8192,
            n_grid=200,
            n_probe_train=20_000,
            probe_steps=1000,
            n_info=4096,
            n_info_logsnr=113,
            info_noise=64,
            n_schedule=100_000,
            n_energy=5000,
            saliency_grid=40,
            saliency_steps=(12, 16, 20, 24),
            auc_step=20,
            n_saliency=32,
            n_masks=2000,
            n_auc=32,
            n_random_orders=64,
            n_correlation=32,
            toy_train_steps=10_000,
            toy_train_size=50_000,
            toy_base_channels=32,
            digits_particles=2048,
            digits_grid=120,
            digits_saliency_steps=(40, 52, 64, 76),
            digits_n_saliency=32,
            digits_train_steps=20_000,
            digits_base_channels=32,
            digits_auc_stride=2,
        ),
    )
    print(f"{sum(c.passed for c in res.checks)}/{len(res.checks)} checks passed -> {args.out}/report.html")


if __name__ == "__main__":
    main()
