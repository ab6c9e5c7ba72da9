"""Data: schema validation, deterministic splits, the shared preprocessor, and the Ray Data pipeline."""
