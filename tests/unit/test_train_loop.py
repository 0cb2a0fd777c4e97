"""The plain-torch loop: it learns, accumulates, resumes exactly, and samples global batches per rank."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from avf.artifacts.checkpoints import load_training_state, save_training_state
from avf.train.optim import build_optimizer, build_scheduler
from avf.train.sampling import GlobalBatchSampler, shard_indices
from avf.train.worker import run_local
from tests.support.toy_task import toy_config


def losses(session) -> list[float]:  # type: ignore[no-untyped-def]
    return [r["val/loss"] for r in session.reports]


def test_loop_learns_and_reports_every_epoch(tmp_path: Path) -> None:
    state, session = run_local(toy_config(epochs=4), tmp_path / "ck")
    vals = losses(session)
    assert len(vals) == 4 and state["step"] == 4 * 8
    assert vals[-1] < 0.5 * vals[0]
    assert state["best_epoch"] == int(np.argmin(vals))
    best = state["history"][state["best_epoch"]]
    assert state["selected"] == {"rule": "best", "epochs": [state["best_epoch"]], "metrics": best}
    assert set(state["selected_weights"]) == set(state["last_weights"])
    assert [c["step"] for c in state["curve"]] == list(range(1, 33))


def test_mean_last_exports_the_mean_of_the_last_epochs_and_evaluates_it(tmp_path: Path) -> None:
    """``select: mean_last`` averages the weights after each of the last k epochs, whatever the validation
    metric did, and reports the averaged model's own metrics (not any epoch's)."""
    from avf.artifacts.weights import load_weights
    from avf.train.session import LocalSession
    from avf.train.worker import run_worker

    session = LocalSession(tmp_path / "mean", keep=10)  # keeps every epoch's checkpoint
    state = run_worker(toy_config(epochs=4, lr=0.3, select_rule="mean_last", select_epochs=3), session)
    assert state["selected"]["rule"] == "mean_last" and state["selected"]["epochs"] == [1, 2, 3]
    per_epoch = [load_weights(tmp_path / "mean" / f"checkpoint_{8 * e:09d}" / "model.safetensors") for e in (2, 3, 4)]
    for k, w in state["selected_weights"].items():
        torch.testing.assert_close(w, sum(p[k] for p in per_epoch) / 3, rtol=1e-5, atol=1e-7)
    averaged = state["selected"]["metrics"]["val/loss"]
    assert all(abs(averaged - h["val/loss"]) > 1e-9 for h in state["history"])
    last = load_weights(tmp_path / "mean" / f"checkpoint_{32:09d}" / "selected.safetensors")
    for k, w in state["selected_weights"].items():
        torch.testing.assert_close(last[k], w)


def test_mean_last_resumes_its_running_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted inside the averaged window, the resumed run exports the uninterrupted run's mean."""
    from avf.train.faults import ENV, InjectedFault

    config = toy_config(epochs=4, lr=0.3, select_rule="mean_last", select_epochs=3)
    full, _ = run_local(config, tmp_path / "full")
    monkeypatch.setenv(ENV, f"rank=0,step=21,mode=raise,marker={tmp_path / 'marker'}")
    with pytest.raises(InjectedFault):  # after the epoch-2 checkpoint, whose mean holds one epoch
        run_local(config, tmp_path / "part")
    resumed, _ = run_local(config, tmp_path / "part")
    assert resumed["selected"] == full["selected"]
    for k, w in full["selected_weights"].items():
        torch.testing.assert_close(resumed["selected_weights"][k], w)


def test_mean_last_refuses_a_checkpoint_without_its_mean() -> None:
    from avf.train.selection import Selection

    sel = Selection("mean_last", "val/uar", "max", epochs=10, mean_epochs=3, rank=0)
    sel.restore(None, {"epoch": 7})  # the window starts at epoch 7: nothing to average yet
    with pytest.raises(ValueError, match=r"selected\.safetensors"):
        sel.restore(None, {"epoch": 8})


