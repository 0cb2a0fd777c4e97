"""Which weights a stage exports, decided on validation data only (``select`` in params.yaml).

- ``mean_last``: the uniform mean of the weights after each of the last ``select_epochs`` epochs,
  evaluated once more on validation and test. No epoch is picked, so numeric noise can only move the
  result continuously: the demo's validation-selected test UAR moved 50.0 -> 59.38 between two
  machines because three epochs tied at 62.5 validation UAR (24 clips) and the earliest tie won.
- ``best``: the epoch with the best validation metric (ties: the earliest), the common protocol;
  on small validation sets it flips between tied epochs.
- ``last``: the final epoch.

The test-selected epoch of the official code is reported apart by the stage (never used here).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from avf.artifacts.weights import state_dict_tensors
from avf.config.train import SelectRule

Weights = dict[str, torch.Tensor]
log = logging.getLogger(__name__)


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if mode == "max" else value < best


class Selection:
    """Tracks the kept weights across epochs; checkpointed by the loop as ``selected.safetensors``.

    ``best`` keeps a copy on rank 0 only (it is only exported). ``mean_last`` keeps the running mean on
    every rank, because the averaged model is evaluated by all ranks together.
    """

    def __init__(self, rule: SelectRule, metric: str | None, mode: str, epochs: int, mean_epochs: int, rank: int):
        if rule == "best" and metric is None:
            rule = "last"  # a stage without a validation metric (pretraining) exports its last weights
        self.rule: SelectRule = rule
        self.metric, self.mode, self.rank = metric, mode, rank
        self.first_mean_epoch = max(0, epochs - mean_epochs)
        self.last_epoch = epochs - 1
        self.weights: Weights | None = None

    def restore(self, weights: Weights | None, state: dict[str, Any]) -> None:
        """Take back the kept weights of a checkpoint written at ``state["epoch"]``."""
        if self.rule == "mean_last" and state["epoch"] > self.first_mean_epoch and weights is None:
            raise ValueError("the checkpoint lacks selected.safetensors: the running weight mean cannot resume")
        self.weights = weights

    def observe(self, state: dict[str, Any], epoch: int, metrics: dict[str, float], model: torch.nn.Module) -> None:
        """Update after evaluating ``epoch`` (``model``: the weights just evaluated)."""
        if self.rule == "best" and self.metric not in metrics:
            known = sorted(k for k in metrics if k.startswith("val/"))
            if known:
                raise ValueError(f"select_metric {self.metric} is not a validation metric of this task: {known}")
            log.warning("select: best without a validation split: the last epoch's weights are exported")
            self.rule = "last"
        if self.rule == "best":
            value = float(metrics[self.metric])
            if _is_better(value, state["best_value"], self.mode):
                state["best_value"], state["best_epoch"] = value, epoch
                if self.rank == 0:
                    self.weights = state_dict_tensors(model)
        elif self.rule == "mean_last" and epoch >= self.first_mean_epoch:
            self._add_to_mean(state_dict_tensors(model), epoch - self.first_mean_epoch + 1)

    def _add_to_mean(self, weights: Weights, n: int) -> None:
        if self.weights is None or n == 1:
            self.weights = weights
            return
        for k, w in weights.items():
            if w.is_floating_point():  # m_n = m_{n-1} + (w - m_{n-1}) / n
                self.weights[k].add_(w.to(self.weights[k].dtype) - self.weights[k], alpha=1.0 / n)
            else:  # integer buffers (counters, indices) are not averaged
                self.weights[k] = w

    def averaged_model_due(self, epoch: int) -> bool:
        """Whether the mean is complete after ``epoch`` and must be evaluated now (a mean of one epoch is
        that epoch, already evaluated)."""
        return self.rule == "mean_last" and epoch == self.last_epoch and self.first_mean_epoch < self.last_epoch

    def summary(self, state: dict[str, Any], averaged_metrics: dict[str, float] | None) -> dict[str, Any]:
        """The rule, the epochs whose weights are exported and their metrics (kept in the loop state)."""
        history = state["history"]
        if self.rule == "mean_last":
            epochs = list(range(self.first_mean_epoch, self.last_epoch + 1))
            return {"rule": self.rule, "epochs": epochs, "metrics": averaged_metrics or history[-1]}
        if self.rule == "best" and state["best_epoch"] is not None:
            chosen = next(h for h in history if h["epoch"] == state["best_epoch"])
        else:
            chosen = history[-1]
        return {"rule": self.rule, "epochs": [chosen["epoch"]], "metrics": chosen}

    def exported(self, last: Weights) -> Weights:
        """The weights the stage writes: the kept ones, or ``last`` when the rule keeps none."""
        return self.weights if self.rule != "last" and self.weights is not None else last
