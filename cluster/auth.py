"""The cluster's auth token: create it once, keep it private.

The token is the only thing between the network and arbitrary code execution on the cluster
(anyone holding it can submit jobs), yet Ray writes ``~/.ray/auth_token`` world-readable (0644).
So ``up`` makes sure it exists and that only its owner can read it, before the head starts.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from pathlib import Path

from cluster.local import head_env, ray_executable
from foundry.config import ClusterConfig
from foundry.errors import FoundryError
from foundry.runtime import connection

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_token(cfg: ClusterConfig) -> Path | None:
    """Create the token if there is none and tighten its permissions; the path, or None if env-only.

    A token given in ``RAY_AUTH_TOKEN`` lives in no file, so there is nothing to create or protect.
    """
    if os.environ.get(connection.TOKEN_ENV, "").strip():
        return None
    env = head_env(cfg)
    path = connection.token_path(cfg)
    default = path == Path(os.path.expanduser(connection.DEFAULT_TOKEN_PATH)).resolve()
    # The directory first: once it is 0700 nobody else can reach the file, even in the moment
    # between Ray writing it 0644 and the chmod below. Only a directory that holds nothing but the
    # token is ours to lock down (~/.ray, or one created here), never e.g. /tmp.
    created_dir = not path.parent.exists()
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if default or created_dir:
        _chmod_if_owned(path.parent, DIR_MODE)
    if not path.exists():
        if default:
            _generate_with_ray(env)
        else:
            _generate_at(path)
    if not path.exists():
        raise FoundryError(f"`ray get-auth-token --generate` did not create {path}")
    _chmod_if_owned(path, FILE_MODE)
    return path


def _generate_with_ray(env: dict[str, str]) -> None:
    """Let Ray create its default token, so its format is whatever this Ray version expects."""
    env = {k: v for k, v in env.items() if k != connection.TOKEN_PATH_ENV}
    proc = subprocess.run(
        [ray_executable(), "get-auth-token", "--generate"],
        env=env, stdout=subprocess.DEVNULL,  # it prints the token itself: keep it off the terminal and logs
        stderr=subprocess.PIPE, text=True, timeout=120,
    )
    if proc.returncode != 0:
        raise FoundryError(f"`ray get-auth-token --generate` failed: {proc.stderr.strip()[-2000:]}")


def _generate_at(path: Path) -> None:
    """Ray only generates at ~/.ray/auth_token; for another path write a token of the same kind.

    ``O_EXCL`` with mode 0600 means the file is never readable by others, not even briefly, and two
    concurrent ``up`` calls cannot both write one.
    """
    token = secrets.token_hex(32)  # what ray._private.authentication.authentication_token_generator does
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(token)


def _chmod_if_owned(path: Path, mode: int) -> None:
    """Tighten only what this user owns: chmod on someone else's file fails anyway, and a token
    another user manages is theirs to protect."""
    st = path.stat()
    if st.st_uid != os.getuid():
        return
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def describe_mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))
