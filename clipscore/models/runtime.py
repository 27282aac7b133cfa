"""Model runtime shared by every family: the model key, device and precision rules, int8, load records.

What a model is and how it loads is its family's business (``clipscore.models``); who keeps it is
``clipscore.models.cache``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

from clipscore.config.coerce import ConfigError

log = logging.getLogger(__name__)

LOAD_LOG_ENV = "CLIPSCORE_MODEL_LOAD_LOG"  # optional: append one line per model load (ops/debugging)


@dataclass(frozen=True)
class ModelKey:
    model: str
    revision: str | None
    device: str
    precision: str  # resolved: fp32, fp16, bf16 or int8


# -------------------------------------------------------------------------------------------------
# Device and precision
# -------------------------------------------------------------------------------------------------
def gpu_ordinal(address: str, visible_devices: str | None, device_count: int) -> int:
    """Map a GPU address Spark assigned to a CUDA ordinal in this process.

    Spark reports physical addresses from the discovery script. When the cluster manager also
    narrows ``CUDA_VISIBLE_DEVICES`` (YARN/Kubernetes isolation), physical address 3 may be ordinal 0.
    """
    if visible_devices:
        visible = [v.strip() for v in visible_devices.split(",") if v.strip()]
        if address in visible:
            return visible.index(address)
    try:
        ordinal = int(address)
    except ValueError:
        raise RuntimeError(f"Spark assigned GPU address '{address}', which is not a CUDA ordinal") from None
    if 0 <= ordinal < device_count:
        return ordinal
    if device_count == 1:
        return 0
    raise RuntimeError(
        f"Spark assigned GPU {address} but this process sees {device_count} CUDA device(s) "
        f"(CUDA_VISIBLE_DEVICES={visible_devices!r}); check the GPU discovery script."
    )


def resolve_device(requested: str, assigned_gpus: Sequence[str] = ()) -> str:
    """``cpu``, or ``cuda:N``: the GPU Spark assigned to this task, else the first visible GPU."""
    import torch

    if requested == "cpu":
        return "cpu"
    cuda = torch.cuda.is_available()
    if assigned_gpus:
        if not cuda:
            raise RuntimeError(
                f"Spark assigned GPU(s) {list(assigned_gpus)} to this task but torch sees no CUDA device "
                f"(torch {torch.__version__}); install a CUDA build of torch on the executors or set device=cpu."
            )
        ordinal = gpu_ordinal(assigned_gpus[0], os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count())
        return f"cuda:{ordinal}"
    if cuda:
        return "cuda:0"
    if requested == "cuda":
        raise RuntimeError("device=cuda was requested but no CUDA GPU is visible to this worker; set device=auto or cpu.")
    return "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` is fp16 on a GPU (more mantissa bits than bf16 for scores in [-1, 1]) and fp32 on CPU."""
    on_gpu = device.startswith("cuda")
    if precision == "auto":
        return "fp16" if on_gpu else "fp32"
    if precision == "int8" and on_gpu:
        raise RuntimeError("precision=int8 runs on CPU only; use fp16 or bf16 on a GPU.")
    return precision


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}[precision]


# -------------------------------------------------------------------------------------------------
# Loading
# -------------------------------------------------------------------------------------------------
# The deviation from fp32 (max |delta similarity|, ViT-B/32 size) a faster bf16 way may cost: band edges
# are 0.02-0.05 apart, so only rows within this of an edge may change band.
BF16_MAX_ABS = 2e-3


def place(model: Any, key: ModelKey, cpu_bf16: str = "cast") -> tuple[Any, Any, Any]:
    """Put a loaded ``torch.nn.Module`` in eval mode on the key's device and precision.

    Returns (model, input dtype, autocast dtype or None), the same rules for every family: fp32,
    fp16 and bf16 on a GPU cast the weights; int8 quantises every Linear layer dynamically (CPU only).
    bf16 on a CPU follows the family's measured choice (``ScoringModel.cpu_bf16``): ``autocast`` keeps
    fp32 weights under autocast (matmuls in bf16 on AVX512-BF16/AMX, norms and softmax in fp32:
    somewhat closer to fp32), ``cast`` casts the weights once (faster for every family measured, within
    ``BF16_MAX_ABS``; benchmarks/README.md, "bf16 per family").
    """
    import torch

    model.eval()
    model.requires_grad_(False)
    device = torch.device(key.device)
    if key.precision == "int8":
        return quantize_int8(model), torch.float32, None
    if key.precision == "bf16" and device.type == "cpu":
        if not cpu_has_native_bf16():
            log.warning("precision=bf16 on a CPU without native bf16 (AVX512-BF16/AMX) is emulated and slower "
                        "than fp32; use precision=fp32 (or int8) on this machine.")
        if cpu_bf16 == "autocast":
            return model, torch.float32, torch.bfloat16
    dtype = torch_dtype(key.precision)
    return model.to(device=device, dtype=dtype), dtype, None


def quantize_int8(model, backend: str = "auto"):
    """Dynamic int8 quantisation of every Linear layer (int8 weights, activations quantised per batch).

    ``auto``: ``torch.ao.quantization.quantize_dynamic`` while torch ships it, else torchao.
    torch.ao's API is deprecated (since torch 2.10, slated for removal) and torchao is PyTorch's
    maintained successor, but in eager mode torchao's dynamic int8 ran at 0.82x fp32 in our core on
    this CPU while torch.ao ran at 1.49x (benchmarks/README.md), so torch.ao stays first until it
    is removed. On CPUs with native bf16, ``precision=bf16`` is faster than either (2.2x).
    """
    import torch

    if backend in ("auto", "torch.ao") and int8_backend() == "torch.ao":
        import warnings

        with warnings.catch_warnings():  # the deprecation is documented above and in the README
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as exc:
        raise RuntimeError("precision=int8 needs torch.ao.quantization (removed from this torch) or torchao "
                           "(pip install 'clipscore[int8]'); or use precision=bf16 on CPUs with native bf16, "
                           "else fp32.") from exc
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


def int8_backend() -> str | None:
    """Which int8 path this process has: ``torch.ao``, ``torchao`` or None."""
    import importlib.util

    import torch

    if hasattr(getattr(getattr(torch, "ao", None), "quantization", None), "quantize_dynamic"):
        return "torch.ao"
    return "torchao" if importlib.util.find_spec("torchao") is not None else None


def check_precision_available(precision: str) -> None:
    """A ConfigError on the driver when this process has no runtime for ``precision`` (int8 without an int8 path)."""
    if precision == "int8" and int8_backend() is None:
        raise ConfigError("precision=int8 needs torchao with this torch: pip install 'clipscore[int8]' "
                          "(or torchao), or choose precision=bf16 (CPUs with AVX512-BF16/AMX) or fp32.")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (AVX512-BF16 or AMX), as oneDNN reports it."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def record_load(key: ModelKey) -> None:
    path = os.environ.get(LOAD_LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\t{key.model}\t{key.device}\t{key.precision}\n")
