"""Shared fixtures: the real dataset suite and an isolated feature cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the test suite may reach a network or write outside tmp dirs.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("MNMS_DATA_DIR"):
    # .ci/run passes a relative path; subprocesses of tests may run from another cwd.
    os.environ["MNMS_DATA_DIR"] = str(Path(os.environ["MNMS_DATA_DIR"]).resolve())


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real datasets, located through MNMS_DATA_DIR (set by .ci/run)."""
    value = os.environ.get("MNMS_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.fail(
            f"MNMS_DATA_DIR={value!r} is not a directory; point it at the dataset suite, "
            "e.g. `export MNMS_DATA_DIR=$(realpath ../shared/datasets)`"
        )
    return Path(value)


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature cache shared by the whole session so real encoders run once per split."""
    return tmp_path_factory.mktemp("feature-cache")
