"""Checkpoint safety: a pickle carrying code is refused (or never opened) by every loader we have, and
tar shards with path-traversal names cannot write outside their folder.

The payload is real: its ``__reduce__`` calls ``open(marker, "w")``, so unpickling it anywhere creates
the marker file; a control load with ``weights_only=False`` proves that before each refusal is trusted.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from avf.artifacts.checkpoints import load_training_state, save_training_state
from avf.artifacts.official import load_official
from avf.cli import app
from avf.config.data import AudioConfig, ClipConfig
from avf.data.loader import ClipDataset, pretrain_stream
from avf.data.shards import INDEX_NAME, CorruptSampleError, ShardIndex, ShardInfo, iter_shard, read_sample
from avf.predict.source import load_model
from avf.train.worker import run_local
from tests.support.predict_helpers import make_model_dir
from tests.support.toy_task import toy_config

pytestmark = pytest.mark.reliability


class Payload:
    """Unpickling this runs ``open(marker, "w")``: the marker file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.marker), "w")


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "pickled code ran: the marker file was created"


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    """An official-looking checkpoint (state dict under ``model``) with the payload beside it."""
    torch.save({"model": {"head.weight": torch.zeros(3, 4)}, "args": Payload(marker)}, path)
    control = path.with_name("control-marker")
    torch.load(path, weights_only=False)  # the control: a plain load runs the payload
    assert marker.exists()
    marker.rename(control)
    return path


def test_official_loaders_refuse_pickled_code(tmp_path: Path, marker: Path) -> None:
    evil = _evil_checkpoint(tmp_path / "evil.pth", marker)
    with pytest.raises(ValueError, match=r"evil\.pth: refusing to load: the file holds pickled objects"):
        load_official(evil)
    result = CliRunner().invoke(app, ["model", "import-official", str(evil), str(tmp_path / "out.safetensors")])
    assert result.exit_code == 1 and "refusing to load" in result.output
    assert not (tmp_path / "out.safetensors").exists()


def test_the_predictor_refuses_pickled_code_from_every_model_source(tmp_path: Path, marker: Path) -> None:
    evil = _evil_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(ValueError, match="refusing to load"):
        load_model(evil)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    cli = CliRunner().invoke(app, ["predict", str(video), "--model", str(evil), "--out", str(tmp_path / "p")])
    assert cli.exit_code != 0 and "refusing to load" in cli.output and not (tmp_path / "p").exists()

    # a pickle under a safetensors name (stage folder, package) is parsed as safetensors, never unpickled
    stage = make_model_dir(tmp_path / "stage")
    (stage / "model.safetensors").write_bytes(evil.read_bytes())
    with pytest.raises(Exception, match=r"(?i)header|deserializ"):
        load_model(stage)
    package = tmp_path / "package"
    package.mkdir()
    (package / "evil.pt").write_bytes(evil.read_bytes())
    config = {"format": "avf-model-package", "model": {"size": "tiny", "num_outputs": 3}, "task": "classification"}
    config |= {"classes": ["a", "b", "c"], "files": {"weights": "evil.pt"}}
    (package / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match=r"(?i)header|deserializ"):
        load_model(package)

    # a downloaded MLflow model: its pickled python_model.pkl is never loaded, only the model_dir artifact
    mlflow_dir = tmp_path / "mlflow-model"
    make_model_dir(mlflow_dir / "artifacts" / "model_dir")
    (mlflow_dir / "python_model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    artifacts = {"model_dir": {"path": "artifacts/model_dir"}}
    flavor = {"python_function": {"python_model": "python_model.pkl", "artifacts": artifacts}}
    (mlflow_dir / "MLmodel").write_text(yaml.safe_dump({"flavors": flavor}))
    _, spec = load_model(mlflow_dir)
    assert spec.format == "stage" and spec.num_outputs == 3


def test_training_checkpoints_are_safetensors_and_json_only(
    tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = toy_config(epochs=1, batch_size=8, n=32)
    root = tmp_path / "run"
    _, session = run_local(config, root)
    assert session.latest is not None
    ckpt = session.latest
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "model.safetensors",
        "optimizer.safetensors",
        "selected.safetensors",
        "state.json",
    ]
    # plant pickles wherever a careless loader might look, and objects in the JSON state
    for name in ("model.pt", "checkpoint.pt", "optimizer.pt", "state.pkl", "rng_state.pth"):
        (ckpt / name).write_bytes(pickle.dumps(Payload(marker)))
    state = json.loads((ckpt / "state.json").read_text())
    gadget = {"py/reduce": [{"py/function": "builtins.open"}, {"py/tuple": [str(marker), "w"]}], "__reduce__": "open"}
    state["loop"]["evil"] = gadget
    (ckpt / "state.json").write_text(json.dumps(state))

    def no_unpickling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a training checkpoint was unpickled")

    for target in ("torch.load", "pickle.load", "pickle.loads", "pickle.Unpickler"):
        monkeypatch.setattr(target, no_unpickling)
    # the resume path of every stage: fit() restores from the newest checkpoint in the session folder
    resumed, _ = run_local(toy_config(epochs=2, batch_size=8, n=32), root)
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]
    assert resumed["evil"] == gadget  # JSON stays data: a dict, nothing was called

    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    opt = torch.optim.AdamW(model.parameters())
    (ckpt / "model.safetensors").write_bytes((ckpt / "model.pt").read_bytes())  # a pickle in disguise
    with pytest.raises(Exception, match=r"(?i)header|deserializ"):
        load_training_state(ckpt, model, opt, None, None)
    save_training_state(tmp_path / "again", model, opt, None, None, {"epoch": 0})
    assert not list((tmp_path / "again").glob("*.p*"))  # written without pickle too