def test_accumulation_matches_large_batch(tmp_path: Path) -> None:
    a, _ = run_local(toy_config(epochs=2, batch_size=16, accum=1), tmp_path / "a")
    b, _ = run_local(toy_config(epochs=2, batch_size=16, accum=4), tmp_path / "b")
    assert a["step"] == b["step"]
    for k in a["last_weights"]:
        torch.testing.assert_close(a["last_weights"][k], b["last_weights"][k], rtol=1e-4, atol=1e-5)


def test_resume_after_interruption_continues_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from avf.train.faults import ENV, InjectedFault

    full, _ = run_local(toy_config(epochs=4), tmp_path / "full")
    monkeypatch.setenv(ENV, f"rank=0,step=21,mode=raise,marker={tmp_path / 'marker'}")
    with pytest.raises(InjectedFault):
        run_local(toy_config(epochs=4), tmp_path / "part")
    # Same storage: resumes from the epoch-2 checkpoint (step 16) instead of starting over.
    resumed, session = run_local(toy_config(epochs=4), tmp_path / "part")
    assert resumed["step"] == full["step"] == 32
    assert len(session.reports) == 2  # only the two missing epochs ran
    assert [h["step"] for h in resumed["history"]] == [8, 16, 24, 32]
    for k in full["last_weights"]:
        torch.testing.assert_close(resumed["last_weights"][k], full["last_weights"][k])


def test_resume_with_ema_continues_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The EMA weights are checkpointed: a resumed run ends with the uninterrupted run's EMA weights."""
    from avf.train.faults import ENV, InjectedFault

    full, _ = run_local(toy_config(epochs=4, ema_decay=0.9), tmp_path / "full")
    plain, _ = run_local(toy_config(epochs=4), tmp_path / "plain")
    key = next(iter(full["last_weights"]))
    assert not torch.allclose(full["last_weights"][key], plain["last_weights"][key])  # the EMA is what is exported
    monkeypatch.setenv(ENV, f"rank=0,step=21,mode=raise,marker={tmp_path / 'marker'}")
    with pytest.raises(InjectedFault):
        run_local(toy_config(epochs=4, ema_decay=0.9), tmp_path / "part")
    resumed, _ = run_local(toy_config(epochs=4, ema_decay=0.9), tmp_path / "part")
    for k in full["last_weights"]:
        torch.testing.assert_close(resumed["last_weights"][k], full["last_weights"][k])


def test_a_resumed_run_records_a_change_of_precision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from avf.train.faults import ENV, InjectedFault

    monkeypatch.setenv(ENV, f"rank=0,step=21,mode=raise,marker={tmp_path / 'marker'}")
    with pytest.raises(InjectedFault):
        run_local(toy_config(epochs=4, amp="off"), tmp_path / "run")
    resumed, _ = run_local(toy_config(epochs=4, amp="bf16"), tmp_path / "run")  # e.g. amp: auto on another CPU
    assert resumed["precision"] == "fp32, then bf16 from step 16"


def test_precision_bookkeeping() -> None:
    from avf.train.loop import _agreed_dtype, _resumed_precision

    class Ranks:
        rank = 0

        def __init__(self, *names: str) -> None:
            self.names = list(names)

        def all_gather_object(self, obj: object) -> list[object]:
            return [obj, *self.names]

    assert _agreed_dtype(torch.bfloat16, Ranks("bf16")) == torch.bfloat16
    assert _agreed_dtype(torch.bfloat16, Ranks("fp32")) is None  # mixed nodes: fp32 on every rank
    assert _agreed_dtype(None, Ranks("bf16", "fp32")) is None
    assert _resumed_precision("bf16", "bf16", 40) == "bf16"
    assert _resumed_precision(None, "fp32", 8) == "unrecorded, then fp32 from step 8"  # an older checkpoint
    twice = _resumed_precision("fp32, then bf16 from step 16", "fp32", 24)
    assert twice == "fp32, then bf16 from step 16, then fp32 from step 24"
    assert _resumed_precision(twice, "fp32", 32) == twice


