"""Portrait segmentation (MediaPipe selfie segmentation) and edge-aware mask refinement.

The model sees the whole photo stretched to its input (as MediaPipe feeds it) and returns a
soft person mask at its own resolution. `refine` brings that mask to any target raster (a crop,
a rotated and scaled output) and sharpens it along the target image's own edges with a guided
filter, so hair and shoulders follow the full-resolution pixels instead of the 256 px grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.imaging.geometry import as_rgb_image, compose_affine
from appliance.inference.runtime import TFLiteModel


@dataclass(frozen=True)
class PortraitMask:
    """Soft person mask (0 background .. 1 person) at the model's resolution."""

    mask: np.ndarray  # h x w float32 in [0, 1]
    source_size: tuple[int, int]  # (width, height) of the image it was computed on

    def model_to_source(self) -> np.ndarray:
        """2x3 affine from mask pixels to source-image pixels."""
        height, width = self.mask.shape
        sw, sh = self.source_size
        return np.array([[sw / width, 0.0, 0.0], [0.0, sh / height, 0.0]], dtype=np.float64)

    def at_source_size(self) -> np.ndarray:
        return cv2.resize(self.mask, self.source_size, interpolation=cv2.INTER_LINEAR)

    def coverage(self, x0: int, y0: int, x1: int, y1: int, threshold: float = 0.5) -> float:
        """Fraction of a source-pixel rectangle the mask marks as person."""
        sw, sh = self.source_size
        height, width = self.mask.shape
        cx0, cx1 = int(x0 * width / sw), max(int(x0 * width / sw) + 1, int(x1 * width / sw))
        cy0, cy1 = int(y0 * height / sh), max(int(y0 * height / sh) + 1, int(y1 * height / sh))
        region = self.mask[max(cy0, 0) : min(cy1, height), max(cx0, 0) : min(cx1, width)]
        return float((region >= threshold).mean()) if region.size else 0.0


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of `source` steered by the grey `guide` (He et al., 2010).

    Both are float32 in [0, 1] of the same shape; the output follows the guide's edges where
    the source changes, and is smooth elsewhere.
    """
    size = (2 * radius + 1, 2 * radius + 1)

    def box(values: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(values, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(source)
    cov_ip = box(guide * source) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + np.float32(eps))
    b = mean_p - a * mean_i
    return np.asarray(box(a) * guide + box(b), dtype=np.float32)


class PortraitSegmenter:
    """Selfie segmentation: soft masks, and refined masks on any target raster."""

    def __init__(self, model: TFLiteModel) -> None:
        self.model = model

    def segment(self, image: np.ndarray) -> PortraitMask:
        image = as_rgb_image(image)
        width, height = self.model.input_size
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        output = self.model.run(resized)[0].reshape(height, width)
        mask = np.clip(output, 0.0, 1.0).astype(np.float32)
        return PortraitMask(mask, (image.shape[1], image.shape[0]))

    def refine(
        self,
        mask: PortraitMask,
        guide: np.ndarray,
        source_to_guide: np.ndarray | None = None,
        *,
        radius: int | None = None,
        eps: float = 1e-3,
    ) -> np.ndarray:
        """The mask on `guide`'s raster (float32 H x W in [0, 1]), snapped to its edges.

        `source_to_guide` maps source-image pixels to guide pixels (a crop, scale and
        rotation); None means the guide is the source image at any size.
        """
        guide = as_rgb_image(guide)
        gh, gw = guide.shape[:2]
        if source_to_guide is None:
            sw, sh = mask.source_size
            source_to_guide = np.array([[gw / sw, 0, 0], [0, gh / sh, 0]], dtype=np.float64)
        model_to_guide = compose_affine(source_to_guide, mask.model_to_source())
        # Mask pixel centres sit at +0.5; shift so the warp samples centres to centres.
        half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
        centred = compose_affine(model_to_guide, half)
        centred[:, 2] -= 0.5
        coarse = cv2.warpAffine(
            mask.mask, centred, (gw, gh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        if radius is None:
            # About one model pixel in guide pixels: enough to pull the coarse edge onto the
            # real one without smearing it.
            radius = max(2, round(float(np.hypot(*model_to_guide[:, 0])) * 1.5))
        grey = cv2.cvtColor(guide, cv2.COLOR_RGB2GRAY).astype(np.float32) / np.float32(255.0)
        refined = guided_filter(grey, coarse, radius, eps)
        return np.clip(refined, 0.0, 1.0)
