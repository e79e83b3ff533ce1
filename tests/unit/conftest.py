"""Fixtures for unit tests that read the shared hydraulic data set."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data/hydraulic`` next to the repository, or skip the test."""
    path = REPO_ROOT.parent / "shared" / "data" / "hydraulic"
    if not (path / "hydraulic_cycles.csv").is_file():
        pytest.skip(f"{path} absent: tests that need the real data are skipped")
    return path


@pytest.fixture(scope="session")
def real_dataset(shared_data: Path):
    """The per-cycle CSV of the shared data, loaded once."""
    from rigwatch.data import load_csv

    return load_csv(shared_data / "hydraulic_cycles.csv")


@pytest.fixture(scope="session")
def real_model(real_dataset):
    """A model package trained once on the real data (seed 42).

    One thread: the trees are the same as with two (measured), and a unit test
    run beside busy integration tests would otherwise stall in OpenMP spin-waits.
    """
    from rigwatch.model import train

    return train(real_dataset, seed=42, num_threads=1)
