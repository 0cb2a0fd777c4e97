"""Official checkpoint import: key layout, strict conversion, safe loading, CLI round trip."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from avf.artifacts.official import load_converted, load_official, read_checkpoint
from avf.cli import app
from avf.config.model import MaskingConfig
from avf.models import convert_official_state_dict, create_model, to_official_state_dict
from avf.models.masking import sample_masks

B = 2


class NotAWeight:  # module-level so that pickle can store it by reference
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran while unpickling",))


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, 3, 16, 160, 160, generator=g), torch.randn(B, 1, 256, 128, generator=g)


def _randomized(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial values everywhere (zero biases would hide a mapping mistake)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5, generator=g)
            elif name.endswith("running_mean"):
                b.normal_(0, 0.1, generator=g)
    return model.eval()


def test_official_key_layout() -> None:
    with torch.device("meta"):
        pre = create_model("avf_mae_pp_pretrain_base")
        fine = create_model("avf_mae_pp_base", num_classes=11)
    off = to_official_state_dict(pre.state_dict())
    for key in (
        "encoder.patch_embed.proj.weight",
        "encoder.lg_region_tokens",
        "encoder.blocks.0.first_attn.q.weight",
        "encoder.blocks.0.first_attn.kv.weight",
        "encoder.blocks.9.fourth_attn_norm1.bias",
        "encoder_audio.blocks.3.third_attn.v_bias",
        "encoder_fusion.blocks.0.attn.qkv.weight",
        "encoder_fusion.blocks.1.norm3.weight",
        "encoder_fusion.blocks.1.cross_attn_a.kv.weight",
        "encoder_fusion.Iterative_Refinement_Module.conv_audio.1.running_mean",
        "encoder_fusion.Iterative_Refinement_Module.post_extract_proj.weight",
        "encoder_fusion.vadaptiveinteraction.q_bias",
        "encoder_fusion.cross_norm_3.weight",
        "encoder_fusion.mlp_att_audio_IR.fc2.bias",
        "encoder_to_decoder.weight",
        "mask_token_audio",
        "decoder.blocks.0.attn.qkv.weight",
        "decoder_audio.blocks.3.cross_norm2.weight",
        "decoder_audio.head.weight",
    ):
        assert key in off, key
    assert off["encoder.blocks.0.first_attn.kv.weight"].shape == (1024, 512)
    assert off["decoder_audio.head.weight"].shape == (256, 384)
    assert len(off) == 1240  # the official base pretraining state dict holds 1240 entries
    assert len(to_official_state_dict(fine.state_dict())) == 1070
    assert {"fc_norm.weight", "head.bias", "layer_weights_audio"} <= set(to_official_state_dict(fine.state_dict()))


@pytest.mark.parametrize("size", ["base", "large", "huge"])
def test_key_mapping_round_trips_for_every_size(size: str) -> None:
    with torch.device("meta"):
        for model in (create_model(f"avf_mae_pp_pretrain_{size}"), create_model(f"avf_mae_pp_{size}", num_classes=4)):
            ours = model.state_dict()
            back = convert_official_state_dict(to_official_state_dict(ours))
            assert list(back) == list(ours)
            assert all(back[k].shape == v.shape for k, v in ours.items())


def test_pretrain_round_trip_gives_identical_outputs(inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    video, audio = inputs
    src = _randomized(create_model("avf_mae_pp_pretrain_tiny"))
    off = to_official_state_dict(src.state_dict())
    dst = create_model("avf_mae_pp_pretrain_tiny").eval()
    dst.load_state_dict(convert_official_state_dict(off, "pretrain", "tiny"), strict=True)
    masks = sample_masks(B, MaskingConfig(), torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = src(video, audio, masks), dst(video, audio, masks)
    assert torch.equal(a.pred_video, b.pred_video) and torch.equal(a.pred_audio, b.pred_audio)


def test_finetune_load_official_file(tmp_path: Path, inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    video, audio = inputs
    src = _randomized(create_model("avf_mae_pp_tiny", num_classes=7))
    off = {f"module.{k}": v for k, v in to_official_state_dict(src.state_dict()).items()}
    path = tmp_path / "checkpoint-best.pth"
    torch.save({"module": off, "epoch": 12, "args": argparse.Namespace(lr=1e-3, model="avit")}, path)
    loaded = load_official(path, head_activation=None)
    assert not loaded.training and loaded.num_classes == 7
    with torch.no_grad():
        assert torch.equal(loaded(video, audio), src(video, audio))

    # the CLI writes safetensors that load back into the same model
    dst = tmp_path / "converted.safetensors"
    result = CliRunner().invoke(app, ["model", "import-official", str(path), str(dst)])
    assert result.exit_code == 0, result.output
    again = load_converted(dst)
    with torch.no_grad():
        assert torch.equal(again(video, audio), src(video, audio))


def test_strict_conversion_names_the_key() -> None:
    off = to_official_state_dict(create_model("avf_mae_pp_tiny", num_classes=3).state_dict())
    missing = dict(off)
    del missing["encoder_fusion.blocks.1.norm3.weight"]
    with pytest.raises(ValueError, match=r"missing key 'encoder_fusion\.blocks\.1\.norm3\.weight'"):
        convert_official_state_dict(missing, "finetune", "tiny")
    unknown = {**off, "encoder.pos_embed": torch.zeros(1, 800, 96)}
    with pytest.raises(ValueError, match=r"unknown key.*encoder\.pos_embed"):
        convert_official_state_dict(unknown, "finetune", "tiny")
    shaped = {**off, "encoder.blocks.2.third_attn.q.weight": torch.zeros(96, 95)}
    with pytest.raises(ValueError, match=r"encoder\.blocks\.2\.third_attn\.q\.weight.*shape"):
        convert_official_state_dict(shaped, "finetune", "tiny")
    with pytest.raises(ValueError, match="no registered size"):
        convert_official_state_dict({**off, "encoder.patch_embed.proj.weight": torch.zeros(100, 3, 2, 16, 16)})
    with pytest.raises(ValueError, match="not an AVF-MAE"):
        convert_official_state_dict({"foo": torch.zeros(1)})


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": NotAWeight()}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        read_checkpoint(path)
    result = CliRunner().invoke(app, ["model", "import-official", str(path), str(tmp_path / "out.safetensors")])
    assert result.exit_code == 1 and not (tmp_path / "out.safetensors").exists()
    missing = CliRunner().invoke(app, ["model", "import-official", str(tmp_path / "nope.pth"), "x.safetensors"])
    assert missing.exit_code == 3


def test_cli_help_and_summary() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["model", "--help"]).exit_code == 0
    assert runner.invoke(app, ["model", "import-official", "--help"]).exit_code == 0
    result = runner.invoke(app, ["model", "summary", "avf_mae_pp_base", "--num-classes", "11"])
    assert result.exit_code == 0, result.output
    assert "169,122,851" in result.output and "fusion" in result.output
    assert runner.invoke(app, ["model", "summary", "avf_mae_pp_nope"]).exit_code == 2


def _official_head(tmp_path: Path, num_classes: int) -> Path:
    model = create_model("avf_mae_pp_tiny", num_classes=num_classes)
    path = tmp_path / f"official-{num_classes}.pth"
    torch.save({"model": to_official_state_dict(model.state_dict())}, path)
    return path


def test_import_names_the_head_from_the_dataset_adapter_and_refuses_another_order(tmp_path: Path) -> None:
    from avf.data.adapters import get_adapter
    from avf.data.adapters.mer import AVF_MAE_ORDER, MERTOOLS_ORDER
    from avf.predict.heads import dataset_head
    from avf.predict.source import load_model

    pth = _official_head(tmp_path, 6)
    dst = tmp_path / "mer2024.safetensors"
    result = CliRunner().invoke(app, ["model", "import-official", str(pth), str(dst), "--dataset", "mer2024"])
    assert result.exit_code == 0, result.output
    _, spec = load_model(dst)
    assert spec.outputs == AVF_MAE_ORDER == ("worried", "happy", "neutral", "angry", "surprise", "sad")
    assert spec.dataset == "mer2024"
    # the same head checked against MER2023 (MERTools' order): the same six classes in another order
    with pytest.raises(ValueError, match="class order differs"):
        load_model(dst, head=dataset_head(get_adapter("mer2023")))
    # a head trained in MER2024's order declared for MER2023 fails at import, naming both orders
    mixed = CliRunner().invoke(
        app,
        ["model", "import-official", str(pth), str(tmp_path / "x.safetensors"), "--dataset", "mer2023",
         "--classes", ",".join(AVF_MAE_ORDER)],
    )  # fmt: skip
    assert mixed.exit_code == 2 and "class order differs" in mixed.output
    assert ", ".join(MERTOOLS_ORDER) in mixed.output.replace("\n", "")
    assert not (tmp_path / "x.safetensors").exists()
    # a head of the wrong size for the adapter
    wrong = CliRunner().invoke(
        app, ["model", "import-official", str(_official_head(tmp_path, 4)), str(tmp_path / "y.safetensors"),
              "--dataset", "mafw"],
    )  # fmt: skip
    assert wrong.exit_code == 1 and "11 output names given but the checkpoint's head has 4" in wrong.output


def test_predict_dataset_names_a_bare_official_checkpoint(tmp_path: Path) -> None:
    from avf.data.adapters import get_adapter
    from avf.data.adapters.mafw import SINGLE
    from avf.predict.heads import dataset_head
    from avf.predict.source import load_model

    pth = _official_head(tmp_path, len(SINGLE))
    _, bare = load_model(pth)
    assert bare.outputs[:2] == ("class_0", "class_1")
    _, named = load_model(pth, head=dataset_head(get_adapter("mafw")))
    assert named.outputs == SINGLE and named.dataset == "mafw"
    with pytest.raises(ValueError, match="the head has 11 outputs but the dfew adapter has 7"):
        load_model(pth, head=dataset_head(get_adapter("dfew")))


def test_dataset_of_params_names_the_head_with_its_adapter_options(tmp_path: Path) -> None:
    import yaml

    from avf.predict.source import load_model

    params = tmp_path / "params.yaml"
    spec = {"adapter": "cremad", "raw_dir": str(tmp_path), "options": {"classes": 4}}
    params.write_text(yaml.safe_dump({"data": {"datasets": {"cremad4": spec}, "target": "cremad4"}}))
    dst = tmp_path / "cremad4.safetensors"
    args = ["--params", str(params), "model", "import-official", str(_official_head(tmp_path, 4)), str(dst)]
    result = CliRunner().invoke(app, [*args, "--dataset", "cremad4"])
    assert result.exit_code == 0, result.output
    _, spec4 = load_model(dst)
    assert spec4.outputs == ("ANG", "HAP", "NEU", "SAD") and spec4.dataset == "cremad4"
    pretraining = tmp_path / "pre.pth"
    torch.save({"model": to_official_state_dict(create_model("avf_mae_pp_pretrain_tiny").state_dict())}, pretraining)
    refused = CliRunner().invoke(
        app, ["model", "import-official", str(pretraining), str(tmp_path / "p.st"), "--dataset", "mafw"]
    )
    assert refused.exit_code == 1 and "has no classification head to name" in refused.output
