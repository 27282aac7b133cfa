"""open_clip models (the LAION, DataComp, DFN, MetaCLIP zoo) through the ``open_clip_torch`` library.

Model names: ``open_clip:ARCH/PRETRAINED`` where PRETRAINED is

* a pretrained tag of open_clip's registry (``open_clip:ViT-B-32/laion2b_s34b_b79k``),
* a local ``.safetensors`` file (``open_clip:ViT-B-32/ckpt/epoch_32.safetensors``; an absolute path
  keeps its slash: ``open_clip:ViT-B-32//data/ckpt.safetensors``),
* ``hf-hub:org/name``, weights from that hub repository (``open_clip:ViT-B-16/hf-hub:org/name``);

or ``open_clip:hf-hub:org/name`` (architecture and weights from the repository's
``open_clip_config.json``, as open_clip reads it), or ``open_clip:/path/to/folder`` (the same layout,
offline: ``open_clip_config.json`` and ``*.safetensors``).

Weights load from safetensors only. open_clip falls back to ``torch.load`` on ``.pt``/``.bin`` files
(unpickling runs code), so those are refused with a message that says how to convert them.

Scoring is open_clip's own: its validation transform (``create_model_and_transforms``' third value)
on the decoded image, its tokenizer, ``encode_image``/``encode_text``. The transform works on PIL
images, so each decoded frame becomes one (a lossless view of the same pixels) in the decode thread.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipscore.config.coerce import ConfigError
from clipscore.config.extras import require
from clipscore.models.base import ImageInput, ModelInfo, ScoringModel, Tokenizer
from clipscore.models.runtime import ModelKey, place, record_load

log = logging.getLogger(__name__)

PREFIX = "open_clip:"
_SAFE_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "model.safetensors")
_CONVERT = ("Convert it once where you trust the file: python -c \"import torch, safetensors.torch as st; "
            "sd = torch.load('IN.pt', map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); "
            "st.save_file({k.removeprefix('module.'): v.contiguous() for k, v in sd.items()}, 'OUT.safetensors')\" "
            "and pass open_clip:ARCH/OUT.safetensors.")


@dataclass(frozen=True)
class OpenClipName:
    """A parsed ``open_clip:`` name: what open_clip is asked for, and where the weights come from."""

    kind: str  # "tag", "file", "hub_weights", "hub", "folder"
    arch: str | None  # built-in architecture (None: the repository/folder config names it)
    source: str  # the tag, file path, hub repository id or folder

    @classmethod
    def parse(cls, model: str) -> "OpenClipName":
        rest = model[len(PREFIX):].strip()
        if rest.startswith("hf-hub:"):
            return cls("hub", None, rest[len("hf-hub:"):])
        if rest.startswith("local-dir:"):
            return cls("folder", None, rest[len("local-dir:"):])
        arch, _, pretrained = rest.partition("/")
        if arch in ("", ".", "..", "~") or Path(rest).expanduser().is_dir():
            return cls("folder", None, rest)
        if not pretrained:
            raise ConfigError(f"'{model}' names no weights: use open_clip:{arch}/TAG (a pretrained tag), "
                              f"open_clip:{arch}/path/to/weights.safetensors or open_clip:{arch}/hf-hub:org/name.")
        if pretrained.startswith("hf-hub:"):
            return cls("hub_weights", arch, pretrained[len("hf-hub:"):])
        if pretrained.endswith((".safetensors", ".pt", ".pth", ".bin", ".ckpt")) or "/" in pretrained:
            return cls("file", arch, pretrained)
        return cls("tag", arch, pretrained)


# -------------------------------------------------------------------------------------------------
# Driver-side check
# -------------------------------------------------------------------------------------------------
def describe(model: str, revision: str | None) -> ModelInfo:
    """Fail fast (ConfigError) unless the name resolves to an architecture and safetensors weights."""
    if revision:
        raise ConfigError(f"'{model}': open_clip names take no revision; pin weights with a local .safetensors "
                          "file or a hub repository you control.")
    open_clip = _import()
    name = OpenClipName.parse(model)
    if name.arch is not None and name.arch not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(name.arch, open_clip.list_models(), n=3)
        raise ConfigError(f"open_clip has no architecture '{name.arch}'" + (f"; did you mean {', '.join(close)}?" if close
                          else "; see open_clip.list_models()."))
    if name.kind == "tag":
        cfg = open_clip.get_pretrained_cfg(name.arch, name.source)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(name.arch)
            raise ConfigError(f"'{name.source}' is not a pretrained tag of {name.arch} (tags: {', '.join(tags) or 'none'}), "
                              "nor a .safetensors file.")
        repo = _tag_repo(cfg)
        if repo is None:
            raise ConfigError(f"{name.arch}/{name.source} is only published as a pickled file ({cfg.get('url')}); we "
                              f"never unpickle weights. {_CONVERT}")
        _check_hub_safetensors(repo, model)
    elif name.kind == "file":
        _check_file(Path(name.source).expanduser(), model)
    elif name.kind in ("hub", "hub_weights"):
        _check_hub_safetensors(name.source, model)
    else:
        _check_folder(Path(name.source).expanduser(), model)
    cfg = _model_cfg(name, open_clip)
    return ModelInfo("open_clip", None, "init_logit_bias" in cfg, int(cfg["embed_dim"]) if "embed_dim" in cfg else None)


def _model_cfg(name: OpenClipName, open_clip: Any) -> dict:
    if name.arch is not None:
        return open_clip.get_model_config(name.arch) or {}
    if name.kind == "folder":
        config = json.loads((Path(name.source).expanduser() / "open_clip_config.json").read_text(encoding="utf-8"))
        return config.get("model_cfg", config)
    try:
        from huggingface_hub import hf_hub_download

        config = json.loads(Path(hf_hub_download(name.source, "open_clip_config.json")).read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"Could not read open_clip_config.json of hf-hub:{name.source} ({type(exc).__name__}). "
                          "Offline: download the repository (`hf download org/name --local-dir DIR`) and pass "
                          "open_clip:DIR.") from None
    return config.get("model_cfg", config)


def _check_file(path: Path, model: str) -> None:
    if not path.is_file():
        raise ConfigError(f"'{model}': weights file '{path}' does not exist.")
    if path.suffix != ".safetensors":
        raise ConfigError(f"'{model}': '{path.name}' is a pickled checkpoint, which open_clip would unpickle "
                          f"(torch.load); we load safetensors only. {_CONVERT}")


def _check_folder(folder: Path, model: str) -> None:
    if not folder.is_dir():
        raise ConfigError(f"'{model}': folder '{folder}' does not exist. It should hold open_clip_config.json and "
                          "open_clip_model.safetensors (the layout of an open_clip hub repository).")
    if not (folder / "open_clip_config.json").is_file():
        raise ConfigError(f"'{model}': folder '{folder}' has no open_clip_config.json. For a bare checkpoint file "
                          "use open_clip:ARCH/path/to/weights.safetensors.")
    if not any(folder.glob("*.safetensors")):
        raise ConfigError(f"'{model}': folder '{folder}' has no .safetensors weights (pickled .bin/.pt files are "
                          f"refused). {_CONVERT}")


def _tag_repo(cfg: dict) -> str | None:
    hub = cfg.get("hf_hub", "")
    return hub.rstrip("/").rsplit("/", 1)[0] if hub.count("/") > 1 else (hub.rstrip("/") or None)


def _check_hub_safetensors(repo: str, model: str) -> None:
    try:
        from huggingface_hub import HfApi

        files = HfApi().list_repo_files(repo)
    except Exception:  # noqa: BLE001 - offline: the executors try and report
        log.warning("could not list files of hub repository %s; assuming safetensors weights exist", repo)
        return
    if not any(f.endswith(".safetensors") for f in files):
        raise ConfigError(f"'{model}': hub repository {repo} has no .safetensors weights; we never unpickle "
                          f"weights. {_CONVERT}")


def _import():
    return require("open_clip", "open_clip models")


# -------------------------------------------------------------------------------------------------
# Executor side
# -------------------------------------------------------------------------------------------------
def _resolve(name: OpenClipName) -> tuple[str, str | None]:
    """(model_name, pretrained) arguments for open_clip, with safetensors weights guaranteed local."""
    from huggingface_hub import hf_hub_download

    if name.kind == "folder":
        _check_folder(Path(name.source).expanduser(), name.source)
        return "local-dir:" + str(Path(name.source).expanduser()), None
    if name.kind == "file":
        _check_file(Path(name.source).expanduser(), name.source)
        return name.arch, str(Path(name.source).expanduser())
    if name.kind == "tag":
        import open_clip

        repo = _tag_repo(open_clip.get_pretrained_cfg(name.arch, name.source))
        if repo is None:
            raise RuntimeError(f"{name.arch}/{name.source} has no safetensors weights; {_CONVERT}")
        _download_safetensors(repo, hf_hub_download)  # open_clip then finds this file before any pickle
        return name.arch, name.source
    path = _download_safetensors(name.source, hf_hub_download)
    if name.kind == "hub":
        hf_hub_download(name.source, "open_clip_config.json")
        return "local-dir:" + str(Path(path).parent), None  # the snapshot folder: config + this file
    return name.arch, path


def _download_safetensors(repo: str, download) -> str:
    for filename in _SAFE_NAMES:
        try:
            return download(repo, filename)
        except Exception:  # noqa: BLE001 - try the next name
            continue
    raise RuntimeError(f"hub repository {repo} has no {' / '.join(_SAFE_NAMES)}; we never unpickle weights. {_CONVERT}")


class OpenClipFamilyModel(ScoringModel):
    family = "open_clip"
    bucket_captions = False  # per model: True only for causal, EOT-pooled text towers (see __init__)
    # cpu_bf16 "cast", as every family (ScoringModel): under CPU autocast open_clip's attention leaves
    # its fused path and every op casts (1.35x fp32 against 1.90x cast, benchmarks/results/families.json).

    def __init__(self, key: ModelKey, model: Any, transform: Any, tokenizer: Any, dtype, autocast, seconds: float):
        super().__init__(key, model, dtype, autocast, seconds)
        self.transform = transform
        self._tokenizer = tokenizer
        # A causal text tower pooled at the end-of-text token (OpenAI/LAION/DataComp CLIPs) never lets the
        # padding after that token reach it, so captions may run in length buckets as CLIP's do (exact:
        # tested against all 77 positions). Towers without a causal mask (SigLIP in open_clip) run full.
        self.bucket_captions = _causal_eot_text(model) and getattr(tokenizer, "sot_token_id", None) is not None
        bias = getattr(model, "logit_bias", None)
        self._scale = float(model.logit_scale.float().exp())
        self._bias = float(bias.float()) if bias is not None else None

    @classmethod
    def load(cls, key: ModelKey) -> "OpenClipFamilyModel":
        import open_clip

        started = time.perf_counter()
        model_name, pretrained = _resolve(OpenClipName.parse(key.model))
        try:
            model, _, transform = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
            tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as exc:  # noqa: BLE001 - re-raised with what to do about it
            raise RuntimeError(f"Could not load open_clip model '{key.model}': {exc}") from exc
        model, dtype, autocast = place(model, key, cls.cpu_bf16)
        _text_sequence_first(model)
        seconds = time.perf_counter() - started
        log.info("loaded %s on %s (%s) in %.1fs", key.model, key.device, key.precision, seconds)
        record_load(key)
        return cls(key, model, transform, tokenizer, dtype, autocast, seconds)

    @property
    def has_probability(self) -> bool:
        return self._bias is not None

    def preprocessor(self, gpu_decode: bool = False) -> ImageInput:
        return TransformPreprocessor(self.transform, _image_size(self.model))

    def tokenizer(self, max_chars: int) -> Tokenizer:
        tokenize = self._tokenizer
        if not self.bucket_captions:
            return lambda captions: {"text": tokenize([c[:max_chars] for c in captions])}

        def with_lengths(captions):  # the mask only tells the encoder where padding (id 0) starts
            ids = tokenize([c[:max_chars] for c in captions])
            return {"text": ids, "attention_mask": (ids != 0).to(torch.int64)}

        return with_lengths

    @property
    def context_length(self) -> int:
        return int(getattr(self._tokenizer, "context_length", 77))

    def token_counts(self, captions, max_chars: int) -> list[int]:
        """open_clip's tokenizers always pad/cut to the context; count with their own parts, uncut."""
        tok = self._tokenizer
        texts = [c[:max_chars] for c in captions]
        if hasattr(tok, "encode") and hasattr(tok, "sot_token_id"):  # SimpleTokenizer (CLIP BPE): sot + ids + eot
            return [len(tok.encode(t)) + 2 for t in texts]
        clean = getattr(tok, "clean_fn", None) or (lambda t: t)
        return [len(ids) for ids in tok.tokenizer([clean(t) for t in texts], truncation=False)["input_ids"]]

    def logit_scale(self) -> float:
        return self._scale

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels.to(self.dtype))

    def text_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        text = inputs["text"]
        m = self.model
        if not self.bucket_captions or text.shape[1] == m.positional_embedding.shape[0]:
            return m.encode_text(text)
        # open_clip's own encode_text, on the first L positions: the same embeddings, positions and
        # causal mask cut to L (open_clip adds the whole positional table, so it cannot take fewer).
        from open_clip.transformer import text_global_pool

        length = text.shape[1]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(text).to(cast) + m.positional_embedding[:length].to(cast)
        x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
        x = text_global_pool(m.ln_final(x), text, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        if m.text_projection is not None:
            x = m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
        return x

    def probability(self, cosine: torch.Tensor) -> torch.Tensor | None:
        if self._bias is None:
            return None
        return torch.sigmoid(cosine * self._scale + self._bias)


def _text_sequence_first(model: Any) -> bool:
    """Run the text tower's stack sequence-first (LND), as open_clip did before 2.24; True if switched.

    Batch-first, each ``nn.MultiheadAttention`` transposes its input to (L, N, D) and projects it with
    a ``linear`` on the transposed view, which cannot fold to one matrix product: torch runs it as a
    batched product with the weight expanded and, in bf16, copied once per position. On a batch of 5
    captions of 51 tokens that copy was 74 % of the tower's time (bf16 ran 2.7x slower than fp32).
    Sequence-first, ``Transformer`` transposes once and every projection is one matrix product. The
    arithmetic is the same (tested equal to open_clip's batch-first tower); open_clip builds both
    layouts from the same weights. The image tower is left as built: it gained nothing so.
    """
    from open_clip.transformer import ResidualAttentionBlock, Transformer

    stack = getattr(model, "transformer", None)
    if not isinstance(stack, Transformer) or not stack.batch_first:
        return False
    blocks = list(stack.resblocks)
    if not all(isinstance(b, ResidualAttentionBlock) and isinstance(b.attn, torch.nn.MultiheadAttention)
               and not hasattr(b, "ln_1_kv") for b in blocks):
        return False
    stack.batch_first = False
    for block in blocks:
        block.attn.batch_first = False
    return True


def _causal_eot_text(model: Any) -> bool:
    """open_clip's built-in text tower (``CLIP``) with a causal mask and end-of-text pooling."""
    attn_mask = getattr(model, "attn_mask", None)
    return (all(hasattr(model, a) for a in ("transformer", "token_embedding", "positional_embedding", "ln_final"))
            and isinstance(attn_mask, torch.Tensor) and attn_mask.dim() == 2
            and getattr(model, "text_pool_type", None) in ("argmax", "eos"))


def _image_size(model: Any) -> tuple[int, int]:
    size = getattr(model.visual, "image_size", 224)
    return (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size), int(size))


class TransformPreprocessor:
    """open_clip's own validation transform, per decoded frame (as a PIL image: same pixels)."""

    def __init__(self, transform: Any, image_size: tuple[int, int]):
        self.transform = transform
        self.image_size = image_size

    def target_size(self) -> tuple[int, int]:
        return self.image_size

    def new_batch(self, n: int, pinned: bool = False) -> torch.Tensor | None:
        return None if n == 0 else torch.empty((n, 3, *self.image_size), dtype=torch.float32, pin_memory=pinned)

    def one(self, frame: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        from PIL import Image

        image = Image.fromarray(frame.cpu().permute(1, 2, 0).numpy())
        pixels = self.transform(image)
        if out is None:
            return pixels
        out.copy_(pixels)
        return out

    def finish(self, pixels: torch.Tensor, device: Any = None) -> torch.Tensor:
        if device is not None:
            pixels = pixels.to(device, non_blocking=getattr(device, "type", str(device)) == "cuda")
        return pixels
