"""Run by the target's Python under qemu (tests/test_aarch64.py): how far the real picamera2 gets.

argv: FAKES_DIR (holds the display-less pykms stand-in), APPLIANCE_ROOT. Prints one JSON object:
  helpers        each compiled or pure helper picamera2 imports, loaded on its own: where it
                 came from, or the error; simplejpeg also encodes and decodes a frame
  plain_import   `import picamera2` as it is: None, or the error and the missing module's name
  extensions     every compiled module (.so) loaded by that attempt, and numpy's version
  with_display_stand_in
                 only where libcamera's bindings load: the import again with
                 tests/fakes/pykms on the path, then Picamera2.global_camera_info() (real
                 libcamera, no camera attached) and the appliance's Picamera2Camera.open()
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

HELPERS = ("numpy", "PIL.Image", "simplejpeg", "prctl", "libcamera", "videodev2", "piexif",
           "pidng.core", "pidng.camdefs")


def _error(error: BaseException) -> dict[str, Any]:
    return {"type": type(error).__name__, "name": getattr(error, "name", None),
            "message": str(error)[:300]}


def _extensions() -> list[str]:
    files = {getattr(module, "__file__", None) or "" for module in list(sys.modules.values())}
    return sorted(f for f in files if f.endswith(".so"))


def _forget_picamera2() -> None:
    for name in [n for n in sys.modules if n == "picamera2" or n.startswith("picamera2.")]:
        del sys.modules[name]


def _simplejpeg_roundtrip() -> dict[str, Any]:
    import numpy as np
    import simplejpeg

    ramp = np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3).astype(np.uint8)
    encoded = simplejpeg.encode_jpeg(ramp, quality=95, colorspace="RGB")
    decoded = simplejpeg.decode_jpeg(encoded, colorspace="RGB")
    error = float(np.abs(decoded.astype(np.int16) - ramp).mean())
    return {"shape": list(decoded.shape), "mean_abs_error": round(error, 3)}


def main() -> None:
    fakes, appliance_root = sys.argv[1], sys.argv[2]
    result: dict[str, Any] = {"helpers": {}}
    for name in HELPERS:
        try:
            module = importlib.import_module(name)
            result["helpers"][name] = {"file": getattr(module, "__file__", None)}
        except Exception as error:  # what failed is the finding
            result["helpers"][name] = {"error": _error(error)}
    try:
        result["simplejpeg_roundtrip"] = _simplejpeg_roundtrip()
    except Exception as error:
        result["simplejpeg_roundtrip"] = {"error": _error(error)}

    try:
        import picamera2  # noqa: F401

        result["plain_import"] = None
    except Exception as error:
        result["plain_import"] = _error(error)
    import numpy

    result["numpy"] = numpy.__version__
    result["extensions"] = _extensions()

    result["with_display_stand_in"] = None
    if "error" not in result["helpers"]["libcamera"]:
        _forget_picamera2()
        sys.path[:0] = [fakes, appliance_root]
        stand_in: dict[str, Any] = {}
        try:
            from picamera2 import Picamera2

            stand_in["file"] = sys.modules["picamera2"].__file__
            stand_in["cameras"] = Picamera2.global_camera_info()
            from appliance.devices.camera.base import CameraUnavailable
            from appliance.devices.camera.picamera2 import Picamera2Camera
            from appliance.devices.config import CameraConfig

            camera = Picamera2Camera(CameraConfig(backend="picamera2", device=0))
            try:
                camera.open()
                stand_in["open"] = "opened"
                camera.close()
            except CameraUnavailable as error:
                stand_in["open"] = _error(error)
        except Exception as error:
            stand_in["error"] = _error(error)
        result["with_display_stand_in"] = stand_in
    print(json.dumps(result))


if __name__ == "__main__":
    main()