# ------------------------------------------------------------------------------------------- shards


def _traversal_shard(folder: Path, canaries: list[Path]) -> None:
    """A shard whose members point at ``canaries`` (relative, absolute, through a link) + an index."""
    key = "demo__evil"
    rel = os.path.relpath(canaries[0], folder)
    entries: list[tuple[str, bytes, bytes]] = [
        (f"{key}.meta.json", b"{}", tarfile.REGTYPE),
        (rel, b"pwned", tarfile.REGTYPE),
        (str(canaries[1]), b"pwned", tarfile.REGTYPE),
        (f"{key}.00000.jpg", str(canaries[2]).encode(), tarfile.SYMTYPE),
        (f"{key}.00001.jpg", b"x", tarfile.REGTYPE),
    ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = data.decode()
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        sample_bytes = tar.offset  # the sample's byte range ends before the end-of-archive blocks
    blob = buf.getvalue()
    folder.mkdir(parents=True)
    (folder / "shard-000000.tar").write_bytes(blob)
    shard = ShardInfo("shard-000000.tar", 1, len(blob), [key], [0], [sample_bytes])
    index = ShardIndex("demo", [shard], "fbank", "fp", {"num_mel_bins": 128})
    (folder / INDEX_NAME).write_text(json.dumps(index.to_json()))


def test_path_traversal_shards_write_nothing_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canaries = [tmp_path / "outside" / "canary-rel", Path(f"/tmp/avf-canary-abs-{os.getpid()}"), tmp_path / "linked"]
    (tmp_path / "outside").mkdir()
    shards = tmp_path / "data" / "shards" / "demo"
    _traversal_shard(shards, canaries)
    monkeypatch.chdir(shards)  # a reader that extracted relative names would write here
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    index = ShardIndex.load(shards)
    (key, (_, offset, size)), = index.locate().items()  # fmt: skip
    with pytest.raises(CorruptSampleError, match=r"shard-000000\.tar: sample 'demo__evil': unsafe member name"):
        read_sample(shards / "shard-000000.tar", offset, size, key)
    with pytest.raises(CorruptSampleError, match="demo__evil"):
        ClipDataset(shards, None, train=False, clip=ClipConfig(image_size=32), audio=AudioConfig())[0]
    streamed = list(iter_shard(shards / "shard-000000.tar"))
    errors = [str(m) for _, m in streamed if isinstance(m, CorruptSampleError)]
    assert any("unsafe member name" in e for e in errors) and any("not a regular file" in e for e in errors)
    for _, members in streamed:  # what does come through (a partial sample) holds plain names only
        assert isinstance(members, CorruptSampleError) or all("/" not in n and ".." not in n for n in members)
    stream = pretrain_stream([shards], clip=ClipConfig(), audio=AudioConfig(), seed=0, rank=0, world_size=1,
                             samples_per_epoch=1)  # fmt: skip
    with pytest.raises(RuntimeError, match="corrupt samples in a row"):  # nothing usable: a clear stop, no hang
        next(iter(stream))
    cli = CliRunner().invoke(app, ["data", "inspect", str(shards), "--verify"])
    assert cli.exit_code != 0 and "unsafe member name" in cli.output
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert not any(c.exists() or c.is_symlink() for c in canaries)
