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

from appliance.imaging.geometry import as_rgb_image, compose_affine, resize_for_model
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


def guided_filter(
    guide: np.ndarray, source: np.ndarray, radius: int, eps: float, subsample: int = 1
) -> np.ndarray:
    """Edge-preserving smoothing of `source` steered by the grey `guide` (He et al., 2010).

    Both are float32 in [0, 1] of the same shape; the output follows the guide's edges where
    the source changes, and is smooth elsewhere. With `subsample` > 1 the linear coefficients
    are fitted on a reduced copy and applied to the full-resolution guide (He and Sun's fast
    guided filter, 2015): the edges still come from every guide pixel.
    """
    height, width = guide.shape
    fit_guide, fit_source = guide, source
    if subsample > 1:
        small = (max(1, round(width / subsample)), max(1, round(height / subsample)))
        fit_guide = cv2.resize(guide, small, interpolation=cv2.INTER_LINEAR)
        fit_source = cv2.resize(source, small, interpolation=cv2.INTER_LINEAR)
        radius = max(1, round(radius / subsample))
    size = (2 * radius + 1, 2 * radius + 1)

    def box(values: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(values, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(fit_guide), box(fit_source)
    cov_ip = box(fit_guide * fit_source) - mean_i * mean_p
    var_i = box(fit_guide * fit_guide) - mean_i * mean_i
    a = cov_ip / (var_i + np.float32(eps))
    b = mean_p - a * mean_i
    mean_a, mean_b = box(a), box(b)
    if subsample > 1:
        mean_a = cv2.resize(mean_a, (width, height), interpolation=cv2.INTER_LINEAR)
        mean_b = cv2.resize(mean_b, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.asarray(mean_a * guide + mean_b, dtype=np.float32)


def refine_radius(mask: PortraitMask, source_to_guide: np.ndarray) -> int:
    """The guided filter's radius on a guide raster: about one model pixel in guide pixels,
    enough to pull the coarse edge onto the real one without smearing it. The refined mask at
    a pixel depends on guide pixels up to twice this far away (two box passes)."""
    model_to_guide = compose_affine(source_to_guide, mask.model_to_source())
    return max(2, round(float(np.hypot(*model_to_guide[:, 0])) * 1.5))


class PortraitSegmenter:
    """Selfie segmentation: soft masks, and refined masks on any target raster."""

    def __init__(self, model: TFLiteModel) -> None:
        self.model = model

    def segment(self, image: np.ndarray) -> PortraitMask:
        image = as_rgb_image(image)
        width, height = self.model.input_size
        output = self.model.run(resize_for_model(image, (width, height)))[0].reshape(height, width)
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
            radius = refine_radius(mask, source_to_guide)
        grey = cv2.cvtColor(guide, cv2.COLOR_RGB2GRAY).astype(np.float32) / np.float32(255.0)
        # Fit the filter at half resolution once the radius spans a few pixels there.
        refined = guided_filter(grey, coarse, radius, eps, subsample=2 if radius >= 4 else 1)
        return np.clip(refined, 0.0, 1.0)
