"""oneDNN-packed fp32 linears for CPU inference (avf.models.packed_linear) against plain ``F.linear``."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from avf.models import create_model
from avf.models.layers import fused_ops
from avf.models.packed_linear import PackedLinears, linear_gelu, packed_linears, packing_available

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this PyTorch has no oneDNN")


class _Count(TorchFunctionMode):
    """Counts the calls of one torch function that reach it."""

    def __init__(self, func: object) -> None:
        super().__init__()
        self.func, self.calls = func, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.calls += func is self.func
        return func(*args, **(kwargs or {}))


def _inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, 16, 160, 160, generator=g), torch.randn(batch, 1, 256, 128, generator=g)


def test_the_pinned_pytorch_has_the_kernels() -> None:
    # with oneDNN present a missing kernel would silently turn every context into a no-op
    assert packing_available()


def test_a_model_gives_its_plain_outputs_with_every_linear_weight_packed() -> None:
    torch.manual_seed(0)
    model = create_model("avf_mae_pp_tiny", num_classes=7).eval()
    video, audio = _inputs(2)
    packed = packed_linears(model)
    assert isinstance(packed, PackedLinears)
    with torch.inference_mode():
        plain = model(video, audio)
        with _Count(F.gelu) as gelus, packed:
            fast = model(video, audio)
        with packed:  # a second entry reuses the packed weights
            again = model(video, audio)
    assert (fast - plain).abs().max() <= 1e-5 * plain.abs().max()
    assert torch.equal(fast, again)
    assert gelus.calls == 0  # every MLP's GELU ran inside its first layer's packed GEMM
    # the folded cross-attention multiplies some projection weights into other tensors instead: in the
    # module graph every nn.Linear is an F.linear, and each one runs packed (as do the patch embeddings)
    plain_graph = packed_linears(model)
    with torch.inference_mode(), fused_ops(False), plain_graph:
        model(video, audio)
    packed_params = {id(p) for p, views in plain_graph._packed.items() if views}
    assert {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)} <= packed_params


def test_only_the_models_parameters_are_packed_and_changed_weights_are_packed_again() -> None:
    lin = nn.Linear(64, 32)
    x = torch.randn(5, 7, 64)
    packed = packed_linears(lin)
    with torch.no_grad():
        with packed:
            for _ in range(3):  # weights computed in the forward pass: each call must use its own values
                w = torch.randn(32, 64)
                torch.testing.assert_close(F.linear(x, w), x @ w.T, rtol=1e-5, atol=1e-5)
            out = F.linear(x, weight=lin.weight, bias=lin.bias)
        assert sum(len(views) for views in packed._packed.values()) == 1
        torch.testing.assert_close(out, x @ lin.weight.T + lin.bias, rtol=1e-5, atol=1e-5)
        lin.weight.mul_(-2.0)
        with packed:
            changed = lin(x.transpose(0, 1))  # a non-contiguous input
        torch.testing.assert_close(changed, x.transpose(0, 1) @ lin.weight.T + lin.bias, rtol=1e-5, atol=1e-5)


def test_replaced_inference_or_mismatched_weights_are_not_packed() -> None:
    lin = nn.Linear(64, 32)
    x = torch.randn(6, 64)
    packed = packed_linears(lin)
    with torch.no_grad():
        with packed:
            short_bias = F.linear(x, lin.weight, lin.bias[:1])  # broadcasts in F.linear, not in oneDNN
            lin(x)
        torch.testing.assert_close(short_bias, x @ lin.weight.T + lin.bias[:1], rtol=1e-5, atol=1e-5)
        del lin.weight  # its memory may go to the replacement: the context must tell them apart
        lin.weight = nn.Parameter(torch.randn(32, 64))
        with packed:
            replaced = lin(x)
        torch.testing.assert_close(replaced, x @ lin.weight.T + lin.bias, rtol=1e-5, atol=1e-5)
        assert [len(views) for views in packed._packed.values()] == [0]  # the bias; the old weight is gone
    with torch.inference_mode():
        frozen = nn.Linear(64, 32)  # inference tensors: no version counter to see in-place changes by
        packed = packed_linears(frozen)
        with packed:
            frozen(x)
        assert not any(packed._packed.values())


def test_autograd_keeps_the_plain_linear() -> None:
    lin = nn.Linear(16, 8)
    x = torch.randn(4, 16, requires_grad=True)
    packed = packed_linears(lin)
    with packed:
        lin(x).sum().backward()
    assert x.grad is not None
    assert not any(packed._packed.values())


def test_bf16_autocast_gives_autocasts_outputs_on_packed_bf16_weights() -> None:
    torch.manual_seed(0)
    model = create_model("avf_mae_pp_tiny", num_classes=7).eval()
    video, audio = _inputs(2)
    packed = packed_linears(model)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model(video, audio)
        with _Count(F.gelu) as gelus, packed:
            fast = model(video, audio)
        with torch.autocast("cpu", dtype=torch.float16), packed:  # other autocast dtypes: PyTorch's path
            model.head(video.new_zeros(1, model.head.in_features))
    assert fast.dtype == plain.dtype == torch.bfloat16
    # the same oneDNN bf16 kernels as autocast's own linears: equal here, allowed one bf16 rounding step
    torch.testing.assert_close(fast.float(), plain.float(), rtol=1e-2, atol=1e-2)
    dtypes = {key[0] for views in packed._packed.values() for key in views}
    assert dtypes == {torch.bfloat16}
    assert gelus.calls > 0  # GELU on the rounded bf16 product, as under autocast alone


@pytest.mark.parametrize("inside", [False, True])
def test_linear_gelu_is_gelu_of_the_linear(inside: bool) -> None:
    lin = nn.Linear(32, 128)
    x = torch.randn(3, 9, 32)
    packed = packed_linears(lin)
    with torch.no_grad(), packed if inside else contextlib.nullcontext():
        out = linear_gelu(x, lin.weight, lin.bias)
    with torch.no_grad():
        torch.testing.assert_close(out, F.gelu(F.linear(x, lin.weight, lin.bias)), rtol=1e-5, atol=1e-6)
    assert sum(len(views) for views in packed._packed.values()) == int(inside)


def test_compiled_or_non_cpu_models_get_no_packing() -> None:
    lin = nn.Linear(8, 8)
    lin.compile()  # lazily: nothing is compiled before a call
    assert isinstance(packed_linears(lin), contextlib.nullcontext)
    meta = nn.Linear(8, 8, device="meta")
    assert isinstance(packed_linears(meta), contextlib.nullcontext)
