"""Time per sampling step through diffsim's PyTorch bridge vs diffusers' own DDIM loop, same UNet, one run.

    python benchmarks/bridge.py [--steps 10] [--batch 8]

Two randomly initialised ``UNet2DModel`` s (tiny: 8x8x1, channels (8, 16); mid: 32x32x3, channels
(32, 64, 64)), DDIM ("trailing", eta 0). diffsim runs ``simulate(score, "ddim", grid)`` through
``TorchScore`` (one ``jax.pure_callback`` -> one torch forward per step); diffusers runs its scheduler
loop. The per-call overhead of the bridge is (diffsim - diffusers) / steps. Writes
``benchmarks/results/bridge-cpu.md``. Not run by the tests.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import diffusers
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import torch

import diffsim
from diffsim.scores.adapters import from_diffusers


CONFIGS = {
    "tiny": dict(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    ),
    "mid": dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    ),
}


def _scheduler():
    return diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        timestep_spacing="trailing",
    )


def bench(name: str, steps: int, batch: int, repeats: int = 3) -> dict:
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(**CONFIGS[name]).eval()
    sched = _scheduler()
    score = from_diffusers(unet, sched)
    sched.set_timesteps(steps)
    grid = jnp.asarray((sched.timesteps.numpy() + 1.0) / 1000.0, jnp.float32)
    x = jr.normal(jr.key(0), (batch, score.dim), jnp.float32)

    def run_diffsim():
        return jax.block_until_ready(diffsim.simulate(score, "ddim", grid, x=x, key=jr.key(1)).x)

    def run_diffusers():
        sched.set_timesteps(steps)
        xt = torch.from_numpy(np.asarray(x).reshape((batch, *score.event_shape)))
        for t in sched.timesteps[:-1]:  # the same steps as diffsim's grid
            with torch.no_grad():
                eps = unet(xt, t).sample
            xt = sched.step(eps, t, xt).prev_sample
        return xt

    def unet_only():
        xt = torch.from_numpy(np.asarray(x).reshape((batch, *score.event_shape)))
        for t in sched.timesteps[:-1]:
            with torch.no_grad():
                unet(xt, t)

    run_diffsim()  # compile
    out = {}
    for label, fn in (("diffsim", run_diffsim), ("diffusers", run_diffusers), ("unet", unet_only)):
        best = min(_time(fn) for _ in range(repeats))
        out[label] = best / (steps - 1)
    out["ratio"] = out["diffsim"] / out["diffusers"]
    out["overhead_ms"] = 1e3 * (out["diffsim"] - out["unet"])
    return out


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    rows = []
    for name in CONFIGS:
        r = bench(name, args.steps, args.batch)
        rows.append(
            f"| {name} | {args.batch} | {1e3 * r['unet']:.2f} | {1e3 * r['diffusers']:.2f} | "
            f"{1e3 * r['diffsim']:.2f} | {r['ratio']:.2f} | {r['overhead_ms']:.2f} |"
        )
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# PyTorch bridge vs diffusers' DDIM loop (CPU)",
            "",
            f"`python benchmarks/bridge.py --steps {args.steps} --batch {args.batch}`; best of 3, "
            "ms per step; "
            f"torch {torch.__version__}, diffusers {diffusers.__version__}, jax {jax.__version__}, "
            f"torch threads {torch.get_num_threads()}.",
            "",
            "| model | batch | UNet forward | diffusers loop | diffsim via bridge | ratio "
            "| bridge overhead per call (ms) |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Overhead = diffsim step - bare UNet forward: the callback, the DLPack views, the JAX copy "
            "of the output and diffsim's DDIM arithmetic.",
        ]
    )
    out = Path(__file__).parent / "results" / "bridge-cpu.md"
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
