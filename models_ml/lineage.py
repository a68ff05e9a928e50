"""What a model version records of the software that built it: the code version (git commit)
and the versions of the libraries that train and serve it. Registration writes both on the
record; a gate record names the code version it was judged under, so that promotion re-runs the
gates when the code changed since (``models_ml.gate_evaluation``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from django.conf import settings

LIBRARIES = ("numpy", "scikit-learn", "torch", "opacus", "shap", "skops", "django")


def code_version() -> str:
    """The git commit of the running code when it runs from a checkout, else the package
    version (read from the files: no subprocess on the serving path)."""
    git = Path(settings.BASE_DIR) / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:40]
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()[:40]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0][:40]
    except OSError:
        pass
    return f"clinaiops-{version('clinaiops')}"


def library_versions() -> dict[str, str]:
    """The versions of the libraries that train and serve a model, for its record."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
