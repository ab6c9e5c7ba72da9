"""The ``model`` section (``conf/model/``): the network's architecture."""

from __future__ import annotations

from dataclasses import dataclass, field

from foundry.config.common import require


@dataclass
class ModelConfig:
    arch: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.1
    activation: str = "relu"
    max_embedding_dim: int = 16

    def validate(self) -> None:
        require(self.arch == "mlp", "model.arch", f"unknown architecture {self.arch!r} (known: mlp)")
        require(len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes), "model.hidden_sizes",
                f"needs one or more positive sizes, got {list(self.hidden_sizes)}")
        require(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.activation in ("relu", "gelu", "silu"), "model.activation",
                f"unknown activation {self.activation!r} (known: relu, gelu, silu)")
        require(self.max_embedding_dim >= 1, "model.max_embedding_dim", "must be >= 1")
