"""Operator commands that read or tidy a running platform: ``status`` (everything at a glance), ``events`` (a
model's self-healing history) and ``maintenance`` (compaction and retention where no monitor runs)."""
