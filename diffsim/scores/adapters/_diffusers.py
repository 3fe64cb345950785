r"""diffusers models as diffsim scores: :func:`from_diffusers` and :class:`DiffusersPipeline`.

**Process.** A diffusers scheduler's ``alphas_cumprod`` ``(abar_0, ..., abar_{N-1})`` is the exact discrete
schedule :meth:`diffsim.VP.from_alpha_bar`: integer timestep ``n`` sits at diffsim time ``t = (n + 1) / N``
and ``process.alpha_bar((n + 1) / N) == abar_n``. The UNet receives the timestep ``n = N t - 1``
(``time_input="timestep"``), so on a grid of those times it sees exactly the integers diffusers passes.

**Parametrisation.** ``scheduler.config.prediction_type``: ``"epsilon" -> "eps"``, ``"sample" -> "x0"``,
``"v_prediction" -> "v"``; anything else raises before any sampling.

**Conditioning.** A ``UNet2DConditionModel`` is conditioned on prompt embeddings ``(L, D)`` (computed ONCE
per prompt by the pipeline's text encoder, :meth:`DiffusersPipeline.encode_prompt`); classifier-free
guidance is diffsim's :class:`~diffsim.scores.ClassifierFreeGuidance` between the empty prompt (the
unconditional branch) and the prompt, with diffusers' ``guidance_scale`` equal to diffsim's scale ``w``:
``eps = eps_u + w (eps_c - eps_u)`` (two batched UNet calls per step).

Nothing downloads: pipelines load from a local directory with ``local_files_only=True``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ...processes import VP
from .._base import AbstractScore
from ..guidance import ClassifierFreeGuidance
from ._torch import TorchScore, import_torch, module_device


__all__ = [
    "PREDICTION_TYPES",
    "DiffusersPipeline",
    "from_diffusers",
    "load_pipeline",
    "parametrisation_from_scheduler",
    "process_from_scheduler",
]

#: diffusers ``prediction_type`` -> diffsim parametrisation.
PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}

_REQUIRED = ("unet", "scheduler")
_OPTIONAL = ("text_encoder", "tokenizer", "vae")


def _import_diffusers():
    try:
        return importlib.import_module("diffusers")
    except ImportError as err:
        raise ImportError(
            "Loading diffusers models needs the optional dependencies torch, diffusers and transformers: "
            f"`pip install diffsim[torch,models]`. ({err})"
        ) from err


def parametrisation_from_scheduler(scheduler_or_type: Any) -> str:
    """diffsim parametrisation for a scheduler (or a ``prediction_type`` string); unknown types raise.

    Args:
        scheduler_or_type: a diffusers scheduler (its ``config.prediction_type`` is read) or the string
            itself: ``"epsilon"`` -> ``"eps"``, ``"sample"`` -> ``"x0"``, ``"v_prediction"`` -> ``"v"``.
    """
    kind = scheduler_or_type
    if not isinstance(kind, str):
        kind = getattr(getattr(scheduler_or_type, "config", None), "prediction_type", None)
    if kind not in PREDICTION_TYPES:
        raise ValueError(
            f"Unknown diffusers prediction_type {kind!r}: expected one of {sorted(PREDICTION_TYPES)} "
            "(epsilon -> eps, sample -> x0, v_prediction -> v)."
        )
    return PREDICTION_TYPES[kind]


def process_from_scheduler(scheduler: Any) -> VP:
    r"""``VP.from_alpha_bar(scheduler.alphas_cumprod)``: the scheduler's exact discrete schedule (timestep
    ``n`` at ``t = (n + 1) / N``).

    Args:
        scheduler: a diffusers scheduler with ``alphas_cumprod`` (NumPy or torch, strictly decreasing in
            ``(0, 1)``; a zero-terminal-SNR schedule raises ``ValueError``).
    """
    ab = getattr(scheduler, "alphas_cumprod", None)
    if ab is None:
        raise TypeError(
            f"The scheduler {type(scheduler).__name__} has no `alphas_cumprod` (not a DDPM schedule)."
        )
    ab = np.asarray(ab.detach().cpu().numpy() if hasattr(ab, "detach") else ab, dtype=np.float64)
    try:
        return VP.from_alpha_bar(ab)
    except ValueError as err:
        raise ValueError(
            f"Scheduler alphas_cumprod: {err} (a zero-terminal-SNR schedule, abar_N = 0, has no diffsim "
            "process: the prior would be at infinite time)."
        ) from err


def _unet_call(module, x, t, cond):
    kwargs = {} if cond is None else dict(cond)
    return module(x, t, return_dict=False, **kwargs)[0]


def _unet_event_shape(unet: Any) -> tuple[int, ...]:
    cfg = unet.config
    size = cfg.sample_size
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    return (int(cfg.in_channels), *map(int, hw))


def _torch_dtype_name(module: Any) -> str:
    for p in module.parameters():
        return str(p.dtype).removeprefix("torch.")
    return "float32"


def from_diffusers(
    model: Any,
    scheduler: Any = None,
    *,
    prompt: Any = None,
    prompt_embeds: ArrayLike | None = None,
    class_labels: ArrayLike | None = None,
    guidance_scale: float | None = None,
    negative_prompt: Any = "",
    event_shape: Sequence[int] | None = None,
    dtype: str | None = None,
    device: str | None = None,
    check: bool = True,
) -> AbstractScore:
    r"""A diffusers model as a diffsim score.

    Args:
        model: a ``UNet2DModel`` / ``UNet2DConditionModel`` (then ``scheduler`` is required), a loaded
            diffusers pipeline, a :class:`DiffusersPipeline`, or the path of a pipeline saved on disk.
        scheduler: the diffusers scheduler of a bare UNet (it defines the process and the
            parametrisation); ignored otherwise.
        prompt: the text condition of a ``UNet2DConditionModel``: a string (needs a tokenizer) or token
            ids ``(L,)``.
        prompt_embeds: the text condition as embeddings ``(L, D)``, instead of ``prompt``.
        class_labels: a class-conditional UNet's label.
        guidance_scale: classifier-free guidance, ``eps_u + w (eps_c - eps_u)`` with the
            ``negative_prompt`` as the unconditional branch (diffusers' convention, equal to diffsim's
            scale ``w``); ``None`` gives the plain conditional score.
        negative_prompt: the unconditional branch's prompt under guidance (default the empty prompt).
        event_shape: the shape of one state; ``None`` takes the UNet's ``(in_channels, H, W)``.
        dtype: the torch dtype; ``None`` keeps the UNet's (as loaded, for a path). Not applied to an
            already built pipeline.
        device: the torch device; ``None`` keeps the UNet's. Not applied to an already built pipeline.
        check: call the model once on a probe batch at construction.

    Returns:
        A :class:`TorchScore` on the scheduler's process (``time_input="timestep"``), or a
        :class:`~diffsim.scores.ClassifierFreeGuidance` of two with ``guidance_scale``.
    """
    if isinstance(model, (str, Path)):
        pipe = DiffusersPipeline.load(model, dtype=dtype, device=device)
    elif isinstance(model, DiffusersPipeline):
        pipe = model
    elif hasattr(model, "unet") and hasattr(model, "scheduler"):
        pipe = DiffusersPipeline.from_pipeline(model)
    else:
        if scheduler is None:
            raise ValueError(
                "`scheduler` is required when `model` is a UNet (it defines the noise schedule)."
            )
        pipe = DiffusersPipeline(model, scheduler, dtype=dtype, device=device)
    kw = dict(class_labels=class_labels, event_shape=event_shape, check=check)
    if guidance_scale is not None:
        return pipe.guided(
            prompt, guidance_scale, negative_prompt=negative_prompt, prompt_embeds=prompt_embeds, **kw
        )
    return pipe.score(prompt, prompt_embeds=prompt_embeds, **kw)


def load_pipeline(path: str | Path, **kwargs: Any) -> DiffusersPipeline:
    """:meth:`DiffusersPipeline.load`.

    Args:
        path: the directory of a pipeline saved with ``save_pretrained``; keyword arguments go to
            :meth:`DiffusersPipeline.load` (``dtype``, ``device``, ``components``).
    """
    return DiffusersPipeline.load(path, **kwargs)


def _component_class(root: Path, name: str, index: dict) -> tuple[str, str] | None:
    if name in index and isinstance(index[name], list) and index[name][0] is not None:
        return tuple(index[name][:2])
    sub = root / name
    if not sub.is_dir():
        return None
    if name == "tokenizer":
        return ("transformers", "AutoTokenizer")
    for fname in ("config.json", "scheduler_config.json"):
        f = sub / fname
        if f.is_file():
            cfg = json.loads(f.read_text())
            if "_class_name" in cfg:
                return ("diffusers", cfg["_class_name"])
            if cfg.get("architectures"):
                return ("transformers", cfg["architectures"][0])
    return None


class DiffusersPipeline:
    r"""A diffusers UNet with its scheduler (and optionally text encoder, tokenizer and VAE) on one diffsim
    process: the factory of diffsim scores for it (module docstring: process, parametrisation, prompts).

    Build with :meth:`load` (a local directory), :meth:`from_pipeline` (a loaded diffusers pipeline) or
    directly from the modules. The process is built once, so every score of the pipeline shares it.

    Args:
        unet: the diffusers UNet (a ``torch.nn.Module``); it is cast and moved when needed and set to eval.
        scheduler: the diffusers scheduler: gives the process (:func:`process_from_scheduler`) and the
            parametrisation (:func:`parametrisation_from_scheduler`).
        text_encoder: optional text encoder, for prompts (:meth:`encode_prompt`).
        tokenizer: optional tokenizer, for string prompts.
        vae: optional VAE, for :meth:`decode`.
        dtype: the torch dtype of every module; ``None`` keeps the UNet's.
        device: the torch device of every module; ``None`` keeps the UNet's.
    """

    def __init__(
        self,
        unet: Any,
        scheduler: Any,
        *,
        text_encoder: Any = None,
        tokenizer: Any = None,
        vae: Any = None,
        dtype: str | None = None,
        device: str | None = None,
    ):
        torch = import_torch()
        if not isinstance(unet, torch.nn.Module):
            raise TypeError(f"`unet` must be a torch module (a diffusers UNet), got {type(unet).__name__}.")
        self.dtype = dtype or _torch_dtype_name(unet)
        self.device = device or module_device(unet)
        tdt = getattr(torch, self.dtype)

        def place(m):  # cast only when needed (diffusers warns on every .to(dtype))
            if _torch_dtype_name(m) != self.dtype or module_device(m) != self.device:
                m = m.to(device=self.device, dtype=tdt)
            return m.eval()

        self.unet = place(unet)
        self.scheduler = scheduler
        self.text_encoder = None if text_encoder is None else place(text_encoder)
        self.tokenizer = tokenizer
        self.vae = None if vae is None else place(vae)
        self.parametrisation = parametrisation_from_scheduler(scheduler)
        self.process = process_from_scheduler(scheduler)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        if len(scheduler.alphas_cumprod) != self.num_train_timesteps:
            raise ValueError("Scheduler: len(alphas_cumprod) differs from config.num_train_timesteps.")
        self.event_shape = _unet_event_shape(unet)
        self.conditional = getattr(unet.config, "cross_attention_dim", None) is not None

    # --- loading ---------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        dtype: str | None = "float32",
        device: str | None = "cpu",
        components: Sequence[str] | None = None,
    ) -> DiffusersPipeline:
        r"""Load a pipeline saved on disk (``save_pretrained`` layout: ``model_index.json`` and one folder
        per component), never downloading (``local_files_only=True``). ``unet`` and ``scheduler`` are
        required; ``text_encoder``, ``tokenizer`` and ``vae`` are loaded when present (or when listed in
        ``components``, which makes them required). A missing component raises ``FileNotFoundError`` naming
        it."""
        _import_diffusers()
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"Pipeline directory {str(root)!r} does not exist.")
        index_file = root / "model_index.json"
        index = json.loads(index_file.read_text()) if index_file.is_file() else {}
        required = set(_REQUIRED) | set(components or ())
        loaded: dict[str, Any] = {}
        for name in (*_REQUIRED, *_OPTIONAL):
            spec = _component_class(root, name, index)
            sub = root / name
            if spec is None or not sub.is_dir():
                if name in required:
                    raise FileNotFoundError(
                        f"Pipeline component {name!r} is missing from {str(root)!r}: expected a folder "
                        f"{str(sub)!r} (saved with save_pretrained) and an entry in model_index.json."
                    )
                continue
            lib, cls_name = spec
            try:
                klass = getattr(importlib.import_module(lib), cls_name)
            except (ImportError, AttributeError) as err:
                raise ImportError(
                    f"Pipeline component {name!r}: cannot import {lib}.{cls_name} ({err})."
                ) from err
            try:
                loaded[name] = klass.from_pretrained(str(sub), local_files_only=True)
            except (OSError, ValueError) as err:
                raise FileNotFoundError(
                    f"Pipeline component {name!r} in {str(sub)!r} could not be loaded: {err}"
                ) from err
        return cls(
            loaded["unet"],
            loaded["scheduler"],
            text_encoder=loaded.get("text_encoder"),
            tokenizer=loaded.get("tokenizer"),
            vae=loaded.get("vae"),
            dtype=dtype,
            device=device,
        )

    @classmethod
    def from_pipeline(cls, pipe: Any, **kwargs: Any) -> DiffusersPipeline:
        """From a loaded diffusers pipeline (its ``unet``, ``scheduler``, and ``text_encoder``, ``tokenizer``,
        ``vae`` when it has them)."""
        return cls(
            pipe.unet,
            pipe.scheduler,
            text_encoder=getattr(pipe, "text_encoder", None),
            tokenizer=getattr(pipe, "tokenizer", None),
            vae=getattr(pipe, "vae", None),
            **kwargs,
        )

    # --- prompts -----------------------------------------------------------------------------------------
    def encode_prompt(self, prompt: Any) -> Float[Array, "L D"]:
        r"""Prompt embeddings ``(L, D)``: the text encoder's last hidden state (one torch call). ``prompt``
        is a string (tokenised with the pipeline's tokenizer, padded to its ``model_max_length``) or token
        ids ``(L,)``."""
        torch = import_torch()
        if self.text_encoder is None:
            raise ValueError("This pipeline has no text encoder: pass `prompt_embeds` instead of a prompt.")
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError(
                    "This pipeline has no tokenizer: pass token ids (an int array) or `prompt_embeds`."
                )
            ids = self.tokenizer(
                prompt,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
        else:
            ids = torch.as_tensor(np.asarray(prompt), dtype=torch.long).reshape(1, -1)
        with torch.no_grad():
            emb = self.text_encoder(ids.to(self.device))[0][0]
        return jnp.asarray(emb.detach().cpu().numpy())

    def _cond(self, prompt, prompt_embeds, class_labels):
        cond = {}
        if self.conditional:
            if prompt_embeds is None:
                if prompt is None:
                    raise ValueError(
                        "This UNet is text-conditional (UNet2DConditionModel): pass `prompt` or "
                        "`prompt_embeds`."
                    )
                prompt_embeds = self.encode_prompt(prompt)
            emb = jnp.asarray(prompt_embeds)
            emb = emb[0] if emb.ndim == 3 and emb.shape[0] == 1 else emb
            if emb.ndim != 2 or emb.shape[-1] != self.unet.config.cross_attention_dim:
                raise ValueError(
                    f"`prompt_embeds` must have shape (L, {self.unet.config.cross_attention_dim}), "
                    f"got {emb.shape}."
                )
            cond["encoder_hidden_states"] = emb.astype(self.dtype)
        elif prompt is not None or prompt_embeds is not None:
            raise ValueError("This UNet is not text-conditional: `prompt` / `prompt_embeds` do not apply.")
        if class_labels is not None:
            cond["class_labels"] = jnp.asarray(class_labels)
        return cond or None

    # --- scores ------------------------------------------------------------------------------------------
    def score(
        self,
        prompt: Any = None,
        *,
        prompt_embeds: ArrayLike | None = None,
        class_labels: ArrayLike | None = None,
        event_shape: Sequence[int] | None = None,
        check: bool = True,
    ) -> TorchScore:
        """The UNet (conditioned on ``prompt`` / ``prompt_embeds`` / ``class_labels``) as a
        :class:`TorchScore` on :attr:`process` with ``time_input="timestep"``."""
        return TorchScore(
            self.unet,
            self.process,
            self.event_shape if event_shape is None else event_shape,
            parametrisation=self.parametrisation,
            time_input="timestep",
            cond=self._cond(prompt, prompt_embeds, class_labels),
            dtype=self.dtype,
            device=self.device,
            call=_unet_call,
            num_train_timesteps=self.num_train_timesteps,
            check=check,
        )

    def guided(
        self,
        prompt: Any,
        guidance_scale: float,
        *,
        negative_prompt: Any = "",
        prompt_embeds: ArrayLike | None = None,
        negative_prompt_embeds: ArrayLike | None = None,
        **kwargs: Any,
    ) -> ClassifierFreeGuidance:
        r"""Classifier-free guidance ``eps_u + w (eps_c - eps_u)`` (diffusers' ``guidance_scale`` = diffsim's
        ``w``) with ``negative_prompt`` (default ``""``) as the unconditional branch."""
        if negative_prompt_embeds is None and isinstance(negative_prompt, str) and self.tokenizer is None:
            raise ValueError(
                "The unconditional branch needs the empty prompt's embeddings: this pipeline has no "
                "tokenizer, so pass `negative_prompt` as token ids or `negative_prompt_embeds`."
            )
        uncond = self.score(negative_prompt, prompt_embeds=negative_prompt_embeds, **kwargs)
        cond = self.score(prompt, prompt_embeds=prompt_embeds, **kwargs)
        return ClassifierFreeGuidance(uncond, cond, guidance_scale)

    def times(self, timesteps: ArrayLike) -> Array:
        """diffsim times ``t = (n + 1) / N`` of diffusers integer timesteps ``n``."""
        return (jnp.asarray(timesteps, dtype=jnp.result_type(float)) + 1.0) / self.num_train_timesteps

    # --- figures -----------------------------------------------------------------------------------------
    def decode(self, x: Float[Array, "N d"]) -> np.ndarray:
        r"""Decode flat latents ``(N, d)`` with the VAE: images ``(N, H, W, C)`` in ``[0, 1]``
        (``vae.decode(x / scaling_factor)``, mapped from ``[-1, 1]``); without a VAE the states are
        reshaped to images."""
        torch = import_torch()
        arr = np.asarray(x).reshape((-1, *self.event_shape))
        if self.vae is None:
            img = arr
        else:
            z = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device, getattr(torch, self.dtype))
            scale = float(getattr(self.vae.config, "scaling_factor", 1.0))
            with torch.no_grad():
                img = self.vae.decode(z / scale, return_dict=False)[0].cpu().numpy()
        return np.clip((np.transpose(img, (0, 2, 3, 1)) + 1.0) / 2.0, 0.0, 1.0)
