"""Cameras: backends, unplug/replug with backoff, and the bounded live preview."""

from __future__ import annotations

import errno
import importlib.util
import io
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from appliance.devices.camera import (
    MJPEG_MIMETYPE,
    CameraConfigError,
    CameraState,
    CameraUnavailable,
    PreviewHub,
    PreviewPump,
    ReconnectingCamera,
    create_backend,
    open_camera,
)
from appliance.devices.camera.fake import FakeCamera
from appliance.devices.camera.folder import FolderCamera
from appliance.devices.camera.gphoto2 import Gphoto2Camera
from appliance.devices.camera.opencv import OpenCVCamera
from appliance.devices.camera.picamera2 import Picamera2Camera, fit_size
from appliance.devices.camera.reconnect import backoff_delays
from appliance.devices.config import CameraConfig

ROOT = Path(__file__).resolve().parent.parent
FAKE_PICAMERA2 = Path(__file__).resolve().parent / "fakes" / "picamera2" / "__init__.py"


def _jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:3] == b"\xff\xd8\xff", "not a JPEG"
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return image.size


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


class RecordingSleeper:
    """Records each backoff delay and waits only a few milliseconds instead."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, stop: threading.Event, delay: float) -> bool:
        self.delays.append(delay)
        return stop.wait(0.002)


@pytest.fixture
def sleeper() -> RecordingSleeper:
    return RecordingSleeper()


# --- the reconnecting wrapper ------------------------------------------------------------------


def test_backoff_doubles_up_to_the_ceiling() -> None:
    delays = backoff_delays(0.5, 4.0)
    assert [next(delays) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_unplug_makes_camera_unavailable_then_it_reconnects(sleeper: RecordingSleeper) -> None:
    fake = FakeCamera()
    states: list[CameraState] = []
    camera = ReconnectingCamera(
        fake,
        initial_backoff_s=0.5,
        max_backoff_s=4.0,
        on_state_change=states.append,
        sleeper=sleeper,
    )
    with camera:
        assert camera.state.status == "ready"
        assert _jpeg_size(camera.capture()) == (640, 480)

        fake.unplug()
        with pytest.raises(CameraUnavailable) as caught:
            camera.capture()
        assert caught.value.errno == errno.ENODEV
        assert isinstance(caught.value, OSError)
        assert camera.state.status == "unavailable"
        assert "No such device" in camera.state.reason
        # Retries with growing delays while the camera is away.
        assert wait_until(lambda: len(sleeper.delays) >= 6)
        assert sleeper.delays[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
        captures_before = fake.calls("capture")
        with pytest.raises(CameraUnavailable):
            camera.capture()  # fails at once, without touching the dead device
        assert fake.calls("capture") == captures_before

        fake.replug()
        assert camera.wait_ready(timeout=5)
        assert _jpeg_size(camera.capture()) == (640, 480)
    statuses = [s.status for s in states]
    transitions = [a for a, b in zip(statuses, [*statuses[1:], None], strict=True) if a != b]
    assert transitions == ["ready", "unavailable", "ready", "unavailable"]
    assert states[-1].reason == "closed"
    assert fake.history[-1] == ("close",)


def test_missing_at_start_is_not_fatal(sleeper: RecordingSleeper) -> None:
    fake = FakeCamera()
    fake.unplug()
    camera = ReconnectingCamera(fake, sleeper=sleeper)
    camera.open()  # does not raise: the appliance starts and shows "camera unavailable"
    try:
        assert camera.state.status == "unavailable"
        assert wait_until(lambda: camera.attempts >= 2)
        fake.replug()
        assert camera.wait_ready(timeout=5)
    finally:
        camera.close()


def test_close_stops_the_reconnect_thread(sleeper: RecordingSleeper) -> None:
    fake = FakeCamera()
    camera = ReconnectingCamera(fake, sleeper=sleeper)
    camera.open()
    fake.unplug()
    with pytest.raises(CameraUnavailable):
        camera.capture()
    assert wait_until(lambda: fake.calls("open") >= 3)
    camera.close()
    opens = fake.calls("open")
    time.sleep(0.05)
    assert fake.calls("open") == opens
    assert camera.state.reason == "closed"
    assert not any(t.name == "camera-reconnect" for t in threading.enumerate())


def test_transient_open_failures_recover(sleeper: RecordingSleeper) -> None:
    fake = FakeCamera(fail_open_times=2)  # EBUSY twice, as a USB camera still enumerating
    camera = ReconnectingCamera(fake, sleeper=sleeper)
    with camera:
        assert camera.wait_ready(timeout=5)
        assert camera.attempts == 2
        assert sleeper.delays[:2] == [0.5, 1.0]


def test_a_failing_state_callback_does_not_break_the_camera(sleeper: RecordingSleeper) -> None:
    def broken(state: CameraState) -> None:
        raise RuntimeError("LED driver crashed")

    fake = FakeCamera()
    with ReconnectingCamera(fake, on_state_change=broken, sleeper=sleeper) as camera:
        assert camera.state.ready
        assert camera.capture()[:2] == b"\xff\xd8"


# --- preview


def test_hub_keeps_only_the_latest_frame() -> None:
    hub = PreviewHub()
    for number in range(1, 6):
        hub.publish(f"frame {number}".encode())
    frame = hub.wait_for_frame(after_seq=0, timeout=0.1)
    assert frame is not None and frame.seq == 5 and frame.jpeg == b"frame 5"
    assert hub.wait_for_frame(after_seq=5, timeout=0.05) is None  # nothing newer yet
    hub.close()
    assert hub.wait_for_frame(after_seq=5, timeout=5) is None  # close wakes viewers at once


def test_slow_viewer_skips_frames_instead_of_queuing() -> None:
    hub = PreviewHub()
    seen: list[int] = []
    release = threading.Event()

    def slow_viewer() -> None:
        seq = 0
        while len(seen) < 2:
            frame = hub.wait_for_frame(seq, timeout=5)
            assert frame is not None
            seen.append(frame.seq)
            seq = frame.seq
            release.wait(5)  # busy "sending" the frame while the producer goes on

    viewer = threading.Thread(target=slow_viewer)
    viewer.start()
    hub.publish(b"1")
    assert wait_until(lambda: seen == [1])
    for number in range(2, 50):
        hub.publish(str(number).encode())
    release.set()
    viewer.join(5)
    assert seen == [1, 49]


def test_mjpeg_parts() -> None:
    hub = PreviewHub()
    hub.publish(b"\xff\xd8\xff-jpeg-")
    stream = hub.mjpeg(frame_timeout=0.05)
    part = next(stream)
    assert part.startswith(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 9\r\n\r\n")
    assert part.endswith(b"\xff\xd8\xff-jpeg-\r\n")
    assert "boundary=frame" in MJPEG_MIMETYPE
    hub.close()
    assert list(stream) == []


def test_pump_is_paced_demand_driven_and_survives_unplug(sleeper: RecordingSleeper) -> None:
    fake = FakeCamera(CameraConfig(preview_width=160, preview_height=120))
    camera = ReconnectingCamera(fake, sleeper=sleeper)
    hub = PreviewHub(idle_after_s=0.3)
    pump = PreviewPump(camera, hub, fps=20, poll_s=0.05)
    camera.open()
    pump.start()
    try:
        time.sleep(0.1)
        assert hub.published == 0  # nobody watching: the camera is left alone
        first = hub.wait_for_frame(0, timeout=5)
        assert first is not None and _jpeg_size(first.jpeg) == (160, 120)
        start, start_count = time.monotonic(), hub.published
        seq = first.seq
        while time.monotonic() - start < 0.5:
            frame = hub.wait_for_frame(seq, timeout=1)
            assert frame is not None
            seq = frame.seq
        rate = (hub.published - start_count) / (time.monotonic() - start)
        assert 5 < rate < 30, f"preview ran at {rate:.1f} fps, configured 20"

        fake.unplug()
        assert wait_until(lambda: camera.state.status == "unavailable")
        assert wait_until(lambda: hub.latest() is None)  # no stale picture while it is away
        fake.replug()
        assert camera.wait_ready(timeout=5)
        assert hub.wait_for_frame(seq, timeout=5) is not None

        # Viewers gone: production stops after idle_after_s.
        assert wait_until(lambda: not hub.has_viewers(), timeout=2)
        time.sleep(0.1)
        idle_count = hub.published
        time.sleep(0.2)
        assert hub.published == idle_count
    finally:
        pump.stop()
        hub.close()
        camera.close()


# --- picamera2 (against a fake module that follows the real API) -------------------------------


@pytest.fixture
def picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("picamera2", FAKE_PICAMERA2)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.reset()
    monkeypatch.setitem(sys.modules, "picamera2", module)
    yield module


def test_picamera2_still_config_capture_and_close(picamera2: ModuleType) -> None:
    config = CameraConfig(backend="picamera2", preview_width=320, preview_height=240)
    backend = create_backend(config)
    assert isinstance(backend, Picamera2Camera)
    backend.open()
    [cam] = picamera2.instances
    assert cam.history[0] == ("__init__", 0)
    _, main, lores, _buffers = next(c for c in cam.history if c[0] == "create_still_configuration")
    assert main == {"size": (1152, 648)}  # full sensor resolution
    assert lores == {"size": (320, 180), "format": "YUV420"}
    assert [c[0] for c in cam.history[1:]] == ["create_still_configuration", "configure", "start"]

    still = backend.capture()
    assert _jpeg_size(still) == (1152, 648)
    assert cam.options["quality"] == config.jpeg_quality
    af = [c for c in cam.history if c[0] == "autofocus_cycle"]
    assert af == [("autofocus_cycle", config.capture_timeout_s)]  # Camera Module 3 has AF
    capture = [c for c in cam.history if c[0] == "capture_file"][-1]
    assert capture == ("capture_file", "main", "jpeg", config.capture_timeout_s)

    preview = next(backend.frames())
    assert _jpeg_size(preview) == (320, 180)
    assert cam.options["quality"] == config.preview_quality

    backend.close()
    assert cam.history.index(("stop",)) < cam.history.index(("close",))
    assert not cam.is_open and not cam.started


def test_picamera2_without_autofocus(picamera2: ModuleType) -> None:
    picamera2.reset((picamera2.IMX219,))
    backend = Picamera2Camera(CameraConfig(backend="picamera2"))
    backend.open()
    assert not backend.has_autofocus
    assert _jpeg_size(backend.capture()) == (820, 616)
    assert not any(c[0] == "autofocus_cycle" for c in picamera2.instances[0].history)
    backend.close()


def test_picamera2_unplugged_then_back(picamera2: ModuleType, sleeper: RecordingSleeper) -> None:
    camera = open_camera(CameraConfig(backend="picamera2"), sleeper=sleeper)
    try:
        assert camera.state.ready
        picamera2.unplug()
        with pytest.raises(CameraUnavailable, match=r"stopped delivering frames|autofocus"):
            camera.capture()
        assert camera.state.status == "unavailable"
        assert wait_until(lambda: "no camera 0 found" in camera.state.reason)
        picamera2.replug()
        assert camera.wait_ready(timeout=5)
        assert _jpeg_size(camera.capture()) == (1152, 648)
        lost, current = picamera2.instances
        assert not lost.is_open and ("close",) in lost.history  # the lost one was released
        assert current.is_open and current.started
    finally:
        camera.close()


def test_picamera2_absent(picamera2: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    picamera2.reset(())
    with pytest.raises(CameraUnavailable, match="no camera 0 found"):
        Picamera2Camera(CameraConfig(backend="picamera2")).open()
    monkeypatch.setitem(sys.modules, "picamera2", None)  # not installed at all
    with pytest.raises(CameraConfigError, match="picamera2 is not installed"):
        open_camera(CameraConfig(backend="picamera2"))


def test_picamera2_installed_but_broken_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A picamera2 whose compiled helper does not load (Debian's simplejpeg against another
    numpy) is reported as broken, with the reason, not as missing."""
    broken = tmp_path / "picamera2"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        "raise ImportError('numpy.core.multiarray failed to import')\n"
    )
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CameraConfigError) as refused:
        open_camera(CameraConfig(backend="picamera2"))
    text = str(refused.value)
    assert "installed but cannot be loaded" in text and "multiarray failed" in text
    assert f"numpy {np.__version__}" in text
    # What a simplejpeg built against numpy 1.x raises under numpy 2 (seen in the aarch64 tier).
    (broken / "__init__.py").write_text(
        "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility. "
        "Expected 96 from C header, got 88 from PyObject')\n"
    )
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    with pytest.raises(CameraConfigError) as refused:
        open_camera(CameraConfig(backend="picamera2"))
    text = str(refused.value)
    assert "installed but cannot be loaded (numpy.dtype size changed" in text
    assert "`pi` extra" in text
    (broken / "__init__.py").write_text("import libcamera_not_here\n")
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    with pytest.raises(CameraConfigError, match="No module named 'libcamera_not_here'"):
        open_camera(CameraConfig(backend="picamera2"))


