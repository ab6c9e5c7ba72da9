"""What every section's checks share: one error that names the key, and the name rules used in more than
one section."""

from __future__ import annotations

import re

from foundry.errors import ConfigError

# A Ray object name (a Serve application, a monitor actor's prefix).
SERVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def require(ok: bool, key: str, message: str) -> None:
    """Raise ``ConfigError("<key>: <message>")`` unless ``ok``: every check names the key it is about."""
    if not ok:
        raise ConfigError(f"{key}: {message}")
