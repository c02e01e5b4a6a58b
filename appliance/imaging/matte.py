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


def solid(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """An H x W x 3 uint8 image of one colour (numpy broadcasting over a last axis of 3 is
    many times slower than tiling a row)."""
    row = np.tile(np.asarray(colour, dtype=np.uint8), width)
    return np.tile(row, (height, 1)).reshape(height, width, 3)


def _times(pixels: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Each channel of `pixels` times an H x W float32 `weight`, as float32."""
    return np.asarray(cv2.multiply(pixels.astype(np.float32), cv2.merge([weight] * 3)))


def _local_colours(
    pixels: np.ndarray, alpha: np.ndarray, radius: int, index: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Around each listed (flat index) pixel, the colour of the sure old background and of
    the sure subject, each with how much sure pixel it rests on: blurs weighted by the
    layer's share of each pixel (1 - alpha, alpha) to the 8th power, so only the pixels the
    matte is sure of count (a lower power lets the soft edge's own mixed pixels, the other
    layer's colour in them, into the estimate). The blurs span dozens of pixels, so they are
    computed at half resolution (each half-res pixel the mean of a 2 x 2 block) and read back
    at the nearest half-res pixel."""
    height, width = alpha.shape
    half = (max(1, width // 2), max(1, height // 2))
    small = cv2.resize(pixels[: 2 * half[1], : 2 * half[0]], half, interpolation=cv2.INTER_AREA)
    subject = cv2.resize(alpha[: 2 * half[1], : 2 * half[0]], half, interpolation=cv2.INTER_AREA)
    size = (2 * max(1, radius // 2) + 1,) * 2
    at = np.minimum(index // width // 2, half[1] - 1) * half[0] + np.minimum(
        index % width // 2, half[0] - 1
    )
    found = []
    for weight in (np.float32(1.0) - subject, subject):
        for _ in range(3):
            weight = np.asarray(cv2.multiply(weight, weight), dtype=np.float32)
        support = cv2.boxFilter(weight, -1, size)
        estimate = cv2.divide(
            cv2.boxFilter(_times(small, weight), -1, size),
            cv2.merge([np.maximum(support, np.float32(1e-4))] * 3),
        )
        found.append(
            (np.asarray(estimate.reshape(-1, 3)[at], dtype=np.float32), support.reshape(-1)[at])
        )
    return found


def replace_background(
    pixels: np.ndarray, alpha: np.ndarray, background: np.ndarray | tuple[int, int, int]
) -> np.ndarray:
    """Composite the subject over `background` (an RGB colour or an image of the same size).

    `pixels` H x W x 3 uint8 and `alpha` H x W float32 in [0, 1] (1 = subject).
    """
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = alpha.shape
    if isinstance(background, np.ndarray):
        new = np.ascontiguousarray(background, dtype=np.uint8)
    else:
        new = solid(height, width, background)
    # Subject where the matte is (almost) certain, the new background elsewhere; the soft
    # edge in between is un-mixed below.
    out = new.copy()
    cv2.copyTo(pixels, (alpha >= 0.98).view(np.uint8), out)
    flat_alpha = alpha.reshape(-1)
    index = np.flatnonzero((flat_alpha > 0.02) & (flat_alpha < 0.98))
    if index.size == 0:
        return np.asarray(out)
    # Un-mix the edge pixels: observed = a * subject + (1 - a) * old, so the subject over the
    # new background is observed + (1 - a) * (new - old), with the subject kept in range.
    radius = max(3, round(max(height, width) / 30))
    (old, support), (near, near_support) = _local_colours(pixels, alpha, radius, index)
    # (N x 3 arrays of one shape throughout: numpy broadcasts over a last axis of 3 slowly.)
    a = np.repeat(flat_alpha[index][:, None], 3, axis=1)
    rest = np.float32(1.0) - a
    observed = pixels.reshape(-1, 3)[index].astype(np.float32)
    # Where no pure background lies within reach (deep in a mass of hair) there is nothing
    # to un-mix: taking the pixel itself as the old colour makes this a plain blend there.
    thin = support < 1e-3
    old[thin] = observed[thin]
    subject = np.clip((observed - rest * old) / np.maximum(a, np.float32(0.02)), 0, 255)
    # Decontaminate: the more transparent the pixel, the less its un-mixed colour is worth
    # (a matte a little too opaque there leaves the old colour in it: a fringe of the old
    # backdrop round the hair), so it leans on the subject's own colour nearby instead.
    # (A wisp with no sure subject within reach keeps its un-mixed colour.)
    alone = near_support < 1e-3
    near[alone] = subject[alone]
    lean = np.minimum(rest * np.float32(2.0), np.float32(1.0))
    subject += lean * (near - subject)
    mixed = a * subject + rest * new.reshape(-1, 3)[index].astype(np.float32)
    out.reshape(-1, 3)[index] = np.clip(mixed + np.float32(0.5), 0, 255).astype(np.uint8)
    return np.asarray(out)


def blurred_background(pixels: np.ndarray, alpha: np.ndarray, strength: float = 0.03) -> np.ndarray:
    """The photo's own background, blurred, with the subject's colours kept out of the blur."""
    height, width = alpha.shape
    sigma = max(2.0, strength * max(height, width))
    weight = np.float32(1.0) - alpha.astype(np.float32)
    for _ in range(3):  # (1 - alpha) ** 8: only background pixels feed the blur
        weight = np.asarray(cv2.multiply(weight, weight), dtype=np.float32)
    blurred = cv2.GaussianBlur(_times(pixels, weight), (0, 0), sigma)
    norm = cv2.merge([np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), np.float32(1e-3))] * 3)
    return np.clip(cv2.divide(blurred, norm), 0, 255).astype(np.uint8)