def test_bf16_autocast_trains_on_cpu(tmp_path: Path) -> None:
    from avf.train.amp import grad_scaler, resolve_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype("bf16", cpu) == torch.bfloat16 and resolve_dtype("off", cpu) is None
    assert resolve_dtype("off", cuda) is None and resolve_dtype("fp16", cuda) == torch.float16
    assert grad_scaler(cpu, torch.bfloat16) is None and grad_scaler(cpu, None) is None
    state, session = run_local(toy_config(epochs=4, amp="bf16"), tmp_path / "bf16")
    vals = losses(session)
    assert state["step"] == 32 and vals[-1] < 0.5 * vals[0]
    assert state["precision"] == "bf16"
    assert run_local(toy_config(epochs=1, amp="off"), tmp_path / "fp32")[0]["precision"] == "fp32"


def test_global_batches_do_not_depend_on_world_size() -> None:
    single = list(GlobalBatchSampler(40, 8, 0, 1, seed=3))
    ranks = [list(GlobalBatchSampler(40, 8, r, 2, seed=3)) for r in range(2)]
    for step, batch in enumerate(single):
        assert batch == ranks[0][step] + ranks[1][step]
    s = GlobalBatchSampler(40, 8, 0, 1, seed=3)
    s.set_epoch(0, start_step=2)
    assert list(s) == single[2:]
    s.set_epoch(1)
    assert list(s) != single
    with pytest.raises(ValueError, match="not divisible"):
        GlobalBatchSampler(40, 9, 0, 2)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        GlobalBatchSampler(4, 8)
    assert sorted(shard_indices(7, 0, 3) + shard_indices(7, 1, 3) + shard_indices(7, 2, 3)) == list(range(7))


def test_training_state_round_trip(tmp_path: Path) -> None:
    from avf.config import OptimConfig

    model = torch.nn.Linear(4, 2)
    cfg = OptimConfig(epochs=2, batch_size=4, warmup_epochs=0.5)
    opt = build_optimizer(model, cfg, 4)
    sched = build_scheduler(opt, cfg, 4, steps_per_epoch=4)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    sched.step_update(1)
    save_training_state(tmp_path / "c", model, opt, sched, None, {"epoch": 1, "step": 1})
    model2 = torch.nn.Linear(4, 2)
    opt2 = build_optimizer(model2, cfg, 4)
    sched2 = build_scheduler(opt2, cfg, 4, steps_per_epoch=4)
    loop, best = load_training_state(tmp_path / "c", model2, opt2, sched2, None)
    assert loop == {"epoch": 1, "step": 1} and best is None
    torch.testing.assert_close(model.weight, model2.weight)
    for a, b in zip(opt.state.values(), opt2.state.values(), strict=True):
        torch.testing.assert_close(a["exp_avg"], b["exp_avg"])
    assert sched2.state_dict() == sched.state_dict()


