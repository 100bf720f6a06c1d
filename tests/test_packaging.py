"""pyproject.toml declares what the code needs; the requirements files pin exactly that, nothing else.

requirements.txt pins every dependency (core and every extra) at a version its range admits; the two
image subsets are the core plus one extra each, with the same pins.
"""

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared(*groups: str) -> dict[str, Requirement]:
    requirements = list(PROJECT["dependencies"])
    for group in groups:
        requirements += PROJECT["optional-dependencies"][group]
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in requirements}


def pins(name: str) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", (ROOT / name).read_text(), re.M)
    return {canonicalize_name(package): version for package, version in found}


def test_requirements_txt_pins_every_declared_dependency_within_its_range():
    everything, pinned = declared("serving", "airflow", "dev"), pins("requirements.txt")
    assert set(pinned) == set(everything), (set(pinned) ^ set(everything))
    outside = {name: (pinned[name], str(req.specifier)) for name, req in everything.items()
               if not req.specifier.contains(pinned[name], prereleases=True)}
    assert not outside, outside


def test_image_requirements_are_the_core_plus_their_extra_at_the_same_pins():
    main = pins("requirements.txt")
    serving, airflow = pins("requirements-serving.txt"), pins("requirements-airflow.txt")
    assert set(serving) == set(declared("serving"))
    assert set(airflow) == set(declared("airflow")) - {"apache-airflow"}  # the image brings Airflow itself
    assert all(main[name] == version for name, version in {**serving, **airflow}.items())
    assert not {"scikit-learn", "joblib", "skl2onnx"} & set(serving)  # the service never unpickles


def test_the_mlflow_client_is_the_training_sides_only():
    """Issue #26: mlflow-skinny where training runs, never in the serving image; the server in its own venv."""
    assert "mlflow-skinny==" in (ROOT / "requirements-airflow.txt").read_text()
    assert "mlflow" not in (ROOT / "requirements-serving.txt").read_text().lower()
    assert "mlflow==" in (ROOT / "requirements-mlflow-server.txt").read_text()
