"""The ``model`` section (``conf/model/``): the network's architecture."""

from __future__ import annotations

from dataclasses import dataclass, field

from foundry.config.common import bounded, check_bounds, require


@dataclass
class ModelConfig:
    arch: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = bounded(0.1, ge=0, lt=1)
    activation: str = "relu"
    max_embedding_dim: int = bounded(16, ge=1)

    def validate(self) -> None:
        check_bounds(self, "model")
        require(self.arch == "mlp", "model.arch", f"unknown architecture {self.arch!r} (known: mlp)")
        require(len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes), "model.hidden_sizes",
                f"needs one or more positive sizes, got {list(self.hidden_sizes)}")
        require(self.activation in ("relu", "gelu", "silu"), "model.activation",
                f"unknown activation {self.activation!r} (known: relu, gelu, silu)")
