"""An MLP for tabular data: standardized numerics concatenated with one embedding per categorical.

The architecture is described by a small JSON-able ``spec`` (stored with each model version), so a
registered model is rebuilt from data, never unpickled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from foundry.config import ModelConfig

if TYPE_CHECKING:  # only a type here: a training worker that imports this module needs no pandas (~0.3 s)
    from foundry.data.preprocessor import Preprocessor

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def embedding_dim(cardinality: int, cap: int) -> int:
    """The common fast.ai-style rule, capped: enough capacity for large vocabularies, small for small ones."""
    return max(1, min(cap, round(1.6 * cardinality**0.56)))


def model_spec(model: ModelConfig, fitted: Preprocessor) -> dict:
    return {
        "arch": model.arch,
        "numeric_width": fitted.numeric_width,
        "cardinalities": fitted.cardinalities,
        "embedding_dims": [embedding_dim(c, model.max_embedding_dim) for c in fitted.cardinalities],
        "hidden_sizes": list(model.hidden_sizes),
        "dropout": model.dropout,
        "activation": model.activation,
        "output_width": fitted.output_width,
    }


class TabularMLP(nn.Module):
    def __init__(self, numeric_width: int, cardinalities: list[int], embedding_dims: list[int],
                 hidden_sizes: list[int], dropout: float, activation: str, output_width: int, arch: str = "mlp"):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(cardinalities, embedding_dims, strict=True))
        width = numeric_width + sum(embedding_dims)
        layers: list[nn.Module] = []
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, output_width))
        self.net = nn.Sequential(*layers)

    def forward(self, x_num: torch.Tensor | None, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        parts = [] if x_num is None else [x_num]
        if x_cat is not None:
            parts += [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.net(torch.cat(parts, dim=1))


def build_model(spec: dict) -> TabularMLP:
    if spec["arch"] != "mlp":
        raise ValueError(f"unknown architecture {spec['arch']!r}")
    return TabularMLP(**spec)
