"""What every "analysis on your own model" experiment script shares: the model, prompt and classifier
arguments, and loading them with clear errors.

The scripts ``experiments/any_model_*.py`` run one of diffsim's model-agnostic analyses on a diffusers
pipeline saved in a local directory (``save_pretrained`` layout; nothing is downloaded) and write the same
``config.json`` / ``results.json`` / figures / ``report.html`` layout as the studies, through
:func:`diffsim.studies.run_experiment`.

Prompts are strings (tokenised with the pipeline's tokenizer) or comma-separated token ids (``"0,5,17,1"``)
for pipelines without a tokenizer. A classifier or feature function is named as ``FILE.py:NAME`` or
``package.module:NAME``: a callable taking a batch of clean samples ``(B, *event_shape)`` (a JAX array) and
returning logits ``(B, C)`` (a classifier) or features ``(B, F)``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


__all__ = [
    "add_model_arguments",
    "load_callable",
    "load_model",
    "parse_prompt",
    "read_config_file",
    "scheduler_timesteps",
]


def add_model_arguments(parser: argparse.ArgumentParser, *, classifier: bool = False) -> None:
    """Add ``--model``, ``--dtype``, ``--device``, ``--out``, ``--config`` (and ``--classifier``)."""
    parser.add_argument("--model", required=True, help="directory of a diffusers pipeline (save_pretrained)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="torch dtype")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--out", required=True, help="output directory (config.json, results.json, report)")
    parser.add_argument("--config", default=None, help="JSON file of settings (command-line values win)")
    if classifier:
        parser.add_argument(
            "--classifier",
            default=None,
            help="FILE.py:NAME or package.module:NAME, a callable (B, *event_shape) -> logits (B, C)",
        )


def load_model(path: str | Path, *, dtype: str = "float32", device: str = "cpu") -> Any:
    """The pipeline at ``path`` as a :class:`diffsim.scores.adapters.DiffusersPipeline`."""
    from diffsim.scores.adapters import DiffusersPipeline

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"--model: {str(root)!r} is not a directory (a diffusers save_pretrained layout)."
        )
    return DiffusersPipeline.load(root, dtype=dtype, device=device)


def scheduler_timesteps(pipe: Any, steps: int) -> np.ndarray:
    """The integer timesteps the pipeline's own scheduler would use for ``steps`` inference steps (its
    ``timestep_spacing`` and ``steps_offset``), via :func:`diffsim.sampling.grids.diffusers_timesteps`."""
    from diffsim.sampling import grids

    cfg = pipe.scheduler.config
    return grids.diffusers_timesteps(
        steps,
        pipe.num_train_timesteps,
        spacing=getattr(cfg, "timestep_spacing", "leading"),
        steps_offset=int(getattr(cfg, "steps_offset", 0)),
    )


def parse_prompt(text: str | None, *, name: str = "--prompt") -> Any:
    """A prompt string, or token ids when ``text`` is a comma-separated list of integers; ``None`` stays."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"{name}: expected a string, got {type(text).__name__}.")
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 1 or parts[0].isdigit():
        try:
            return np.asarray([int(p) for p in parts], dtype=np.int64)
        except ValueError as err:
            raise ValueError(f"{name}: {text!r} mixes token ids and words ({err}).") from None
    return text


def load_callable(spec: str | None, *, name: str = "--classifier") -> Callable[..., Any]:
    """Resolve ``FILE.py:NAME`` or ``package.module:NAME`` to a callable, with an error naming ``name``."""
    if spec is None:
        raise ValueError(f"{name} is required for this experiment: give FILE.py:NAME or package.module:NAME.")
    if ":" not in spec:
        raise ValueError(f"{name}: expected FILE.py:NAME or package.module:NAME, got {spec!r}.")
    where, attr = spec.rsplit(":", 1)
    if where.endswith(".py"):
        file = Path(where)
        if not file.is_file():
            raise FileNotFoundError(f"{name}: file {where!r} does not exist.")
        module_spec = importlib.util.spec_from_file_location(f"_diffsim_user_{file.stem}", file)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise ImportError(f"{name}: cannot import module {where!r} ({err}).") from err
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"{name}: {where!r} has no attribute {attr!r}.") from None
    if not callable(fn):
        raise TypeError(f"{name}: {spec!r} is not callable.")
    return fn


def read_config_file(path: str | None) -> dict[str, Any]:
    """Settings from a JSON file (an object), or ``{}``; errors name ``--config``."""
    if path is None:
        return {}
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--config: {path!r} does not exist.")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"--config: {path!r} is not valid JSON ({err}).") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config: {path!r} must hold a JSON object, got {type(data).__name__}.")
    return data
