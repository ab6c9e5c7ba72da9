"""The platform's error types. Each maps to a clear, non-zero exit in the job entry points."""


class FoundryError(Exception):
    """Base class: an expected failure with a message meant for the user, not a traceback."""

    exit_code = 1


class ConfigError(FoundryError):
    """A config file or override is wrong; the message names the key."""

    exit_code = 2


class DataValidationError(FoundryError):
    """The data set breaks its schema; ``report`` holds every problem found, by column."""

    exit_code = 3

    def __init__(self, report):
        self.report = report
        super().__init__(report.format())


class DataSourceError(FoundryError):
    """The configured data cannot be read at all (missing, truncated or not the declared format)."""

    exit_code = 3


class DriftSetupError(FoundryError):
    """A model cannot be watched (its drift detectors cannot be built): it is not registered or served."""

    exit_code = 1


class RegistryError(FoundryError):
    """A model, version or alias does not exist, or the registry is inconsistent."""

    exit_code = 4


class AliasConflictError(RegistryError):
    """A compare-and-set alias move found the alias moved by another writer since it was read."""


class TamperedArtifactError(RegistryError):
    """A stored file does not match the checksum recorded when its version was registered."""
