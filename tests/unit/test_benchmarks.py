"""The benchmark harness: entry point smoke run, memory accounting arithmetic, skips without GPU / official code.

Speed and memory targets are checked by ``python -m benchmarks`` with printed ratios, never here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks import harness, official
from benchmarks.__main__ import main


def test_entry_point_runs_tiny_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    data = main(["--sizes", "tiny", "--rounds", "1", "--only", "pretrain,finetune,inference,memory", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "tiny pretraining step, batch 4" in printed and "plain ViT tiny" in printed
    saved = json.loads(out.read_text())
    sec = saved["sections"]["cpu/tiny"]
    ours = sec["pretrain"]["cases"]["ours tiny"]
    assert ours["clips_per_s"] > 0 and 0 < ours["mfu"] < 1
    mem = ours["memory"]
    assert mem["optimizer_state_mib"] == pytest.approx(2 * mem["params_mib"], rel=1e-6)  # AdamW: m and v
    assert mem["activations_mib_per_clip"] > 0
    assert 0 < ours["saved_for_backward_mib_per_clip"] <= mem["activations_mib_per_clip"] * 1.05
    assert sec["inference"]["cases"]["ours tiny (2 views)"]["views"] == 2
    assert data["load_avg_1min"]["max"] >= data["load_avg_1min"]["min"]


def test_gpu_path_is_skipped_cleanly_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the GPU path runs for real in the benchmark")
    data = main(["--device", "cuda", "--sizes", "tiny", "--only", "pretrain", "--out", str(tmp_path / "g.json")])
    assert data["skipped"] == "no CUDA device"
    assert "GPU benchmarks skipped" in capsys.readouterr().out


def test_official_code_absent_is_a_clear_skip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(official.ENV, raising=False)
    assert official.official_dir(None) is None
    assert "AVF_OFFICIAL_DIR" in official.why_skipped(None)
    assert official.official_dir(tmp_path) is None  # a directory without the official files
    assert "modeling_pretrain_av.py" in official.why_skipped(tmp_path)


def test_timeline_accounts_blocks_and_gradients() -> None:
    # allocs: (time, ptr, bytes; negative = free); grad marks: (time, ptr)
    allocs = [(1, 10, 100), (2, 20, 50), (3, 10, -100), (4, 30, 70), (6, 30, -70), (7, 99, -40)]
    marks = [(5, 30)]  # block 30 becomes a gradient after its allocation
    timeline = harness._timeline(allocs, marks)
    assert [(t, total, grad) for t, total, grad in timeline] == [
        (1, 100, 0),
        (2, 150, 0),
        (3, 50, 0),
        (4, 120, 70),  # known to be a gradient from its allocation on
        (6, 50, 0),
        (7, 50, 0),  # the free of a block allocated before the profile is ignored
    ]


def test_memory_profile_scales_with_batch() -> None:
    """Activations of a plain MLP: linear in the batch and at least what autograd keeps for backward."""
    torch.manual_seed(0)
    results = {}
    for batch in (64, 128):
        model = nn.Sequential(nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 256))
        opt = torch.optim.AdamW(model.parameters(), fused=True)
        x = torch.randn(batch, 256)

        def step(model: nn.Module = model, opt: torch.optim.Optimizer = opt, x: torch.Tensor = x) -> None:
            model(x).square().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        runner = harness.Runner("mlp", step, batch, torch.device("cpu"), model, opt)
        mem = harness.memory_profile(runner)
        saved, _ = harness.saved_tensor_bytes(model, lambda model=model, x=x: model(x).square().mean())
        assert mem.optimizer == 2 * mem.params and mem.grads == mem.params
        assert mem.activations >= saved  # peak includes what is saved plus temporaries
        results[batch] = mem.activations
    assert results[128] / results[64] == pytest.approx(2.0, rel=0.15)
