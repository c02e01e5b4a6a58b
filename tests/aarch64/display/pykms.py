"""A display-less stand-in for pykms (kms++'s Python bindings), for the aarch64 tier only.

picamera2 imports its DRM preview window at import time, and that needs pykms, which exists
only in the Raspberry Pi archive (python3-kms++; the `kms` name on PyPI is an unrelated
package). The appliance is headless and never opens a preview, so this module provides what
picamera2 reads while importing (the pixel-format and plane-type names) and fails like a
machine with no display when anything tries to open one.
"""

from __future__ import annotations

import enum
import errno


class PixelFormat(enum.Enum):
    RGB888 = "RG24"
    BGR888 = "BG24"
    XRGB8888 = "XR24"
    XBGR8888 = "XB24"
    ARGB8888 = "AR24"
    ABGR8888 = "AB24"
    YUYV = "YUYV"
    YVYU = "YVYU"
    YUV420 = "YU12"
    YVU420 = "YV12"
    NV12 = "NV12"


class PlaneType(enum.Enum):
    Overlay = 0
    Primary = 1
    Cursor = 2


class Card:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOENT, "no DRM display device (headless appliance)")
