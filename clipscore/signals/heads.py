"""Heads: small MLPs over the unit image embedding, loaded from ``.safetensors`` (never unpickled).

The layout is LAION's aesthetic predictor v2 (``improved-aesthetic-predictor``): Linear layers under
``layers.<i>.weight``/``.bias``, applied in index order; the indices between them were dropout
(identity at inference) and there are no activations. Its ``.pth`` converts with one line (docs/curation.md).
Optional string metadata in the file's header: ``clipscore.activation`` (``none`` | ``relu`` | ``gelu``,
between Linear layers; default none), ``clipscore.output`` (``identity`` | ``sigmoid``; default
identity). ``clipscore probe`` writes a one-layer head with ``sigmoid`` output and its validation AUC.
The input is the primary model's L2-normalised image embedding, as LAION's predictor takes it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from clipscore.config.coerce import ConfigError

_LAYER = re.compile(r"^layers\.(\d+)\.(weight|bias)$")
ACTIVATIONS = {"none": None, "relu": torch.relu, "gelu": torch.nn.functional.gelu}
OUTPUTS = {"identity": None, "sigmoid": torch.sigmoid}


def head_column(name: str) -> str:
    return f"head_{name}"


@dataclass(frozen=True)
class HeadInfo:
    path: str
    input_dim: int
    layers: int
    metadata: dict


def inspect_head(path: str) -> HeadInfo:
    """Read the header only: layer shapes and metadata, checked; a ConfigError says what is wrong."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            keys = list(handle.keys())
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in keys}
            metadata = dict(handle.metadata() or {})
    except FileNotFoundError:
        raise ConfigError(f"Head file {path} does not exist; give the path of a .safetensors head.") from None
    except Exception as exc:  # noqa: BLE001 - not a safetensors file at all
        raise ConfigError(f"Head file {path} is not a readable .safetensors file ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); convert the head once (docs/curation.md).") from None
    indices = sorted({int(m.group(1)) for k in keys if (m := _LAYER.match(k))})
    if not indices or any(f"layers.{i}.weight" not in shapes for i in indices):
        raise ConfigError(f"Head file {path} holds no layers.<i>.weight tensors (keys: {', '.join(keys[:8])}); "
                          "expected LAION's aesthetic-predictor layout (layers.0/2/4/6/7.weight and .bias).")
    dims = [shapes[f"layers.{i}.weight"] for i in indices]
    if any(len(d) != 2 for d in dims) or any(a[0] != b[1] for a, b in zip(dims, dims[1:])) or dims[-1][0] != 1:
        raise ConfigError(f"Head file {path}: its Linear layers {dims} do not chain to one output.")
    if metadata.get("clipscore.activation", "none") not in ACTIVATIONS or \
            metadata.get("clipscore.output", "identity") not in OUTPUTS:
        raise ConfigError(f"Head file {path}: metadata clipscore.activation must be one of {', '.join(ACTIVATIONS)} and "
                          f"clipscore.output one of {', '.join(OUTPUTS)}; got {metadata}.")
    return HeadInfo(path, dims[0][1], len(dims), metadata)


def check_head(name: str, path: str, embedding_dim: int | None, model: str) -> HeadInfo:
    """The driver's check: the file is a head and takes ``embedding_dim`` inputs."""
    info = inspect_head(path)
    if embedding_dim is not None and info.input_dim != embedding_dim:
        raise ConfigError(f"Head '{name}' ({path}) takes {info.input_dim}-d embeddings, but the primary model {model} "
                          f"gives {embedding_dim}-d ones; use a head trained on this model's embeddings "
                          "(clipscore probe trains one).")
    return info


class Head(torch.nn.Module):
    """The MLP of a head file: its Linear layers in index order, activation between, output function last."""

    def __init__(self, path: str):
        super().__init__()
        from safetensors.torch import load_file

        info = inspect_head(path)
        tensors = load_file(path)
        indices = sorted({int(m.group(1)) for k in tensors if (m := _LAYER.match(k))})
        self.linears = torch.nn.ModuleList()
        for i in indices:
            weight = tensors[f"layers.{i}.weight"].float()
            layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=f"layers.{i}.bias" in tensors)
            with torch.no_grad():
                layer.weight.copy_(weight)
                if layer.bias is not None:
                    layer.bias.copy_(tensors[f"layers.{i}.bias"].float())
            self.linears.append(layer)
        self.activation = ACTIVATIONS[info.metadata.get("clipscore.activation", "none")]
        self.output = OUTPUTS[info.metadata.get("clipscore.output", "identity")]
        self.input_dim = info.input_dim
        self.eval()

    @torch.inference_mode()
    def forward(self, unit_embeddings: torch.Tensor) -> torch.Tensor:  # [m, D] -> [m]
        x = unit_embeddings.float().cpu()
        for i, layer in enumerate(self.linears):
            x = layer(x)
            if self.activation is not None and i < len(self.linears) - 1:
                x = self.activation(x)
        x = x[:, 0]
        return self.output(x) if self.output is not None else x


def save_head(path: str, weight: Any, bias: Any, metadata: dict[str, str]) -> None:
    """A one-layer head (a linear probe: ``weight`` [D], ``bias`` scalar) with a sigmoid output."""
    from safetensors.torch import save_file

    w = torch.as_tensor(weight, dtype=torch.float32).reshape(1, -1).contiguous()
    b = torch.as_tensor([float(bias)], dtype=torch.float32)
    save_file({"layers.0.weight": w, "layers.0.bias": b}, path,
              metadata={"clipscore.output": "sigmoid", "clipscore.activation": "none", **metadata})
