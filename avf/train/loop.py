"""The one plain-torch training loop every stage uses (no Ray, no MLflow imports here).

A stage supplies a :class:`Task` (model, batches, step and evaluation); :func:`fit` runs epochs with
AMP, gradient accumulation (DDP ``no_sync`` on inner micro-batches), gradient clipping, a per-step
cosine schedule, optional EMA, per-epoch evaluation and the choice of the exported weights
(:mod:`avf.train.selection`), and reports a resumable checkpoint through the
:class:`~avf.train.session.Session` every epoch.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import torch

from avf.artifacts.checkpoints import (
    load_ema_weights,
    load_training_state,
    save_training_state,
    state_dict_tensors,
    unwrap,
)
from avf.config import OptimConfig
from avf.config.train import SelectRule
from avf.train import faults
from avf.train.amp import autocast, grad_scaler, precision_name, resolve_dtype
from avf.train.optim import build_optimizer, build_scheduler, current_lr
from avf.train.selection import Selection
from avf.train.session import Session
from avf.utils.heap import limit_heap_slack

log = logging.getLogger(__name__)
LogFn = Callable[[dict[str, float], int], None]
# A step's logs: detached scalar tensors (summed on the device, read once per log window) or floats.
StepLogs = dict[str, torch.Tensor | float]


class Task(Protocol):
    """What a training stage provides to :func:`fit`."""

    cfg: OptimConfig
    layer_decay: float | None
    select_metric: str | None  # validation metric of the ``best`` rule (None: keep the last epoch)
    select_mode: str  # "max" or "min"
    select_rule: SelectRule  # which weights are exported (avf.train.selection)
    select_epochs: int  # epochs the ``mean_last`` rule averages

    def build_model(self) -> torch.nn.Module: ...

    def steps_per_epoch(self) -> int: ...

    def effective_batch(self) -> int: ...

    def train_batches(self, epoch: int, start_micro_step: int) -> Iterable[Any]: ...

    def train_step(self, model: torch.nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, StepLogs]: ...

    def evaluate(self, model: torch.nn.Module, epoch: int) -> dict[str, float]: ...


def fit(task: Task, session: Session, log_fn: LogFn | None = None) -> dict[str, Any]:
    """Train ``task`` to completion (resuming from the session's checkpoint if any).

    Returns the final loop state: ``step``, ``epoch``, ``precision`` (fp32/bf16/fp16, or how it changed
    when a resumed run resolved another, see :func:`_resumed_precision`), ``history``
    (per-epoch metrics), ``selected`` (the rule, its epochs and the exported weights' metrics) and, on
    rank 0, ``selected_weights`` and ``last_weights``.
    """
    cfg, device = task.cfg, session.device
    limit_heap_slack()  # before the model and the DataLoader workers exist, so both follow it
    model = task.build_model().to(device)
    steps_per_epoch = task.steps_per_epoch()
    eff_batch = task.effective_batch()
    optimizer = build_optimizer(model, cfg, eff_batch, task.layer_decay)
    scheduler = build_scheduler(optimizer, cfg, eff_batch, steps_per_epoch)
    dtype = _agreed_dtype(resolve_dtype(cfg.amp, device), session)
    amp_ctx, scaler = autocast(device, dtype), grad_scaler(device, dtype)
    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "micro_step": 0,
        "history": [],
        "curve": [],
        "best_epoch": None,
        "best_value": None,
    }
    selection = Selection(
        task.select_rule, task.select_metric, task.select_mode, cfg.epochs, task.select_epochs, session.rank
    )
    ema_weights: dict[str, torch.Tensor] | None = None
    precision = precision_name(dtype)
    with session.restored_checkpoint() as ckpt:
        if ckpt is not None:
            state, kept = load_training_state(ckpt, model, optimizer, scheduler, scaler)
            selection.restore(kept, state)
            ema_weights = load_ema_weights(ckpt)
            log.info("resumed from %s at epoch %d step %d", ckpt, state["epoch"], state["step"])
            state["precision"] = _resumed_precision(state.get("precision"), precision, state["step"])
        else:
            state["precision"] = precision
    if session.rank == 0:
        log.info("training in %s on %s (amp: %s)", precision, device, cfg.amp)
    ema = None
    if cfg.ema_decay:  # the EMA weights are checkpointed with the rest; a new run starts them from the model
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.ema_decay)
        if ema_weights is not None:
            ema.module.load_state_dict(ema_weights)
    wrapped = session.prepare_model(model)
    if getattr(task, "compile_model", False):  # model.compile -> torch.compile, eager fallback
        from avf.models.compile import compile_model

        wrapped = compile_model(wrapped)
    accum = cfg.accum_steps

    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        start_micro = state["micro_step"] - epoch * steps_per_epoch * accum
        wrapped.train()
        window: StepLogs = {}
        n_window, t_window = 0, time.perf_counter()
        micro_in_step = 0
        for batch in task.train_batches(epoch, start_micro):
            last_micro = micro_in_step == accum - 1
            sync = contextlib.nullcontext() if last_micro or not hasattr(wrapped, "no_sync") else wrapped.no_sync()
            with sync:
                with amp_ctx():
                    loss, logs = task.train_step(wrapped, batch, state["step"])
                scaled = loss / accum
                (scaler.scale(scaled) if scaler else scaled).backward()
            for k, v in logs.items():  # tensors stay on the device: read once per log window, not per step
                window[k] = window.get(k, 0.0) + v / accum
            micro_in_step += 1
            state["micro_step"] += 1
            if not last_micro:
                continue
            micro_in_step = 0
            if scaler:
                scaler.unscale_(optimizer)
            if cfg.clip_grad:
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                window["grad_norm"] = window.get("grad_norm", 0.0) + gnorm.detach()
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            scheduler.step_update(num_updates=state["step"])
            if ema is not None:
                ema.update(model, step=state["step"])
            n_window += 1
            faults.maybe_crash(session.rank, state["step"])
            if n_window == cfg.log_every:
                _emit(state, window, n_window, t_window, optimizer, eff_batch, steps_per_epoch, session, log_fn)
                window, n_window, t_window = {}, 0, time.perf_counter()
        if n_window:
            _emit(state, window, n_window, t_window, optimizer, eff_batch, steps_per_epoch, session, log_fn)

        eval_model = ema.module if ema is not None else unwrap(wrapped)
        eval_model.eval()
        with torch.no_grad(), amp_ctx():
            metrics = task.evaluate(eval_model, epoch)
        metrics = {"epoch": epoch, "step": state["step"], **metrics}
        state["history"].append(metrics)
        selection.observe(state, epoch, metrics, eval_model)
        if epoch == cfg.epochs - 1:  # every rank holds the mean, so all evaluate it together
            due = selection.averaged_model_due(epoch)
            averaged = _evaluate_weights(task, eval_model, selection.weights, amp_ctx, epoch) if due else None
            state["selected"] = selection.summary(state, averaged)
        state["epoch"] = epoch + 1
        if session.rank == 0 and log_fn is not None:
            log_fn({f"epoch/{k}": float(v) for k, v in metrics.items() if k not in ("epoch", "step")}, state["step"])
        with tempfile.TemporaryDirectory(prefix="avf-ckpt-") as tmp:
            ckpt_dir = None
            if session.rank == 0:
                ckpt_dir = save_training_state(
                    Path(tmp) / "ckpt",
                    model,
                    optimizer,
                    scheduler,
                    scaler,
                    _json_state(state),
                    selection.weights,
                    ema=state_dict_tensors(ema.module) if ema is not None else None,
                )
            session.report(_json_metrics(metrics), ckpt_dir)

    final = dict(state)
    if session.rank == 0:
        final_model = ema.module if ema is not None else model
        final["last_weights"] = state_dict_tensors(final_model)
        final["selected_weights"] = selection.exported(final["last_weights"])
    return final


def _agreed_dtype(dtype: torch.dtype | None, session: Session) -> torch.dtype | None:
    """``dtype`` where every rank resolved the same one; fp32 on all ranks where they differ (``amp: auto``
    on nodes with different CPUs or GPUs), so that no rank trains in another precision than the rest."""
    names = session.all_gather_object(precision_name(dtype))
    if len(set(names)) == 1:
        return dtype
    if session.rank == 0:
        log.warning("the ranks resolved different precisions (%s): all of them train in fp32", ", ".join(names))
    return None


def _resumed_precision(before: str | None, now: str, step: int) -> str:
    """What the loop state says of a run resumed at ``step`` in ``now`` that had trained in ``before`` (None: a
    checkpoint that does not say): ``before`` when unchanged, else e.g. ``"fp32, then bf16 from step 120"``."""
    if before is not None and before.rsplit(", then ", 1)[-1].split(" ")[0] == now:
        return before
    before = before or "unrecorded"
    log.warning("the run trained in %s precision so far and goes on in %s from step %d", before, now, step)
    return f"{before}, then {now} from step {step}"


def _evaluate_weights(
    task: Task, model: torch.nn.Module, weights: dict[str, torch.Tensor] | None, amp_ctx: Any, epoch: int
) -> dict[str, float]:
    """Metrics of ``model``'s architecture with ``weights`` (a copy is evaluated; the training model is untouched)."""
    if weights is None:  # every rank must take part in the evaluation's gathers
        raise RuntimeError("the averaged weights are missing on this rank")
    twin = copy.deepcopy(model)
    twin.load_state_dict(weights)
    twin.eval()
    with torch.no_grad(), amp_ctx():
        return {"epoch": epoch, **task.evaluate(twin, epoch)}


def _emit(
    state: dict[str, Any],
    window: StepLogs,
    n: int,
    t0: float,
    optimizer: torch.optim.Optimizer,
    eff_batch: int,
    steps_per_epoch: int,
    session: Session,
    log_fn: LogFn | None,
) -> None:
    """Average a window of step logs into ``train/*`` metrics, keep them in the curve, log on rank 0."""
    elapsed = time.perf_counter() - t0
    metrics: dict[str, float] = {f"train/{k}": float(v) / n for k, v in window.items()}
    metrics["train/lr"] = current_lr(optimizer)
    metrics["train/clips_per_s"] = n * eff_batch / max(elapsed, 1e-9)
    metrics["train/epoch"] = state["step"] / steps_per_epoch
    state["curve"].append({"step": state["step"], **metrics})
    if session.rank == 0 and log_fn is not None:
        log_fn(metrics, state["step"])


def _json_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in ("selected_weights", "last_weights")}


def _json_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}
