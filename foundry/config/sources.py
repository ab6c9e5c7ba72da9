"""Where a command's configuration comes from: one way, the same for every entry point.

Sources, combined in this order:

1. **config folders**: the bundled ``conf/`` (shipped in the wheel as the ``foundry_conf`` package, so
   ``pkg://foundry_conf`` works too) plus, with ``--config-dir DIR``, a user's own folder. Its files add
   to the bundled ones (``DIR/data/loans.yaml`` makes ``data=loans`` available). When ``DIR`` holds the
   primary config (``--config-name``, default ``config``) it is the primary folder and its files win;
   otherwise the bundled files win and a clash is reported.
2. **a registered version** (``--from-version MODEL[@REF]``, REF an alias or version id, default
   ``production``) *instead of* the folders: the ``config.yaml`` stored with that version, data schema
   included. This is how the cluster rebuilds a model (retrains, monitors, Serve deploys) without the
   user's config folder, which is needed once, at the first training.
3. **overrides**: Hydra's ``key=value`` (``+key=value`` adds, ``~key`` deletes) and config groups
   (``trainer=gpu``, ``+experiment=quick``). On top of a stored version a group's values replace the
   stored ones, as they would on the folders.

Every failure is a ``ConfigError`` (exit code 2) that names the key, file or version. Composition
never creates a Hydra run directory: nothing appears in the working directory.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from foundry.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_NAME = "config"
DEFAULT_REF = "production"
STORED_CONFIG_FILE = "config.yaml"  # written with every version by foundry/train/workflow.py

HELP = {
    "config_dir": "a folder of your own Hydra configs (e.g. DIR/data/mydata.yaml for data=mydata), searched "
                  "together with the bundled conf/",
    "config_name": f"the primary config's name (default: {DEFAULT_CONFIG_NAME})",
    "from_version": "start from the config stored with a registered version, MODEL or MODEL@REF (alias or "
                    f"version id; default @{DEFAULT_REF}), instead of composing the config folders",
    "overrides": "Hydra overrides: key=value, +key=value, ~key, group=option",
}
EPILOG = ("config: --config-dir DIR [--config-name NAME] composes your folder with the bundled conf/; "
          "--from-version MODEL[@REF] starts from a registered version's own config; key=value overrides apply "
          "on top. Exit codes: 0 done, 2 bad configuration, 3 bad data, 4 registry problem, 5 Serve failed, "
          "1 anything else.")


def bundled_conf_dir() -> Path:
    """The bundled ``conf/``: the source tree's folder in a checkout or an editable install, else the
    ``foundry_conf`` package that a wheel installs (the same files)."""
    source = Path(__file__).resolve().parents[2] / "conf"  # foundry/config/sources.py -> the checkout
    if (source / f"{DEFAULT_CONFIG_NAME}.yaml").is_file():
        return source
    import importlib.util

    spec = importlib.util.find_spec("foundry_conf")  # found, not imported: it holds YAML only
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / f"{DEFAULT_CONFIG_NAME}.yaml").is_file():
            return Path(location)
    raise ConfigError("the bundled configuration is missing: neither conf/ next to the foundry package nor "
                      "the foundry_conf package is installed (reinstall foundry)")


@dataclass(frozen=True)
class ConfigSources:
    """What a command was told about its configuration (see the module doc)."""

    overrides: tuple[str, ...] = ()
    config_dir: str | None = None
    config_name: str = DEFAULT_CONFIG_NAME
    from_version: str | None = None


def add_arguments(parser: argparse.ArgumentParser, overrides: bool = True) -> argparse.ArgumentParser:
    """The config options every command takes, with one help text."""
    group = parser.add_argument_group("configuration")
    group.add_argument("--config-dir", metavar="DIR", help=HELP["config_dir"])
    group.add_argument("--config-name", metavar="NAME", default=DEFAULT_CONFIG_NAME, help=HELP["config_name"])
    group.add_argument("--from-version", metavar="MODEL[@REF]", help=HELP["from_version"])
    if overrides:
        parser.add_argument("overrides", nargs="*", metavar="key=value", help=HELP["overrides"])
    return parser


def from_args(args: argparse.Namespace, overrides: list[str] | None = None) -> ConfigSources:
    return ConfigSources(tuple(args.overrides if overrides is None else overrides), args.config_dir,
                         args.config_name, args.from_version)


def parser(prog: str, description: str, overrides: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the config options and the shared epilog (exit codes)."""
    return add_arguments(argparse.ArgumentParser(prog=prog, description=description, epilog=EPILOG), overrides)


def parse_ref(from_version: str) -> tuple[str, str]:
    model, _, ref = from_version.partition("@")
    if not model:
        raise ConfigError(f"--from-version: expected MODEL or MODEL@REF, got {from_version!r}")
    return model, ref or DEFAULT_REF


def compose(sources: ConfigSources) -> DictConfig:
    """The composed (unresolved) config of ``sources``; raises ConfigError naming what is wrong."""
    if sources.from_version:
        return _compose_from_version(sources)
    return _compose_folders(sources.config_dir, sources.config_name, list(sources.overrides))


def load(sources: ConfigSources):
    """The typed, validated config of ``sources`` (``foundry.config.FoundryConfig``)."""
    from foundry import config

    return config.to_typed(compose(sources))


