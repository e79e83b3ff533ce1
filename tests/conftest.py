"""Fixtures every test level shares: the real data, a local stack, a trained model, fresh topics."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rigwatch.config import Settings
from rigwatch.data import load_csv
from rigwatch.harness import Process, ProcessHarness
from rigwatch.kafka import create_rig_topics
from rigwatch.model import train
from rigwatch.stack import Endpoints, stack_down, stack_up

REPO = Path(__file__).resolve().parents[1]
HYDRAULIC = REPO.parent / "shared" / "data" / "hydraulic"


@pytest.fixture(scope="session")
def hydraulic_dir() -> Path:
    """``../shared/data/hydraulic``; tests that need the real data skip when it is absent."""
    if not (HYDRAULIC / "hydraulic_cycles.csv").exists():
        pytest.skip(f"real data absent at {HYDRAULIC}: tests that need it are skipped")
    return HYDRAULIC


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """A broker and Redis: the configured ones, else a local stack of this session's own."""
    configured = Settings()
    if configured.bootstrap and configured.redis_url:
        yield Endpoints(configured.bootstrap, configured.redis_url)
        return
    settings = Settings(run_dir=tmp_path_factory.mktemp("stack"), bootstrap=None, redis_url=None)
    try:
        yield stack_up(settings, partitions=4)
    finally:
        stack_down(settings)


@pytest.fixture(scope="session")
def real_dataset(hydraulic_dir: Path):
    """The per-cycle CSV of the shared data, loaded once."""
    return load_csv(hydraulic_dir / "hydraulic_cycles.csv")


@pytest.fixture(scope="session")
def real_model(real_dataset):
    """A model package trained once on the real data (seed 42).

    One thread: the trees are the same as with two (measured), and a unit test
    run beside busy integration tests would otherwise stall in OpenMP spin-waits.
    """
    return train(real_dataset, seed=42, num_threads=1)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, real_model) -> Path:
    """The real-data model package, written once per session."""
    out = tmp_path_factory.mktemp("model")
    real_model.write(out)
    return out


@pytest.fixture
def settings(stack: Endpoints, model_dir: Path, tmp_path: Path) -> Settings:
    """Settings with a uuid topic prefix: no test sees another's records."""
    result = Settings(
        bootstrap=stack.bootstrap,
        redis_url=stack.redis_url,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        model_dir=model_dir,
        model_store=tmp_path / "store",
        run_dir=tmp_path / "run",
    )
    create_rig_topics(stack.bootstrap, result.topics, partitions=4)
    return result


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[list[str], dict[str, str]], Process]]:
    """Start ``python -m rigwatch ARGS`` processes (logs ``<tmp_path>/<command>-<n>.log``).

    At the end every one still running gets SIGTERM and must exit 0 within 30 s. The test
    fails if any did not, or exited uncleanly on its own during the test; a SIGKILL the
    test sent on purpose (``proc.kill()`` or ``proc.send_signal(signal.SIGKILL)``) is allowed.
    """
    children = ProcessHarness(tmp_path)

    def start(args: list[str], env: dict[str, str]) -> Process:
        return children.start(args, env)

    yield start
    children.stop_all()
    failures = children.failures()
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
