"""Floor 4: fine-tuning (LoRA, full, DPO), sweeps, and quantisation / pruning / distillation of model versions."""

from keel.train._config import (
    DataConfig,
    DpoConfig,
    HyperParameters,
    LoraSettings,
    OutputConfig,
    SearchDimension,
    SweepConfig,
    TrainConfig,
    load_train_config,
    parse_train_config,
)
from keel.train._distill import DistillOptions
from keel.train._gguf import export_gguf
from keel.train._models import bundled_gguf, import_gguf, load_model
from keel.train._optimize import OptimizeResult, QualityLossError, distill_model, prune_model, quantize_model
from keel.train._recipe import TrainResult, find_resumable_run, train
from keel.train._sweep import SweepResult, Trial, sweep
from keel.train._tiny import TinyModelOptions, new_tiny_model

__all__ = [
    "DataConfig",
    "DistillOptions",
    "DpoConfig",
    "HyperParameters",
    "LoraSettings",
    "OptimizeResult",
    "OutputConfig",
    "QualityLossError",
    "SearchDimension",
    "SweepConfig",
    "SweepResult",
    "TinyModelOptions",
    "TrainConfig",
    "TrainResult",
    "Trial",
    "bundled_gguf",
    "distill_model",
    "export_gguf",
    "find_resumable_run",
    "import_gguf",
    "load_model",
    "load_train_config",
    "new_tiny_model",
    "parse_train_config",
    "prune_model",
    "quantize_model",
    "sweep",
    "train",
]
