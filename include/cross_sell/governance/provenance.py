"""Where a model came from: the code and library versions recorded in every manifest."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .. import __version__

LIBRARIES = ("scikit-learn", "skl2onnx", "onnxruntime", "pandas", "numpy", "joblib", "pyarrow",
             "great-expectations", "model-signing", "fairlearn", "lightgbm", "catboost", "onnxmltools")


def library_versions() -> dict:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def code_version() -> str:
    """Package version, plus the git commit when running from a checkout (CROSS_SELL_CODE_VERSION wins)."""
    if os.environ.get("CROSS_SELL_CODE_VERSION"):
        return os.environ["CROSS_SELL_CODE_VERSION"]
    try:
        commit = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+g{commit}" if commit else __version__
