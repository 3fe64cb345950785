"""Test configuration: float64 everywhere (the analytic checks need it) and shared fixtures.

Studies that should run in float32 are exercised through the ``diffsim`` command in a subprocess
(``tests/test_cli.py``), exactly as users run them.

Runtime type checking: before anything imports ``diffsim``, jaxtyping's import hook is installed over
the whole package (``TYPECHECKED``) with beartype (``diffsim._typecheck.typechecker``), so every
annotation — shapes and dtypes included — is checked on every call during the tests. Set the
environment variable ``DIFFSIM_TYPECHECK=0`` to run the suite without the hook (e.g. to time it).

Strict promotion (as Equinox and Lineax test), in every test: implicit rank promotion is an error
(``jax_numpy_rank_promotion="raise"``: an ``(N, d)`` array meets a ``(d,)`` one only through an explicit
``x[None, :]`` or ``broadcast_to``, so a batch passed where one point is expected cannot broadcast
silently), and so is implicit dtype promotion (``jax_numpy_dtype_promotion="strict"``: a float32 array
meets a float64 one, or an int32 an int64, only through an explicit cast). Where diffsim mixes dtypes on
purpose it says so: samplers step in the particles' dtype (``diffsim.sampling._precision``), scores and
conversions promote explicitly to the dtype standard promotion would give (``diffsim._promotion``), and
third-party code that is not strict-clean (optax's optimisers, Flax's layers) runs under standard
promotion at its boundary. ``DIFFSIM_STRICT_PROMOTION=rank`` keeps only the rank check, ``=0`` turns both
off (to check a failure against JAX's defaults).
"""

import gc
import os

from jaxtyping import install_import_hook


#: the modules checked: the whole package
TYPECHECKED = ["diffsim"]

if os.environ.get("DIFFSIM_TYPECHECK", "1") != "0":
    install_import_hook(TYPECHECKED, "diffsim._typecheck.typechecker")

import jax  # noqa: E402
import pytest  # noqa: E402


jax.config.update("jax_enable_x64", True)

#: strict promotion (see the module docstring): ``1`` (default: rank and dtype), ``rank`` (rank only),
#: ``0`` (off)
_STRICT = os.environ.get("DIFFSIM_STRICT_PROMOTION", "1")
if _STRICT not in ("1", "rank", "0"):
    raise ValueError(f"DIFFSIM_STRICT_PROMOTION must be 1, rank or 0, got {_STRICT!r}.")
if _STRICT in ("1", "rank"):
    jax.config.update("jax_numpy_rank_promotion", "raise")
if _STRICT == "1":
    jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """After each test file, drop JAX's compiled programs (``jax.clear_caches``) and collect them.

    Every program XLA compiles for the CPU keeps its machine code in memory mappings of the process until
    the program is freed, and JAX keeps every program it compiled. An xdist worker runs about half of the
    suite's files in one process: measured, four sampler and guidance test files leave 28 362 mappings
    (about 7 000 per heavy file, never released), against Linux's default limit of 65 530
    (``vm.max_map_count``). Two fresh-checkout runs each lost a worker to a segmentation fault inside XLA's
    compile deep into the suite (with ``--dist loadfile`` pytest-xdist then waited for it forever); with
    this fixture the next run finished (973 passed). That the mapping limit is the cause is likely, not
    proven: a synthetic loop of 10 000 tiny compilations levelled off at 49 700 mappings. The fixture
    bounds the suite's memory either way: the same four files end each at 607 mappings, in the same time
    (193 s against 197 s), as compiled programs are almost never shared across files (module-scoped
    fixtures build their own).
    """
    yield
    jax.clear_caches()
    gc.collect()


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