def test_fit_size_keeps_aspect_and_even_sides() -> None:
    assert fit_size((4608, 2592), (640, 480)) == (640, 360)
    assert fit_size((3280, 2464), (640, 480)) == (638, 480)
    assert fit_size((320, 240), (640, 480)) == (320, 240)  # never scaled up


# --- OpenCV ------------------------------------------------------------------------------------


def _video(path: Path, frames: int, size: tuple[int, int] = (320, 240)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for number in range(frames):
        writer.write(np.full((size[1], size[0], 3), number * 20, dtype=np.uint8))
    writer.release()
    return path


def test_opencv_captures_jpeg_and_reports_a_dead_source(tmp_path: Path) -> None:
    video = _video(tmp_path / "clip.avi", frames=6)
    config = CameraConfig(
        backend="opencv", device=str(video), preview_width=160, preview_height=120
    )
    camera = create_backend(config)
    assert isinstance(camera, OpenCVCamera)
    with camera:
        assert _jpeg_size(camera.capture()) == (320, 240)
        assert _jpeg_size(next(camera.frames())) == (160, 120)
        # The clip runs out the way a pulled USB camera stops delivering.
        with pytest.raises(CameraUnavailable, match="unplugged") as caught:
            for _ in range(10):
                camera.capture()
        assert caught.value.errno == errno.EIO


def test_opencv_missing_device() -> None:
    camera = OpenCVCamera(CameraConfig(backend="opencv", device="/nonexistent/video.avi"))
    with pytest.raises(CameraUnavailable, match="cannot open"):
        camera.open()


class RecordingCapture:
    def __init__(self, source: int | str, api: int) -> None:
        self.source, self.api = source, api
        self.settings: dict[int, float] = {}

    def isOpened(self) -> bool:
        return True

    def set(self, prop: int, value: float) -> bool:
        self.settings[prop] = value
        return True

    def grab(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((480, 640, 3), dtype=np.uint8)

    def release(self) -> None:
        pass


@pytest.mark.parametrize(
    ("device", "api", "configured"),
    [
        (0, cv2.CAP_V4L2, True),
        ("/dev/video2", cv2.CAP_V4L2, True),
        ("nvarguscamerasrc ! nvvidconv ! videoconvert ! appsink", cv2.CAP_GSTREAMER, False),
    ],
)
def test_opencv_source_selection(device: int | str, api: int, configured: bool) -> None:
    made: list[RecordingCapture] = []

    def factory(source: int | str, chosen_api: int) -> RecordingCapture:
        made.append(RecordingCapture(source, chosen_api))
        return made[-1]

    config = CameraConfig(backend="opencv", device=device, width=2592, height=1944)
    with OpenCVCamera(config, video_capture=factory):
        pass
    [capture] = made
    assert (capture.source, capture.api) == (device, api)
    if configured:  # V4L2: MJPEG at the configured size, one-frame buffer
        assert capture.settings[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
        assert capture.settings[cv2.CAP_PROP_FRAME_WIDTH] == 2592
        assert capture.settings[cv2.CAP_PROP_FRAME_HEIGHT] == 1944
        assert capture.settings[cv2.CAP_PROP_BUFFERSIZE] == 1
    else:  # a pipeline sets its own caps
        assert capture.settings == {}


# --- folder (demo) --------------------------------------------------------------------------------


def test_folder_cycles_sorted_and_reencodes_without_metadata(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    jpeg = io.BytesIO()
    Image.new("RGB", (200, 100), "red").save(jpeg, format="JPEG")
    (photos / "b.jpg").write_bytes(jpeg.getvalue())
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    Image.new("RGB", (300, 150), "blue").save(photos / "a.png", format="PNG", exif=exif)
    (photos / "notes.txt").write_text("not an image")
    (photos / "c.jpg").write_bytes(b"broken")  # unreadable: skipped

    config = CameraConfig(backend="folder", folder=photos, preview_width=100, preview_height=100)
    with FolderCamera(config) as camera:
        preview = next(camera.frames())
        assert _jpeg_size(preview) == (100, 50)  # a.png, the next to be captured
        first = camera.capture()
        assert _jpeg_size(first) == (300, 150)
        with Image.open(io.BytesIO(first)) as image:
            assert not image.getexif() and "exif" not in image.info
        assert camera.capture() == jpeg.getvalue()  # JPEG returned as it is
        assert _jpeg_size(camera.capture()) == (300, 150)  # and round again


def test_folder_empty_or_gone(tmp_path: Path, sleeper: RecordingSleeper) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CameraUnavailable, match="no images"):
        FolderCamera(CameraConfig(backend="folder", folder=empty)).open()

    photos = tmp_path / "stick"
    photos.mkdir()
    Image.new("RGB", (64, 64)).save(photos / "x.png")
    camera = open_camera(CameraConfig(backend="folder", folder=photos), sleeper=sleeper)
    try:
        assert camera.state.ready
        (photos / "x.png").unlink()
        photos.rmdir()  # the USB stick is pulled
        with pytest.raises(CameraUnavailable):
            camera.capture()
        assert "demo folder" in camera.state.reason or "No such file" in camera.state.reason
    finally:
        camera.close()


# --- gphoto2


def test_gphoto2_commands_and_failures() -> None:
    calls: list[list[str]] = []
    listing = b"Model                          Port\n" + b"-" * 60 + b"\n"
    camera_line = b"Canon EOS 2000D                usb:001,004\n"
    replies: dict[str, bytes] = {
        "--auto-detect": listing + camera_line,
        "--capture-image-and-download": b"\xff\xd8\xff\xe1still",
        "--capture-preview": b"\xff\xd8\xff\xe0live",
    }

    def runner(argv: Any, timeout: float) -> bytes:
        calls.append(list(argv))
        return replies[next(a for a in argv if a in replies)]

    config = CameraConfig(backend="gphoto2", device="usb:001,004")
    with Gphoto2Camera(config, runner=runner) as camera:
        assert camera.capture() == b"\xff\xd8\xff\xe1still"
        assert next(camera.frames()) == b"\xff\xd8\xff\xe0live"
    assert calls[1] == [
        "gphoto2", "--port", "usb:001,004", "--capture-image-and-download", "--stdout"
    ]  # fmt: skip
    assert "--keep" not in calls[1]  # the camera deletes its copy

    replies["--auto-detect"] = listing
    with pytest.raises(CameraUnavailable, match="no USB camera"):
        Gphoto2Camera(config, runner=runner).open()
    replies["--auto-detect"] = listing + camera_line
    replies["--capture-image-and-download"] = b"II*\x00raw"
    with (
        Gphoto2Camera(config, runner=runner) as camera,
        pytest.raises(CameraUnavailable, match="RAW"),
    ):
        camera.capture()

    def missing(argv: Any, timeout: float) -> bytes:
        raise FileNotFoundError(argv[0])

    with pytest.raises(CameraUnavailable, match="apt install gphoto2"):
        Gphoto2Camera(config, runner=missing).open()


# --- factory and config


def test_factory_names_and_module_class() -> None:
    camera = open_camera(CameraConfig(backend="appliance.devices.camera.fake:FakeCamera"))
    try:
        assert isinstance(camera.backend, FakeCamera) and camera.state.ready
    finally:
        camera.close()
    with pytest.raises(CameraConfigError, match=r'camera\.backend = "webcam" is unknown'):
        create_backend(CameraConfig(backend="webcam"))
    with pytest.raises(CameraConfigError, match="cannot import"):
        create_backend(CameraConfig(backend="no_such_module:Camera"))


def test_config_is_checked() -> None:
    with pytest.raises(ValidationError, match="both width and height"):
        CameraConfig(width=1920)
    with pytest.raises(ValidationError, match="needs folder"):
        CameraConfig(backend="folder")
    with pytest.raises(ValidationError, match="extra"):
        CameraConfig.model_validate({"backnd": "fake"})


def test_importing_the_devices_probes_nothing() -> None:
    code = (
        "import sys\n"
        "import appliance.devices.camera, appliance.devices.printer, appliance.devices.buttons\n"
        "import appliance.devices.config, appliance.inputs.hotfolder\n"
        "loaded = {'cv2', 'picamera2', 'gpiozero', 'PIL'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)
