"""The wheel's package list names every package folder of the repository."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _packages(folder: str, name: str) -> set[str]:
    return {
        ".".join((name, *p.parent.relative_to(ROOT / folder).parts))
        for p in (ROOT / folder).rglob("__init__.py")
    }


def test_every_package_folder_is_in_the_wheel():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = _packages("wdist", "wdist") | _packages("apps", "wdist_apps")
    missing = sorted(found - set(tool["packages"]))
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {missing}"
