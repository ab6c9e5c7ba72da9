"""Model registry: immutable, checksummed versions and atomically moved aliases on any pyarrow filesystem.

See ``store`` for the layout and the guarantees; ``python -m foundry.registry --help`` for the CLI.
"""

from foundry.errors import RegistryError, TamperedArtifactError
from foundry.registry.model_version import MANIFEST, ModelVersion
from foundry.registry.names import LATEST, check_alias, check_model, check_version, is_version_id
from foundry.registry.store import Registry, default_cache_dir

__all__ = [
    "LATEST",
    "MANIFEST",
    "ModelVersion",
    "Registry",
    "RegistryError",
    "TamperedArtifactError",
    "check_alias",
    "check_model",
    "check_version",
    "default_cache_dir",
    "is_version_id",
]