def test_newest_complete_checkpoint_skips_a_cut_off_copy(tmp_path: Path) -> None:
    import shutil

    from avf.artifacts.checkpoints import is_complete_checkpoint, newest_complete_checkpoint
    from avf.config import OptimConfig

    model = torch.nn.Linear(64, 32)
    cfg = OptimConfig(epochs=2, batch_size=4, warmup_epochs=0.5)
    opt = build_optimizer(model, cfg, 4)
    model(torch.randn(3, 64)).sum().backward()
    opt.step()
    sched = build_scheduler(opt, cfg, 4, steps_per_epoch=4)
    run = tmp_path / "run"
    older, newer = run / "checkpoint_2026-11-26_04-10-59.465868", run / "checkpoint_2026-11-26_04-11-02.100000"
    save_training_state(older, model, opt, sched, None, {"epoch": 1, "step": 1})
    shutil.copytree(older, newer)
    assert newest_complete_checkpoint(run) == newer
    with (newer / "optimizer.safetensors").open("r+b") as f:  # a copy killed half-way
        f.truncate((newer / "optimizer.safetensors").stat().st_size // 2)
    assert not is_complete_checkpoint(newer) and is_complete_checkpoint(older)
    assert newest_complete_checkpoint(run) == older
    (older / "state.json").write_text("{")
    assert newest_complete_checkpoint(run) is None
    assert newest_complete_checkpoint(tmp_path / "missing") is None


def test_schedule_warmup_then_cosine() -> None:
    from avf.config import OptimConfig

    model = torch.nn.Linear(2, 2)
    cfg = OptimConfig(epochs=10, batch_size=256, base_lr=1e-3, min_lr=1e-5, warmup_epochs=1)
    opt = build_optimizer(model, cfg, 256)
    sched = build_scheduler(opt, cfg, 256, steps_per_epoch=10)
    lrs = []
    for step in range(100):
        sched.step_update(step)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == 0.0 and abs(max(lrs) - 1e-3) < 1e-9
    assert lrs.index(max(lrs)) == 10
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[-1] < 1e-4


def test_epoch_length_can_exceed_one_pass() -> None:
    from avf.train.sampling import GlobalBatchSampler

    one_pass = GlobalBatchSampler(10, 4, seed=3)
    assert len(one_pass) == 2 and [len(b) for b in one_pass] == [4, 4]
    longer = GlobalBatchSampler(10, 4, seed=3, draws=20)
    batches = list(longer)
    assert len(longer) == len(batches) == 5
    flat = [i for b in batches for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))  # two whole passes
    assert flat[:8] == [i for b in one_pass for i in b]  # the first pass is the one-pass order
    weighted = GlobalBatchSampler(10, 4, seed=3, weights=[1.0] * 10, draws=12)
    assert len(list(weighted)) == 3


def test_progress_reaches_the_driver_without_changing_the_training(tmp_path: Path) -> None:
    """What the driver's progress display gets: (step, total steps, epoch / loss / selection metric) on every
    log call, ending at the last step; reporting it changes nothing of the run."""
    shown: list[tuple[int, int, dict[str, str]]] = []
    state, _ = run_local(toy_config(epochs=2), tmp_path / "a", progress=lambda *item: shown.append(item))
    plain, _ = run_local(toy_config(epochs=2), tmp_path / "b")
    assert [step for step, _, _ in shown] == sorted(step for step, _, _ in shown) and shown[-1][:2] == (16, 16)
    assert {total for _, total, _ in shown} == {16}
    assert shown[0][2]["epoch"] == "1/2" and float(shown[0][2]["loss"]) > 0
    assert shown[-1][2]["epoch"] == "2/2" and "val/loss" in shown[-1][2]  # the epoch's evaluation
    for k in plain["last_weights"]:
        torch.testing.assert_close(state["last_weights"][k], plain["last_weights"][k], rtol=0, atol=0)


def test_best_needs_a_metric_the_task_computes() -> None:
    from avf.train.selection import Selection

    sel = Selection("best", "val/uar", "max", epochs=4, mean_epochs=3, rank=0)
    state = {"best_value": None, "best_epoch": None, "history": [{"epoch": 0, "val/ccc": 0.5}]}
    with pytest.raises(ValueError, match=r"select_metric val/uar is not a validation metric.*val/ccc"):
        sel.observe(state, 0, state["history"][0], torch.nn.Linear(1, 1))
    no_val = Selection("best", "val/uar", "max", epochs=4, mean_epochs=3, rank=0)
    no_val.observe(state, 0, {"epoch": 0, "test/uar": 50.0}, torch.nn.Linear(1, 1))
    assert no_val.rule == "last" and no_val.exported({"w": torch.zeros(1)})["w"].shape == (1,)


def test_a_mean_of_one_epoch_is_the_last_epoch_evaluated_once(tmp_path: Path) -> None:
    state, _ = run_local(toy_config(epochs=3, select_rule="mean_last", select_epochs=1), tmp_path / "one")
    assert state["selected"] == {"rule": "mean_last", "epochs": [2], "metrics": state["history"][-1]}
    for k, w in state["selected_weights"].items():
        torch.testing.assert_close(w, state["last_weights"][k])
    everything, _ = run_local(toy_config(epochs=3, select_rule="mean_last", select_epochs=9), tmp_path / "all")
    assert everything["selected"]["epochs"] == [0, 1, 2]  # select_epochs >= epochs: every epoch
