"""Hot folder: complete files only, plaintext gone at once, junk refused without its name."""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from appliance.devices.config import HotFolderConfig
from appliance.inputs.hotfolder import (
    HotFolder,
    HotFolderNotInRamError,
    image_kind,
    open_for_writing,
)
from appliance.session.hardening import filesystem_of

SHM = Path("/dev/shm")


def _jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 120, 90)).save(out, format="JPEG", quality=90)
    return out.getvalue()


class Recorder:
    def __init__(self) -> None:
        self.delivered: list[bytes] = []
        self.refused: list[tuple[str, int]] = []
        self.event = threading.Event()

    def deliver(self, data: bytes) -> None:
        self.delivered.append(data)
        self.event.set()

    def on_refused(self, reason: str, size: int) -> None:
        self.refused.append((reason, size))
        self.event.set()


@pytest.fixture
def folder() -> Iterator[Path]:
    if not SHM.is_dir():
        pytest.skip("/dev/shm (tmpfs) is not available on this machine")
    path = Path(tempfile.mkdtemp(prefix="hotfolder-test-", dir=SHM))
    yield path / "in"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _hotfolder(
    folder: Path, recorder: Recorder, *, max_bytes: int = 5 << 20, check_writers: bool = False
) -> HotFolder:
    return HotFolder(
        folder,
        recorder.deliver,
        recorder.on_refused,
        max_bytes=max_bytes,
        check_writers=check_writers,
    )


def test_complete_file_is_delivered_and_removed(folder: Path, recorder: Recorder) -> None:
    hot = _hotfolder(folder, recorder)
    data = _jpeg()
    (folder / "IMG_0001.JPG").write_bytes(data)
    first = hot.poll()
    assert first.delivered == 0 and first.waiting == 1  # seen once: not known to be complete
    assert hot.poll().delivered == 1
    assert recorder.delivered == [data]
    assert list(folder.iterdir()) == []
    assert recorder.refused == []


def test_partial_write_waits_until_stable(folder: Path, recorder: Recorder) -> None:
    hot = _hotfolder(folder, recorder)
    data = _jpeg((320, 240))
    half = len(data) // 2
    path = folder / "upload.jpg"
    with path.open("wb") as stream:
        stream.write(data[:half])
        stream.flush()
        assert hot.poll().waiting == 1
        assert recorder.delivered == []
        stream.write(data[half:])
    assert hot.poll().delivered == 0  # grown since the last poll: look again
    assert recorder.delivered == []
    assert hot.poll().delivered == 1
    assert recorder.delivered == [data]
    assert not path.exists()


def test_file_held_open_for_writing_waits(folder: Path, recorder: Recorder) -> None:
    hot = _hotfolder(folder, recorder, check_writers=True)
    data = _jpeg()
    path = folder / "slow.jpg"
    with path.open("wb") as stream:
        stream.write(data[:100])
        stream.flush()
        assert open_for_writing(path)
        for _ in range(3):  # size and mtime are stable, but the writer is still there
            assert hot.poll().delivered == 0
        stream.write(data[100:])
    assert not open_for_writing(path)
    hot.poll()
    assert hot.poll().delivered == 1
    assert recorder.delivered == [data]


def test_not_an_image_is_deleted_and_reported_without_its_name(
    folder: Path, recorder: Recorder
) -> None:
    hot = _hotfolder(folder, recorder)
    name = "passport-of-jane-doe.jpg"
    payload = b"#!/bin/sh\necho this is not a photo\n"
    (folder / name).write_bytes(payload)
    hot.poll()
    result = hot.poll()
    assert result.refused == 1 and result.delivered == 0
    assert recorder.delivered == []
    assert list(folder.iterdir()) == []
    [(reason, size)] = recorder.refused
    assert size == len(payload)
    assert "not an image" in reason
    assert "jane" not in reason and name not in reason


def test_oversized_file_is_deleted_unread(folder: Path, recorder: Recorder) -> None:
    hot = _hotfolder(folder, recorder, max_bytes=10_000)
    big = _jpeg()[:4] + b"\x00" * 20_000
    (folder / "huge.jpg").write_bytes(big)
    assert hot.poll().refused == 1  # refused at first sight: no point waiting for the rest
    assert list(folder.iterdir()) == []
    assert recorder.refused == [("larger than 10000 bytes", len(big))]
    assert recorder.delivered == []


def test_failed_delivery_still_removes_the_plaintext(folder: Path) -> None:
    refused: list[tuple[str, int]] = []

    def deliver(data: bytes) -> None:
        raise RuntimeError("no session is waiting for a photo")

    hot = HotFolder(
        folder, deliver, lambda r, s: refused.append((r, s)), max_bytes=1 << 20, check_writers=False
    )
    data = _jpeg()
    (folder / "a.jpg").write_bytes(data)
    hot.poll()
    hot.poll()
    assert list(folder.iterdir()) == []
    assert refused == [("delivery failed (RuntimeError)", len(data))]


def test_symlink_refused_and_its_target_untouched(folder: Path, recorder: Recorder) -> None:
    hot = _hotfolder(folder, recorder)
    target = folder.parent / "elsewhere.jpg"
    target.write_bytes(_jpeg())
    (folder / "link.jpg").symlink_to(target)
    (folder / "subdir").mkdir()
    assert hot.poll().refused == 1
    assert not (folder / "link.jpg").exists() and not (folder / "link.jpg").is_symlink()
    assert target.exists()
    assert (folder / "subdir").is_dir()  # subfolders are left alone
    assert recorder.refused == [("not a regular file", 0)]


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d", "png"),
        (b"RIFF\x24\x00\x00\x00WEBP", "webp"),
        (b"\x00\x00\x00\x18ftypheic", "heif"),
        (b"\x00\x00\x00\x18ftypmif1", "heif"),
        (b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00", "tiff"),
        (b"MM\x00*\x00\x00\x00\x08\x00\x00\x00\x00", "tiff"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00", None),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", None),
        (b"\x00\x00\x00\x18ftypisom", None),  # an MP4 video
    ],
)
def test_image_kind_by_magic_bytes(head: bytes, kind: str | None) -> None:
    assert image_kind(head) == kind


def test_refuses_a_folder_that_is_not_in_ram(tmp_path: Path, recorder: Recorder) -> None:
    candidates = [tmp_path, Path(__file__).resolve().parent]
    on_disk = next((p for p in candidates if not filesystem_of(p).in_ram), None)
    if on_disk is None:
        pytest.skip("no disk-backed directory to test with: /tmp and the repo are both in RAM")
    target = on_disk / "hotfolder-not-in-ram"
    try:
        with pytest.raises(HotFolderNotInRamError, match="not tmpfs"):
            HotFolder(target, recorder.deliver, recorder.on_refused, max_bytes=1 << 20)
    finally:
        if target.is_dir():
            target.rmdir()


def test_background_thread_delivers(folder: Path, recorder: Recorder) -> None:
    config = HotFolderConfig(enabled=True, path=folder, poll_interval_s=0.05)
    hot = HotFolder.from_config(config, recorder.deliver, recorder.on_refused)
    data = _jpeg()
    with hot:
        (folder / "tethered.jpg").write_bytes(data)
        assert recorder.event.wait(timeout=5), "the hot folder thread delivered nothing"
    assert recorder.delivered == [data]
    deadline = time.monotonic() + 2
    while any(folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(folder.iterdir()) == []
