"""Background replacement with a soft matte, without the old background's halo.

Where the matte is partly transparent (hair, shoulder edges) the photo's pixel mixes the subject
with the *old* background. Blending that pixel over a new colour keeps a fringe of the old one
(the halo most ID-photo tools show). Here the old background is estimated around each edge pixel
(a normalised blur of the pixels the matte calls background), its share is taken out of the
pixel, and only then is the subject blended over the new background.
"""

from __future__ import annotations

import cv2
import numpy as np


def parse_hex_colour(value: str) -> tuple[int, int, int]:
    """'#RRGGBB' (or 'RRGGBB', or '#RGB') to an RGB tuple; ValueError names the bad value."""
    text = value.strip().lstrip("#")
    if len(text) == 3:
        text = "".join(ch * 2 for ch in text)
    if len(text) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in text):
        raise ValueError(f"{value!r} is not a colour: use #RRGGBB, for example #FFFFFF")
    return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))


def tighten(alpha: np.ndarray, low: float = 0.08, high: float = 0.92) -> np.ndarray:
    """Stretch the matte so near-certain pixels become certain (no see-through clothing)."""
    return np.clip((alpha - np.float32(low)) / np.float32(high - low), 0.0, 1.0)


def _old_background(
    pixels: np.ndarray, alpha: np.ndarray, radius: int, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """The old background's colour around each listed pixel: a blur that counts only the
    pixels the matte calls background."""
    weight = (1.0 - alpha) ** 2
    size = (2 * radius + 1, 2 * radius + 1)
    weighted = cv2.boxFilter(pixels.astype(np.float32) * weight[..., None], -1, size)
    total = cv2.boxFilter(weight, -1, size)
    return np.asarray(
        weighted[rows, cols] / np.maximum(total[rows, cols], np.float32(1e-4))[:, None],
        dtype=np.float32,
    )


def replace_background(
    pixels: np.ndarray, alpha: np.ndarray, background: np.ndarray | tuple[int, int, int]
) -> np.ndarray:
    """Composite the subject over `background` (an RGB colour or an image of the same size).

    `pixels` H x W x 3 uint8 and `alpha` H x W float32 in [0, 1] (1 = subject).
    """
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    height, width = alpha.shape
    if isinstance(background, np.ndarray):
        new = np.ascontiguousarray(background, dtype=np.uint8)
    else:
        new = np.empty_like(pixels)
        new[...] = np.asarray(background, dtype=np.uint8)
    out = cv2.blendLinear(pixels, new, alpha, 1.0 - alpha)
    rows, cols = np.nonzero((alpha > 0.02) & (alpha < 0.98))
    if rows.size == 0:
        return np.asarray(out)
    # Un-mix the edge pixels: observed = a * subject + (1 - a) * old, so the subject over the
    # new background is observed + (1 - a) * (new - old), with the subject kept in range.
    radius = max(3, round(max(height, width) / 60))
    old = _old_background(pixels, alpha, radius, rows, cols)
    a = alpha[rows, cols][:, None]
    observed = pixels[rows, cols].astype(np.float32)
    subject = np.clip((observed - (1.0 - a) * old) / np.maximum(a, np.float32(0.02)), 0, 255)
    mixed = a * subject + (1.0 - a) * new[rows, cols].astype(np.float32)
    out[rows, cols] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(out)


def blurred_background(pixels: np.ndarray, alpha: np.ndarray, strength: float = 0.03) -> np.ndarray:
    """The photo's own background, blurred, with the subject's colours kept out of the blur."""
    height, width = alpha.shape
    sigma = max(2.0, strength * max(height, width))
    weight = (1.0 - alpha.astype(np.float32)) ** 2
    blurred = cv2.GaussianBlur(pixels.astype(np.float32) * weight[..., None], (0, 0), sigma)
    norm = cv2.GaussianBlur(weight, (0, 0), sigma)[..., None]
    return np.clip(blurred / np.maximum(norm, np.float32(1e-3)), 0, 255).astype(np.uint8)
