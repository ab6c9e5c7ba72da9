"""Model architectures. ``build_model`` is the one place that maps config + preprocessor to a network."""

from foundry.models.mlp import TabularMLP, build_model, model_spec

__all__ = ["TabularMLP", "build_model", "model_spec"]
