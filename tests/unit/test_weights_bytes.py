"""Equal weights and metadata give equal files, in every process (DVC hashes model outputs by their bytes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open

from avf.artifacts.weights import load_weights, save_weights

WRITE = """
import sys, torch
from avf.artifacts.weights import save_weights
tensors = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(3, dtype=torch.bfloat16)}
meta = {"format": "pt", "avf.stage": "pretrain", "outputs": '["neutral", "café"]', "kind": "finetune"}
save_weights(sys.argv[1], tensors, metadata=meta)
"""


def test_the_same_weights_and_metadata_give_the_same_bytes_in_every_process(tmp_path: Path) -> None:
    # safetensors orders the metadata by a per-process random hash: several processes show it
    files = [tmp_path / f"w{i}.safetensors" for i in range(4)]
    for f in files:
        subprocess.run([sys.executable, "-c", WRITE, str(f)], check=True)
    assert len({f.read_bytes() for f in files}) == 1
    with safe_open(str(files[0]), framework="pt") as f:
        assert f.metadata() == {
            "format": "pt",
            "avf.stage": "pretrain",
            "outputs": '["neutral", "café"]',
            "kind": "finetune",
        }
    loaded = load_weights(files[0])
    assert torch.equal(loaded["b.weight"], torch.arange(6.0).reshape(2, 3))
    assert loaded["a.bias"].dtype == torch.bfloat16 and torch.equal(loaded["a.bias"].float(), torch.ones(3))


def test_a_module_is_saved_unwrapped(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    save_weights(tmp_path / "m.safetensors", model)
    assert load_weights(tmp_path / "m.safetensors").keys() == {"weight", "bias"}
