r"""Training: denoising score matching for the score networks, checkpoints, the cache, and classifiers.

Modules: ``_loss`` (the DSM loss in five weightings, its irreducible minimum, training times), ``_config``
(:class:`TrainConfig`, :func:`make_optimizer`), ``_loop`` (the jit-compiled step, EMA, exact resume,
:func:`train`, :func:`train_or_load`), ``_checkpoint`` (tamper-evident checkpoint files), ``_fingerprint``
(the cache key) and ``_classifier`` (:func:`fit_classifier`, minibatch cross-entropy).

Training may import processes, scores and data, never sampling, analysis or studies.
"""

from ._checkpoint import (
    CheckpointError as CheckpointError,
    load_checkpoint as load_checkpoint,
    load_model as load_model,
    read_checkpoint_meta as read_checkpoint_meta,
    save_checkpoint as save_checkpoint,
    save_model as save_model,
)
from ._classifier import fit_classifier as fit_classifier
from ._config import (
    TrainConfig as TrainConfig,
    make_optimizer as make_optimizer,
    standard_promotion as standard_promotion,
)
from ._fingerprint import fingerprint as fingerprint
from ._loop import (
    NonFiniteLossError as NonFiniteLossError,
    TrainResult as TrainResult,
    TrainState as TrainState,
    initial_state as initial_state,
    train as train,
    train_or_load as train_or_load,
    trainable_filter as trainable_filter,
)
from ._loss import (
    TIME_SAMPLINGS as TIME_SAMPLINGS,
    WEIGHTINGS as WEIGHTINGS,
    dsm_loss as dsm_loss,
    dsm_loss_terms as dsm_loss_terms,
    irreducible_loss as irreducible_loss,
    loss_weight as loss_weight,
    sample_times as sample_times,
)


__all__ = [
    "TIME_SAMPLINGS",
    "WEIGHTINGS",
    "CheckpointError",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "dsm_loss",
    "dsm_loss_terms",
    "fingerprint",
    "fit_classifier",
    "initial_state",
    "irreducible_loss",
    "load_checkpoint",
    "load_model",
    "loss_weight",
    "make_optimizer",
    "standard_promotion",
    "read_checkpoint_meta",
    "sample_times",
    "save_checkpoint",
    "save_model",
    "train",
    "train_or_load",
    "trainable_filter",
]
