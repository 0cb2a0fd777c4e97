"""Linear layers on oneDNN's prepacked GEMM for inference on the CPU (:func:`packed_linears`).

Inside ``with packed_linears(model):`` every ``F.linear`` (``nn.Linear`` included) that runs on the CPU
without autograd, in fp32 or under bf16 autocast, multiplies with a copy of its weight (cast to bf16 under
autocast) that oneDNN reordered once into its blocked layout: ``torch.ops.mkldnn._reorder_linear_weight``
and ``_linear_pointwise``, the kernels ``torch.compile``'s CPU backend uses for frozen weights. In fp32 it
is the same function in another float summation order (a few 1e-7 relative on the models' outputs); under
bf16 autocast, whose linears run on oneDNN already, it saves the cast and the reorder of every weight on
every call.

Why not PyTorch's default: on the CPU an fp32 ``F.linear`` is an MKL ``addmm``, and in the base model's
inference forward those multiplies are about three quarters of the time. With the weights packed and the
MLP's GELU fused into its first GEMM (:func:`linear_gelu`), the base model's inference forward ran 1.2x
faster on an AMD EPYC, and 1.04-1.08x under bf16 autocast (docs/performance.md, "Inference on oneDNN's packed
weights"). Training keeps MKL: its weights change every step, and oneDNN was slower for weight gradients.

Only the model's own parameters, or views of them, are packed: the parameter objects of the model when the
context was made (weights computed in the forward pass are not, nor a parameter assigned later). They are
packed on first use, kept by the returned context across entries (a predictor packs once) and freed with it,
so while it lives the packed copies take as much memory again as the weights they copy (half that in bf16).
A parameter changed in place by a tensor operation since it was packed (``copy_``, ``load_state_dict``) is
packed again; writes through ``.data`` bypass the version counter that tells, so a context must not outlive
such a write. Other torch calls inside the context pass through it unchanged. Where PyTorch lacks oneDNN or
these kernels, or where the model has ``torch.compile``'d blocks, the context does nothing.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["PackedLinears", "linear_gelu", "packed_linears", "packing_available"]

PACK_ROWS = 1024  # the row-count hint oneDNN picks a weight layout for; the layout serves any row count


def packing_available() -> bool:
    """Whether this PyTorch has oneDNN and the packed-linear kernels."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return all(callable(getattr(torch.ops.mkldnn, op)) for op in ("_reorder_linear_weight", "_linear_pointwise"))
    except (AttributeError, RuntimeError):
        return False


def _is_compiled(model: nn.Module) -> bool:
    from torch._dynamo.eval_frame import OptimizedModule

    return any(isinstance(m, OptimizedModule) or getattr(m, "_compiled_call_impl", None) for m in model.modules())


def packed_linears(model: nn.Module) -> contextlib.AbstractContextManager[Any]:
    """A reusable context that runs ``model``'s fp32 CPU linears on packed weights (see the module doc);
    a no-op context where packing is unavailable, ``model`` is not on the CPU or has compiled blocks."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if not on_cpu or not packing_available() or _is_compiled(model):
        return contextlib.nullcontext()
    return PackedLinears(model)


def linear_gelu(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.gelu(F.linear(x, weight, bias))`` (exact GELU); one oneDNN call with the GELU fused into the GEMM
    where the innermost active :class:`PackedLinears` packs ``weight`` in fp32."""
    active = _active()
    mode = active[-1] if active else None
    dtype = mode.dtype_of(x, weight, bias) if mode is not None else None
    if mode is not None and dtype == torch.float32:
        return torch.ops.mkldnn._linear_pointwise(x, mode.packed(weight, dtype), bias, "gelu", [], "none")
    # under autocast GELU runs on the rounded bf16 product, as autocast's own linear leaves it
    return F.gelu(F.linear(x, weight, bias))


class PackedLinears(TorchFunctionMode):
    """The torch-function mode behind :func:`packed_linears`; holds the packed weights of ``model``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        # keyed by the parameter objects, held weakly: a dead parameter's entries go with it
        self._packed = WeakIdKeyDictionary({p: {} for p in model.parameters()})

    def __enter__(self) -> PackedLinears:
        _active().append(self)
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        _active().remove(self)
        super().__exit__(*exc)

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, bias = _linear_args(args, kwargs)
            dtype = self.dtype_of(x, weight, bias)
            if dtype is not None:
                bias = None if bias is None else bias.to(dtype)
                return torch.ops.mkldnn._linear_pointwise(x.to(dtype), self.packed(weight, dtype), bias, "none", [], "")
        return func(*args, **kwargs)

    def dtype_of(self, x: Any, weight: Any, bias: Any) -> torch.dtype | None:
        """The dtype ``F.linear(x, weight, bias)`` runs in on a packed weight here (fp32, or bf16 under CPU bf16
        autocast); None where it keeps PyTorch's path."""
        dtype = _eligible_dtype(x, weight, bias)
        # an inference tensor has no version counter to tell an in-place change by
        if dtype is None or _parameter_of(weight) not in self._packed or weight.is_inference():
            return None
        return dtype

    def packed(self, weight: Tensor, dtype: torch.dtype) -> Tensor:
        """``weight`` (one that :meth:`dtype_of` accepts) in ``dtype`` and oneDNN's layout, packed now or earlier
        (again when changed in place since)."""
        views: dict[tuple[Any, ...], tuple[int, Tensor]] = self._packed[_parameter_of(weight)]
        key = (dtype, weight.shape, weight.stride(), weight.storage_offset())
        hit = views.get(key)
        if hit is None or hit[0] != weight._version:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.to(dtype).contiguous(), PACK_ROWS)
            hit = views[key] = (weight._version, packed)
        return hit[1]


_LOCAL = threading.local()  # like torch's own mode stack, the entered contexts are per thread


def _active() -> list[PackedLinears]:
    """This thread's entered contexts, innermost last (for :func:`linear_gelu`)."""
    if not hasattr(_LOCAL, "stack"):
        _LOCAL.stack = []
    return _LOCAL.stack


def _parameter_of(weight: Tensor) -> Tensor:
    """The tensor ``weight`` is a view of (itself when it is not a view)."""
    return weight if weight._base is None else weight._base


def _linear_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
    x = args[0] if args else kwargs.get("input")
    weight = args[1] if len(args) > 1 else kwargs.get("weight")
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    return x, weight, bias


def _eligible_dtype(x: Any, weight: Any, bias: Any) -> torch.dtype | None:
    """fp32 or bf16 (CPU bf16 autocast) for an fp32 linear without autograd that oneDNN can run; else None."""
    f32, bf16 = torch.float32, torch.bfloat16
    dtype = f32
    if torch.is_autocast_enabled("cpu"):
        if torch.get_autocast_dtype("cpu") != bf16:
            return None
        dtype = bf16
    plain = (
        not torch.is_grad_enabled()
        and type(x) is Tensor
        and type(weight) in (Tensor, nn.Parameter)
        and x.device.type == "cpu"
        and x.dtype in {f32, dtype}
        and x.dim() >= 1
        and x.numel() > 0
        and weight.dtype == f32
        and weight.device.type == "cpu"
        and weight.dim() == 2
        and x.shape[-1] == weight.shape[1]
        and (
            bias is None
            or (type(bias) in (Tensor, nn.Parameter) and bias.dtype == f32 and bias.shape == weight.shape[:1])
        )
    )
    return dtype if plain else None
