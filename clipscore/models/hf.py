"""Families loaded through transformers (CLIP, SigLIP, SigLIP2): loading, folder checks, the hub.

Weights load from safetensors only (``use_safetensors=True``), never remote code. The family of a
folder or hub id comes from its ``config.json`` (``model_type``), so any ``CLIPModel`` checkpoint
(OpenAI, MetaCLIP, TinyCLIP ...) is CLIP and any ``SiglipModel`` checkpoint (SigLIP, and SigLIP2's
fixed-resolution releases, which ship as ``SiglipModel``) is SigLIP.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, ClassVar

from clipscore.config.coerce import ConfigError
from clipscore.schema.errors import first_line
from clipscore.models.base import ImageInput, ScoringModel, Tokenizer
from clipscore.models.runtime import ModelKey, place, record_load
from clipscore.models.preprocess import CaptionTokenizer, ImagePreprocessor

log = logging.getLogger(__name__)

OFFLINE_HINT = (
    "If this machine cannot reach the Hugging Face hub, download the model where you can "
    "(`hf download {model} --local-dir /path/to/model`, or `save_pretrained`), copy the folder "
    "to storage every executor can read, and pass --model /path/to/model. The folder needs config.json, "
    "model.safetensors, preprocessor_config.json and the tokenizer files."
)
LOCAL_HINT = ("The folder '{model}' must hold a complete `save_pretrained` output (config.json, model.safetensors, "
              "the processor and tokenizer files); save the model and processor again and copy the whole folder.")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "spiece.model", "tokenizer.model", "sentencepiece.bpe.model")


def is_local(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything that exists, starts like a path or has more
    than one slash is a folder."""
    return Path(model).expanduser().exists() or model.startswith(("/", "./", "../", "~")) or model.count("/") > 1


def read_config(model: str, revision: str | None):
    """The checkpoint's transformers config (config.json only), or a ConfigError that says what to do."""
    if is_local(model):
        check_local_folder(Path(model).expanduser(), model)
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model, revision=revision)
    except Exception as exc:  # noqa: BLE001 - re-raised with what to do about it
        raise ConfigError(f"Could not load model '{model}' ({type(exc).__name__}: "
                          f"{first_line(exc)}).\n" + OFFLINE_HINT.format(model=model)) from None


def check_processor(model: str, revision: str | None) -> None:
    try:
        from transformers import AutoProcessor

        AutoProcessor.from_pretrained(model, revision=revision)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"Could not load the processor (image processor and tokenizer) of '{model}' "
                          f"({type(exc).__name__}: {first_line(exc)}).\n"
                          + OFFLINE_HINT.format(model=model)) from None
    if not is_local(model) and not _hub_has_safetensors(model, revision):
        raise ConfigError(
            f"Model '{model}' has no safetensors weights on the hub (we never load pickled .bin weights). "
            "Convert it (e.g. `AutoModel.from_pretrained(...).save_pretrained(dir)`) and pass --model dir.")


def pinned_revision(config: Any, model: str) -> str | None:
    """The commit the hub resolved (executors load exactly that), None for a local folder."""
    if is_local(model):
        return None
    commit = getattr(config, "_commit_hash", None)
    return commit if isinstance(commit, str) and commit else None


def load_pretrained(key: ModelKey, model_class: Any, cpu_bf16: str = "cast") -> tuple[Any, Any, Any, Any, float]:
    """(model placed on device/precision, processor, input dtype, autocast, seconds) for ``key``;
    ``cpu_bf16``: the family's way to run bf16 on a CPU (``runtime.place``)."""
    from transformers import AutoProcessor

    started = time.perf_counter()
    try:
        processor = AutoProcessor.from_pretrained(key.model, revision=key.revision)
        model = model_class.from_pretrained(key.model, revision=key.revision, use_safetensors=True,
                                            attn_implementation="sdpa")
    except Exception as exc:  # noqa: BLE001 - re-raised with what to do about it
        hint = (LOCAL_HINT if is_local(key.model) else OFFLINE_HINT).format(model=key.model)
        raise RuntimeError(f"Could not load model '{key.model}': {exc}\n" + hint) from exc
    model, dtype, autocast = place(model, key, cpu_bf16)
    seconds = time.perf_counter() - started
    log.info("loaded %s (%s) on %s (%s) in %.1fs", key.model, model_class.__name__, key.device, key.precision, seconds)
    record_load(key)
    return model, processor, dtype, autocast, seconds


class TransformersModel(ScoringModel):
    """What the transformers families share: loading, the processor's image steps, its tokenizer."""

    model_class: ClassVar[str] = ""  # the transformers class, e.g. CLIPModel
    padding: ClassVar[str] = "longest"  # how captions are padded: "longest", or "max_length" (fixed)

    def __init__(self, key: ModelKey, model: Any, processor: Any, dtype: Any, autocast: Any, load_seconds: float):
        super().__init__(key, model, dtype, autocast, load_seconds)
        self.processor = processor
        self.max_length = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def load(cls, key: ModelKey) -> "TransformersModel":
        import transformers

        return cls(key, *load_pretrained(key, getattr(transformers, cls.model_class), cls.cpu_bf16))

    def preprocessor(self, gpu_decode: bool = False) -> ImageInput:
        return ImagePreprocessor(self.processor.image_processor, self.device if gpu_decode else None,
                                 normalise_in_one=self.device.type == "cpu")

    def tokenizer(self, max_chars: int) -> Tokenizer:
        return CaptionTokenizer(self.processor.tokenizer, self.max_length, max_chars, padding=self.padding)

    @property
    def context_length(self) -> int:
        return self.max_length

    def token_counts(self, captions, max_chars: int) -> list[int]:
        return self.tokenizer(max_chars).count(captions)

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.float().exp())


def check_local_folder(folder: Path, name: str) -> None:
    if not folder.exists():
        raise ConfigError(f"Model folder '{name}' does not exist. Pass --model with a folder that holds a saved "
                          "model, a Hugging Face id such as openai/clip-vit-base-patch32, or open_clip:ARCH/TAG.")
    if not folder.is_dir():
        raise ConfigError(f"--model '{name}' is a file; pass the folder that holds config.json and model.safetensors "
                          "(for an open_clip checkpoint file: open_clip:ARCH/path/to/file.safetensors).")
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any((folder / f).is_file() for f in ("preprocessor_config.json", "processor_config.json")):
        missing.append("preprocessor_config.json (or processor_config.json)")
    if not any(folder.glob("*.safetensors")):
        missing.append("model.safetensors (or sharded *.safetensors)")
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json, vocab.json + merges.txt, or spiece.model)")
    if missing:
        raise ConfigError(
            f"Model folder '{name}' is incomplete: missing {', '.join(missing)}. Save the model with "
            "`model.save_pretrained(dir)` and `processor.save_pretrained(dir)` (safetensors)."
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
