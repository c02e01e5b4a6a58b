"""A stand-in for the ``picamera2`` package, for tests on machines without a Pi camera.

It follows the real API's names and signatures (picamera2 0.3.x, ``picamera2/picamera2.py``):
``Picamera2(camera_num=0, verbose_console=None, tuning=None, allocator=None)``,
``Picamera2.global_camera_info()``, ``create_still_configuration(main={}, lores=None, ...)``,
``configure``, ``start``, ``stop``, ``close``, ``capture_file(file_output, name="main",
format=None, wait=None, signal_function=None, exif_data=None)``, ``capture_array(name="main",
wait=None, signal_function=None)``, ``autofocus_cycle(wait=None, signal_function=None)``,
``set_controls``, ``camera_controls``, ``sensor_resolution`` and ``options``. Like the real
one: the constructor indexes ``global_camera_info()`` (IndexError with no camera), the
configuration functions raise RuntimeError before the camera is open, capture needs a started
camera, and ``wait=<seconds>`` raises TimeoutError when no frame arrives (a pulled cable).

Never on the real import path: tests put it into ``sys.modules["picamera2"]`` with
monkeypatch. Every instance records its calls in ``history``; module-level ``instances``
lists them. Test controls: ``reset()``, ``attach()``, ``unplug()``, ``replug()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

# Camera Module 3 (imx708): has autofocus. Camera Module 2 (imx219) has none.
IMX708 = {
    "Model": "imx708",
    "Location": 2,
    "Rotation": 180,
    "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a",
}
IMX219 = {
    "Model": "imx219",
    "Location": 2,
    "Rotation": 0,
    "Id": "/base/soc/i2c0mux/i2c@1/imx219@10",
}
# Scaled down from the real 4608x2592 / 3280x2464 so tests stay fast; same aspect ratios.
SENSOR_RESOLUTION = {"imx708": (1152, 648), "imx219": (820, 616)}

attached: list[dict[str, Any]] = []
instances: list[Picamera2] = []
_unplugged = False


def reset(models: tuple[dict[str, Any], ...] = (IMX708,)) -> None:
    global _unplugged
    attached[:] = [dict(model) for model in models]
    instances.clear()
    _unplugged = False


def unplug() -> None:
    """The ribbon cable comes out: running cameras stop delivering, none is listed."""
    global _unplugged
    _unplugged = True


def replug() -> None:
    global _unplugged
    _unplugged = False


class Picamera2:
    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None) -> None:
        self.history: list[tuple[Any, ...]] = [("__init__", camera_num)]
        self.is_open = False
        self.started = False
        self.camera_config: dict[str, Any] | None = None
        self.options: dict[str, Any] = {}
        self.controls: dict[str, Any] = {}
        info = self.global_camera_info()[camera_num]  # IndexError, as the real one
        self.camera_idx = info["Num"]
        self.model = info["Model"]
        self.sensor_resolution = SENSOR_RESOLUTION[self.model]
        self.is_open = True
        instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        if _unplugged:
            return []
        return [dict(info, Num=number) for number, info in enumerate(attached)]

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        controls: dict[str, tuple[Any, Any, Any]] = {
            "ExposureTime": (14, 3066985, None),
            "AnalogueGain": (1.0, 16.0, None),
        }
        if self.model == "imx708":
            controls["AfMode"] = (0, 2, 0)
            controls["AfTrigger"] = (0, 1, 0)
        return controls

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_still_configuration(
        self,
        main={},  # noqa: B006 - the real signature's defaults
        lores=None,
        raw={},  # noqa: B006
        transform=None,
        colour_space=None,
        buffer_count=1,
        controls={},  # noqa: B006
        display=None,
        encode=None,
        queue=True,
        sensor={},  # noqa: B006
        use_case="still",
    ) -> dict[str, Any]:
        self.history.append(("create_still_configuration", main, lores, buffer_count))
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        main = {"format": "BGR888", "size": self.sensor_resolution, **main}
        if lores is not None:
            lores = {"format": "YUV420", "size": main["size"], **lores}
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        return {
            "use_case": use_case,
            "buffer_count": buffer_count,
            "main": main,
            "lores": lores,
            "raw": raw,
            "controls": controls,
        }

    def configure(self, camera_config=None) -> None:
        self.history.append(("configure", camera_config))
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        self.camera_config = camera_config

    def start(self, config=None, show_preview=False) -> None:
        self.history.append(("start",))
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        self.history.append(("stop",))
        self.started = False

    def close(self) -> None:
        self.history.append(("close",))
        if self.is_open:
            self.stop()
        self.is_open = False

    def set_controls(self, controls) -> None:
        self.history.append(("set_controls", dict(controls)))
        self.controls.update(controls)

    def _next_frame(self, name: str, wait: Any) -> np.ndarray:
        if not self.started:
            raise RuntimeError("Camera has not been started")
        assert self.camera_config is not None
        stream = self.camera_config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        if _unplugged:
            # The real dispatch_functions waits for a request that never completes.
            if wait is None or wait is True:
                raise AssertionError("would hang forever: pass wait=<seconds>")
            raise TimeoutError
        width, height = stream["size"]
        level = (len(self.history) * 29) % 255
        return np.full((height, width, 3), level, dtype=np.uint8)

    def capture_file(
        self, file_output, name="main", format=None, wait=None, signal_function=None, exif_data=None
    ) -> dict[str, Any]:
        self.history.append(("capture_file", name, format, wait))
        if isinstance(file_output, str):
            raise AssertionError("the appliance must never capture to a file path")
        pixels = self._next_frame(name, wait)
        Image.fromarray(pixels).save(
            file_output, format=(format or "jpeg").upper(), quality=self.options.get("quality", 90)
        )
        return {"SensorTimestamp": len(self.history)}

    def capture_array(self, name="main", wait=None, signal_function=None) -> np.ndarray:
        self.history.append(("capture_array", name, wait))
        return self._next_frame(name, wait)

    def autofocus_cycle(self, wait=None, signal_function=None) -> bool:
        self.history.append(("autofocus_cycle", wait))
        if "AfMode" not in self.camera_controls:
            raise RuntimeError("Control AfMode is not advertised by libcamera")
        self.set_controls({"AfMode": 1, "AfTrigger": 0})  # AfModeEnum.Auto, AfTriggerEnum.Start
        self._next_frame("main", wait)
        return True
