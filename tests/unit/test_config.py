"""params.yaml validation: strict keys, types, ranges, cross-section checks, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from avf.config import Params, ParamsError, load_params, section_hash
from avf.config.base import Section


def write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_project_params_yaml_is_valid(project_root: Path) -> None:
    params = load_params(project_root / "params.yaml")
    assert params.model.size == "tiny"
    assert params.data.target in params.data.datasets
    assert [d.name for d in params.data.specs] == list(params.data.datasets)


def test_defaults_validate() -> None:
    p = Params()
    assert p.masking.video_ratio == 0.9 and p.masking.audio_ratio == 0.8125


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"modle": {"size": "tiny"}}, "modle: unknown key"),
        ({"model": {"szie": "tiny"}}, "model.szie: unknown key"),
        ({"model": {"size": "gigantic"}}, "model.size"),
        ({"pretrain": {"epochs": "many"}}, "pretrain.epochs"),
        ({"pretrain": {"epochs": 0}}, "pretrain.epochs"),
        ({"data": {"face": {"margin": -1}}}, "data.face.margin"),
        ({"masking": {"video_ratio": 0.75}}, "cannot be split evenly"),
        ({"masking": {"audio_ratio": 0.8}}, "audio_ratio"),
        ({"masking": {"video_ratio": 0.123}}, "whole number"),
        ({"masking": {"decoder_video_ratio": 0.3}}, "running-cell"),
        ({"intermediate": {"weights": {"cremad": -1}}}, "positive"),
    ],
)
def test_invalid_params_name_the_key(tmp_path: Path, data: dict, needle: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ParamsError) as e:
        load_params(path)
    msg = str(e.value)
    assert str(path) in msg
    assert needle in msg


def test_dataset_names_come_from_keys_and_target_must_exist(tmp_path: Path) -> None:
    ds = {"adapter": "ravdess", "raw_dir": "x"}
    p = load_params(write(tmp_path, {"data": {"datasets": {"a": ds}, "target": "a"}}))
    assert p.data.dataset("a").name == "a"
    with pytest.raises(KeyError, match="unknown dataset 'b'"):
        p.data.dataset("b")
    with pytest.raises(ParamsError, match=r"data\.target 'b'"):
        load_params(write(tmp_path, {"data": {"datasets": {"a": ds}, "target": "b"}}))
    with pytest.raises(ParamsError, match="must equal its key"):
        load_params(write(tmp_path, {"data": {"datasets": {"a": {**ds, "name": "c"}}, "target": "a"}}))
    with pytest.raises(ParamsError, match=r"data\.datasets\.a\.Bad"):
        load_params(write(tmp_path, {"data": {"datasets": {"a": {**ds, "Bad": 1}}, "target": "a"}}))


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ParamsError, match="top level must be a mapping"):
        load_params(bad)


def test_an_unquoted_amp_off_is_off(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("finetune:\n  amp: off\n")  # YAML 1.1: false
    assert load_params(path).finetune.amp == "off"
    path.write_text("finetune:\n  amp: on\n")
    with pytest.raises(ParamsError, match=r"finetune\.amp"):
        load_params(path)


def test_overrides_and_frozen(tmp_path: Path) -> None:
    p = load_params(write(tmp_path, {}), overrides={"model.size": "base", "pretrain.epochs": 3})
    assert p.model.size == "base" and p.pretrain.epochs == 3
    with pytest.raises(Exception):  # noqa: B017  (pydantic raises ValidationError on frozen assignment)
        p.model.size = "huge"  # type: ignore[misc]


def test_section_hash_tracks_only_named_sections() -> None:
    a = Params()
    b = Params.model_validate({"pretrain": {"epochs": 7}})
    assert section_hash(a, "model", "masking") == section_hash(b, "model", "masking")
    assert section_hash(a, "pretrain") != section_hash(b, "pretrain")


def _all_sections(model: type[Section]) -> list[type[Section]]:
    out = [model]
    for field in model.model_fields.values():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            out.extend(_all_sections(ann))
    return out


def test_every_section_forbids_unknown_keys() -> None:
    for sec in _all_sections(Params):
        assert sec.model_config.get("extra") == "forbid", sec.__name__


def _keys(obj: object, prefix: str = "") -> set[str]:
    if not isinstance(obj, dict) or not obj:
        return {prefix}
    out: set[str] = set()
    for k, v in obj.items():
        out |= _keys(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def test_params_yaml_spells_out_every_parameter(project_root: Path) -> None:
    """DVC only sees what is written in params.yaml, so every field must be there explicitly."""
    raw = yaml.safe_load((project_root / "params.yaml").read_text())
    dumped = load_params(project_root / "params.yaml").model_dump(mode="json")
    for spec in dumped["data"]["datasets"].values():
        spec.pop("name")  # filled in from the key
    assert _keys(dumped) - _keys(raw) == set()


def test_every_dvc_params_key_exists_in_params_yaml(project_root: Path) -> None:
    raw = yaml.safe_load((project_root / "params.yaml").read_text())
    stages = yaml.safe_load((project_root / "dvc.yaml").read_text())["stages"]
    names = list(raw["data"]["datasets"])
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for key in body.get("params", []):
            for ds in names if "${key}" in key else [None]:
                dotted = key.replace("${key}", ds) if ds else key
                node: object = raw
                for part in dotted.split("."):
                    assert isinstance(node, dict) and part in node, f"{name}: {dotted} missing from params.yaml"
                    node = node[part]
