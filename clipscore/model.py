"""Model loading: one CLIP per (model, revision, device, precision) per Python process.

``ModelCache`` is the single owner of loaded models. It is filled lazily on first use inside a Spark
Python worker (never on the driver, never at import time) and kept across batches and tasks, which
works because Spark reuses Python workers (``spark.python.worker.reuse``, on by default).

``check_model_loadable`` runs on the driver before any Spark work: it fetches only the small config
and tokenizer files, so a wrong path or a missing hub fails fast with a message that says what to do.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from clipscore.config import ConfigError

log = logging.getLogger(__name__)

LOAD_LOG_ENV = "CLIPSCORE_MODEL_LOAD_LOG"  # optional: append one line per model load (ops/debugging)

_OFFLINE_HINT = (
    "If this machine cannot reach the Hugging Face hub, download the model where you can "
    "(`huggingface-cli download {model} --local-dir /path/to/clip`, or `save_pretrained`), copy the folder "
    "to storage every executor can read, and pass --model /path/to/clip. The folder needs config.json, "
    "model.safetensors, preprocessor_config.json and the tokenizer files."
)


@dataclass(frozen=True)
class ModelKey:
    model: str
    revision: str | None
    device: str
    precision: str  # resolved: fp32, fp16, bf16 or int8


@dataclass
class ClipBundle:
    """A loaded CLIP: the model and the processor parts the scoring core needs."""

    key: ModelKey
    model: Any  # transformers.CLIPModel
    image_processor: Any
    tokenizer: Any
    device: Any  # torch.device
    dtype: Any  # torch dtype of the inputs the model expects
    max_length: int
    image_size: int
    load_seconds: float
    autocast: Any = None  # a torch dtype: run the towers under torch.autocast on the CPU (bf16)


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
def load_clip(key: ModelKey) -> ClipBundle:
    """Load weights (safetensors only, no remote code) and the processor, and place them on the device."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    started = time.perf_counter()
    try:
        processor = CLIPProcessor.from_pretrained(key.model, revision=key.revision)
        model = CLIPModel.from_pretrained(
            key.model, revision=key.revision, use_safetensors=True, attn_implementation="sdpa"
        )
    except Exception as exc:  # noqa: BLE001 - re-raised with what to do about it
        raise RuntimeError(f"Could not load CLIP model '{key.model}': {exc}\n" + _OFFLINE_HINT.format(model=key.model)) from exc
    model.eval()
    model.requires_grad_(False)
    device = torch.device(key.device)
    autocast = None
    if key.precision == "int8":
        model = quantize_int8(model)
    elif key.precision == "bf16" and device.type == "cpu":
        # fp32 weights under CPU autocast: matmuls in bf16 (AVX512-BF16/AMX), layer norms and softmax
        # in fp32; as fast as casting the whole model, and closer to fp32 (benchmarks/README.md).
        autocast = torch.bfloat16
        if not cpu_has_native_bf16():
            log.warning("precision=bf16 on a CPU without native bf16 (AVX512-BF16/AMX) is emulated and slower "
                        "than fp32; use precision=fp32 (or int8) on this machine.")
    else:
        model = model.to(device=device, dtype=torch_dtype(key.precision))
    image_size = int(model.config.vision_config.image_size)
    max_length = int(model.config.text_config.max_position_embeddings)
    bundle = ClipBundle(
        key=key,
        model=model,
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        device=device,
        dtype=torch.float32 if autocast is not None else torch_dtype(key.precision),
        autocast=autocast,
        max_length=max_length,
        image_size=image_size,
        load_seconds=time.perf_counter() - started,
    )
    log.info("loaded %s on %s (%s) in %.1fs", key.model, key.device, key.precision, bundle.load_seconds)
    _record_load(key)
    return bundle


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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (AVX512-BF16 or AMX), as oneDNN reports it."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _record_load(key: ModelKey) -> None:
    path = os.environ.get(LOAD_LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\t{key.model}\t{key.device}\t{key.precision}\n")


class ModelCache:
    """Process-wide owner of loaded models, keyed by ``ModelKey``; loads each key once, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[ModelKey, ClipBundle] = {}

    def get(self, key: ModelKey, factory: Callable[[ModelKey], ClipBundle] = load_clip) -> ClipBundle:
        with self._lock:
            bundle = self._models.get(key)
            if bundle is None:
                bundle = factory(key)
                self._models[key] = bundle
            return bundle

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def __len__(self) -> int:
        return len(self._models)


MODEL_CACHE = ModelCache()  # the one per-process owner; Spark workers reuse it across tasks


# -------------------------------------------------------------------------------------------------
# Driver-side check
# -------------------------------------------------------------------------------------------------
def check_model_loadable(model: str, revision: str | None = None) -> str | None:
    """Fail fast (ConfigError) unless ``model`` names a loadable CLIP with safetensors weights.

    Reads only config and tokenizer files; the weights are loaded later, on the executors. Returns
    the commit the hub resolved ``revision`` to (None for a local folder): the jobs pin it, so every
    executor loads the same weights and provenance names them.
    """
    local = Path(model).expanduser()
    # Hub ids are "name" or "org/name"; anything that exists, is explicitly relative/absolute, or has
    # more than one slash is a folder.
    if local.exists() or model.startswith(("/", "./", "../", "~")) or model.count("/") > 1:
        _check_local_folder(local, model)
    try:
        from transformers import CLIPConfig, CLIPProcessor

        config = CLIPConfig.from_pretrained(model, revision=revision)
        CLIPProcessor.from_pretrained(model, revision=revision)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(
            f"Could not load CLIP model '{model}' ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}).\n"
            + _OFFLINE_HINT.format(model=model)
        ) from None
    if not local.exists() and not _hub_has_safetensors(model, revision):
        raise ConfigError(
            f"Model '{model}' has no safetensors weights on the hub (we never load pickled .bin weights). "
            "Convert it (e.g. `CLIPModel.from_pretrained(...).save_pretrained(dir)`) and pass --model dir."
        )
    if local.exists():
        return None
    commit = getattr(config, "_commit_hash", None)
    return commit if isinstance(commit, str) and commit else None


def _check_local_folder(folder: Path, name: str) -> None:
    if not folder.exists():
        raise ConfigError(f"Model folder '{name}' does not exist. Pass --model with a folder that holds a saved CLIP, "
                          "or a Hugging Face id such as openai/clip-vit-base-patch32.")
    if not folder.is_dir():
        raise ConfigError(f"--model '{name}' is a file; pass the folder that holds config.json and model.safetensors.")
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any((folder / f).is_file() for f in ("preprocessor_config.json", "processor_config.json")):
        missing.append("preprocessor_config.json (or processor_config.json)")
    if not any(folder.glob("*.safetensors")):
        missing.append("model.safetensors (or sharded *.safetensors)")
    if not ((folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file()):
        missing.append("tokenizer.json or vocab.json + merges.txt")
    if missing:
        raise ConfigError(
            f"Model folder '{name}' is incomplete: missing {', '.join(missing)}. Save the model with "
            "`CLIPModel.save_pretrained(dir)` and `CLIPProcessor.save_pretrained(dir)` (safetensors)."
        )


def _hub_has_safetensors(model: str, revision: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        for name in ("model.safetensors", "model.safetensors.index.json"):
            if isinstance(try_to_load_from_cache(model, name, revision=revision), str):
                return True
        from huggingface_hub import HfApi

        files = HfApi().list_repo_files(model, revision=revision)
    except Exception:  # noqa: BLE001 - offline with configs cached: let the executors try and report
        log.warning("could not list files of %s on the hub; assuming safetensors weights exist", model)
        return True
    return any(f.endswith(".safetensors") for f in files)
