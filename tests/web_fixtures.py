"""Fixtures for the web tests, loaded with ``pytest_plugins = ["web_fixtures"]`` (not a conftest).

The helpers they use live in web_helpers.py, which the test modules import directly.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_helpers import (
    FakePrinter,
    Harness,
    WriteWatch,
    close_harness,
    jpeg_of,
    make_harness,
    studio_camera,
    three_preview_frames,
)

from appliance.config import Config


@pytest.fixture(scope="session")
def web_pipeline(inference: Any, config: Config) -> Any:
    from appliance.idphoto.pipeline import IdPhotoPipeline

    return IdPhotoPipeline(inference, config)


@pytest.fixture
def web(config: Config, tmp_path: Path) -> Iterator[Harness]:
    """An app with staff users, a fake printer and no pipeline (access tests)."""
    harness = make_harness(config, tmp_path, printer=FakePrinter())
    harness.staff()
    yield harness
    close_harness(harness)


@pytest.fixture
def studio(
    config: Config, tmp_path: Path, web_pipeline: Any, sample_dir: Path
) -> Iterator[Harness]:
    """An app with the real pipeline, a fake camera (astronaut JPEG) and a fake printer."""
    camera = studio_camera(jpeg_of(sample_dir / "astronaut.png"))
    harness = make_harness(
        config,
        tmp_path,
        pipeline=web_pipeline,
        camera=camera,
        printer=FakePrinter(),
        preview=three_preview_frames(camera),
    )
    harness.staff()
    yield harness
    close_harness(harness)


_WATCH = WriteWatch()
_installed = False


@pytest.fixture
def write_watch() -> Iterator[WriteWatch]:
    global _installed
    if not _installed:
        sys.addaudithook(_WATCH.hook)
        _installed = True
    _WATCH.events.clear()
    _WATCH.thread = threading.get_ident()
    yield _WATCH
    _WATCH.thread = None
