"""Hyperparameter sweeps: Optuna samples the config's `sweep.space`, each trial is a training run.

Trials save their models to a scratch folder instead of registering them; when the study ends the
best trial's model is registered (with lineage to its run) and the others are discarded.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.core.errors import ConfigError, InputError
from keel.registry import ModelVersion
from keel.store import Store
from keel.train._config import SearchDimension, TrainConfig
from keel.train._recipe import TrainResult, register_output, train

__all__ = ["SweepResult", "Trial", "sweep"]


@dataclass(frozen=True)
class Trial:
    """One finished trial: its sampled values, the metric it reached and its run."""

    number: int
    params: dict[str, Any]
    value: float
    run_id: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"number": self.number, "params": self.params, "value": self.value, "run": self.run_id}


@dataclass
class SweepResult:
    """All trials, the best one, and the model version registered from it."""

    metric: str
    direction: str
    trials: list[Trial]
    best: Trial
    model: ModelVersion
    merged: ModelVersion | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "metric": self.metric,
            "direction": self.direction,
            "trials": [t.to_json() for t in self.trials],
            "best": self.best.to_json(),
            "model": self.model.ref,
            "merged": self.merged.ref if self.merged else None,
        }


def _suggest(trial: Any, path: str, dim: SearchDimension) -> Any:
    if dim.type == "categorical":
        assert dim.choices is not None
        return trial.suggest_categorical(path, dim.choices)
    assert dim.low is not None and dim.high is not None
    if dim.type == "int":
        return trial.suggest_int(path, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(path, dim.low, dim.high, log=dim.log)


def _check(config: TrainConfig) -> None:
    if config.sweep is None:
        raise ConfigError("expected a `sweep:` section (metric, direction, space) in the config to sweep over")
    try:
        config.with_values({path: _any_value(dim) for path, dim in config.sweep.space.items()})
    except (KeyError, TypeError):
        raise ConfigError(
            f"expected `sweep.space` keys to be dotted paths of config settings (e.g. training.learning_rate); "
            f"got {sorted(config.sweep.space)}"
        ) from None
    if config.sweep.metric.startswith("eval_") and not (config.data.eval or config.data.eval_fraction > 0):
        raise ConfigError(
            f"sweep.metric {config.sweep.metric!r} needs evaluation data",
            hint="set data.eval or data.eval_fraction",
        )


def _any_value(dim: SearchDimension) -> Any:
    if dim.type == "categorical":
        assert dim.choices is not None
        return dim.choices[0]
    return int(dim.low or 0) if dim.type == "int" else dim.low


def sweep(store: Store, config: TrainConfig, *, trials: int) -> SweepResult:
    """Run `trials` training runs sampled by Optuna (TPE, seeded) and register the best.

    Args:
        store: The workspace store.
        config: A config with a `sweep:` section.
        trials: How many trials.

    Returns:
        Every trial, the best, and the model version registered from the best.
    """
    import optuna

    _check(config)
    assert config.sweep is not None
    space, metric = config.sweep.space, config.sweep.metric
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=config.sweep.direction, sampler=optuna.samplers.TPESampler(seed=config.seed))
    finished: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="keel-sweep-") as scratch:
        results: dict[int, tuple[TrainConfig, TrainResult, Path]] = {}

        def objective(trial: Any) -> float:
            values = {path: _suggest(trial, path, dim) for path, dim in space.items()}
            trial_config = config.with_values(values)
            folder = Path(scratch) / f"trial-{trial.number}"
            result = train(store, trial_config, resume=None, save_to=folder)
            if metric not in result.metrics:
                raise InputError(f"sweep.metric {metric!r} was not logged; logged {sorted(result.metrics)}")
            assert result.run_id is not None
            results[trial.number] = (trial_config, result, folder)
            finished.append(Trial(trial.number, values, result.metrics[metric], result.run_id))
            return result.metrics[metric]

        study.optimize(objective, n_trials=trials)
        best_config, best_result, best_folder = results[study.best_trial.number]
        assert best_result.run_id is not None
        base_ref = _base_ref(store, best_config)
        nodes = _data_nodes(store, best_config)
        model, merged = register_output(store, best_config, best_folder, best_result.run_id, base_ref, nodes)
    best = next(t for t in finished if t.number == study.best_trial.number)
    return SweepResult(metric, config.sweep.direction, finished, best, model, merged)


def _base_ref(store: Store, config: TrainConfig) -> str:
    from keel.registry import get_model
    from keel.train._models import resolve_base

    kind, _, _ = resolve_base(store, config.base)
    return get_model(store, config.base, with_files=False).ref if kind == "registry" else config.base


def _data_nodes(store: Store, config: TrainConfig) -> list[str]:
    from keel.train._data import dataset_node

    return [dataset_node(store, ref) for ref in [*config.data.train, *config.data.eval]]
