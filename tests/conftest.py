"""Test configuration: float64 everywhere (the analytic checks need it) and shared fixtures.

Studies that should run in float32 are exercised through the ``diffsim`` command in a subprocess
(``tests/test_cli.py``), exactly as users run them.

Runtime type checking: before anything imports ``diffsim``, jaxtyping's import hook is installed over
the modules listed in ``TYPECHECKED`` with beartype (``diffsim._typecheck.typechecker``), so every
annotation — shapes and dtypes included — is checked on every call during the tests. Set the
environment variable ``DIFFSIM_TYPECHECK=0`` to run the suite without the hook (e.g. to time it), or
``DIFFSIM_TYPECHECK_ALL=1`` to check every module of ``diffsim``, not only ``TYPECHECKED``.
"""

import os

from jaxtyping import install_import_hook


#: the modules checked. Not yet: ``diffsim.sampling`` (``simulate``'s ``save`` is annotated without the NumPy
#: integer arrays it accepts), ``diffsim.scores.adapters``, ``diffsim.studies``, ``diffsim.cli``;
#: ``DIFFSIM_TYPECHECK_ALL=1`` checks the whole package (to find what is left)
TYPECHECKED = (
    ["diffsim"]
    if os.environ.get("DIFFSIM_TYPECHECK_ALL")
    else [
        "diffsim.processes",
        "diffsim.scores._base",
        "diffsim.scores.mixture",
        "diffsim.scores.empirical",
        "diffsim.scores.guidance",
        "diffsim.scores.conditional",
        "diffsim.scores.random_features",
        "diffsim.scores.nn",
        "diffsim.analysis.metrics",
        "diffsim.analysis.fokker_planck",
        "diffsim.analysis.information",
        "diffsim.analysis.windows",
        "diffsim.analysis.ridge",
        "diffsim.data",
        "diffsim.training",
    ]
)

if os.environ.get("DIFFSIM_TYPECHECK", "1") != "0":
    install_import_hook(TYPECHECKED, "diffsim._typecheck.typechecker")

import jax  # noqa: E402
import pytest  # noqa: E402


jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.key(0)


def save_tiny_pipeline(root):
    """Save a tiny, randomly initialised Stable-Diffusion-like pipeline (text-conditional UNet on 1x8x8
    latents, one-layer CLIP text encoder, one-block VAE, DDIM scheduler with "trailing" spacing) under
    ``root`` in diffusers' directory layout; returns ``root``. Built from configs: nothing is downloaded."""
    import json

    import diffusers
    import torch
    import transformers

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
    )
    text = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=8,
        )
    )
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=1,
        block_out_channels=(8,),
        norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        sample_size=8,
    )
    scheduler = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="epsilon",
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
    )
    for name, comp in (("unet", unet), ("text_encoder", text), ("vae", vae), ("scheduler", scheduler)):
        comp.save_pretrained(root / name)
    index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    (root / "model_index.json").write_text(json.dumps(index))
    return root


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """Path of the tiny diffusers pipeline of :func:`save_tiny_pipeline` (skips without torch/diffusers).
    Token ids stand in for a tokenizer: e.g. ``[0, 5, 17, 33, 1, 1, 1, 1]`` (length 8, pad id 1)."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd"))
