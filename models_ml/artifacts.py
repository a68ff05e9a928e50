"""What every model artifact loader raises when the file is not the one the registry recorded."""


class ArtifactIntegrityError(Exception):
    """The artifact on disk is not the one the registry recorded (hash, format or content)."""