def _describe(exc: BaseException) -> str:
    from foundry.config import _describe as describe

    return describe(exc)


def _user_dir(config_dir: str) -> Path:
    path = Path(config_dir).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"--config-dir: {config_dir} is not a folder")
    return path


def _compose_folders(config_dir: str | None, config_name: str, overrides: list[str]) -> DictConfig:
    bundled = bundled_conf_dir()
    primary, extra = bundled, []
    if config_dir:
        user = _user_dir(config_dir)
        if (user / f"{config_name}.yaml").is_file():
            primary, extra = user, [str(bundled)]  # the user's primary config: their files win
        else:
            extra = [str(user)]
            _warn_shadowed(user, bundled)
    return _compose(primary, config_name, extra, overrides)


def _compose(primary: Path, config_name: str, search: list[str], overrides: list[str]) -> DictConfig:
    """Hydra's compose API: no run directory, no logging set-up, errors as ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from foundry.config.root import register_schema

    register_schema()  # stored at the first compose (once per process), not at import: the schema needs no Hydra
    searchpath = [f"hydra.searchpath=[{','.join(f'file://{p}' for p in search)}]"] if search else []
    try:
        with initialize_config_dir(config_dir=str(primary), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=[*searchpath, *overrides])
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(_describe(exc)) from exc


def _warn_shadowed(user: Path, bundled: Path) -> None:
    for path in sorted(user.rglob("*.yaml")):
        rel = path.relative_to(user)
        if (bundled / rel).is_file():
            log.warning("--config-dir: %s has the same name as a bundled config and is shadowed by it; "
                        "give it another name (or put a primary config.yaml in %s)", rel, user)


def _storage_root(sources: ConfigSources) -> str:
    """The storage root that holds the registry: from a storage.* override, else the folders' default."""
    storage_overrides = [o for o in sources.overrides if o.lstrip("+~").startswith("storage.")]
    cfg = _compose_folders(sources.config_dir, sources.config_name, storage_overrides)
    return str(OmegaConf.select(cfg, "storage.root"))


def read_stored_config(storage_root: str, model: str, ref: str) -> tuple[str, str]:
    """(version id, config.yaml text) of a registered version, checked against its manifest."""
    from foundry import storage
    from foundry.errors import RegistryError
    from foundry.storage.layout import StorageLayout

    registry = StorageLayout(storage_root).open_registry()
    try:
        mv = registry.get(model, ref)
    except RegistryError as exc:
        raise ConfigError(f"--from-version {model}@{ref}: {exc}") from exc
    entry = mv.files.get(STORED_CONFIG_FILE)
    if entry is None:
        raise ConfigError(f"--from-version {model}@{ref}: version {mv.version} has no stored {STORED_CONFIG_FILE}")
    fs, path = storage.resolve(storage.join(mv.uri, STORED_CONFIG_FILE))
    data = storage.read_bytes(fs, path)
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise ConfigError(f"--from-version {model}@{ref}: {STORED_CONFIG_FILE} of {mv.version} does not match "
                          "the checksum in its manifest")
    return mv.version, data.decode()


def version_config(storage_root: str, model: str, ref: str):
    """The typed config stored with a version (None for a version registered without one)."""
    from foundry import config

    try:
        _, text = read_stored_config(storage_root, model, ref)
    except ConfigError as exc:
        if "has no stored" in str(exc):
            return None
        raise
    return config.from_container(OmegaConf.to_container(OmegaConf.create(text)))


def _bundled_groups() -> list[str]:
    """The config groups the bundled primary config selects (data, model, trainer, ...), in its order."""
    import yaml

    primary = yaml.safe_load((bundled_conf_dir() / f"{DEFAULT_CONFIG_NAME}.yaml").read_text())
    return [next(iter(d)) for d in primary.get("defaults", []) if isinstance(d, dict)]


def _compose_from_version(sources: ConfigSources) -> DictConfig:
    """Hydra composes the stored config as a primary config whose defaults list names every group
    *after* ``_self_``, each empty: ``trainer=gpu`` or ``+experiment=quick`` on top of a stored version
    mean what they mean on the folders (the group's values win), and key overrides apply last."""
    import tempfile

    import yaml

    model, ref = parse_ref(sources.from_version)
    version, text = read_stored_config(_storage_root(sources), model, ref)
    stored = yaml.safe_load(text) or {}
    stored.pop("defaults", None)
    primary = {"defaults": ["foundry_schema", "_self_", *({g: None} for g in _bundled_groups())], **stored}
    search = [str(bundled_conf_dir())] + ([str(_user_dir(sources.config_dir))] if sources.config_dir else [])
    with tempfile.TemporaryDirectory(prefix="foundry-version-config-") as tmp:
        (Path(tmp) / "stored_version.yaml").write_text(yaml.safe_dump(primary, sort_keys=False))
        try:
            cfg = _compose(Path(tmp), "stored_version", search, list(sources.overrides))
        except ConfigError as exc:
            raise ConfigError(f"--from-version {model}@{ref} (version {version}): {exc}") from exc
    log.info("configuration from %s %s (stored with the version)", model, version)
    return cfg


__all__ = ["ConfigSources", "add_arguments", "bundled_conf_dir", "compose", "from_args", "load", "parse_ref",
           "parser", "read_stored_config"]
