"""Print sheets: copies of one ID photo tiled on photo paper, exact size, with cut guides."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from appliance.errors import ApplianceError
from appliance.imaging.geometry import as_rgb_image

MM_PER_INCH = 25.4

# Portrait (width, height) in mm.
PAPER_SIZES_MM: Mapping[str, tuple[float, float]] = {
    "4x6": (101.6, 152.4),
    "5x7": (127.0, 177.8),
    "a6": (105.0, 148.0),
    "a4": (210.0, 297.0),
}
DEFAULT_PAPER = "4x6"
DEFAULT_DPI = 300
# A safety border for printers that cannot print to the edge; the guides live in it too.
DEFAULT_MARGIN_MM = 2.0
# Space between copies: room for the guides and for an imprecise cut.
DEFAULT_GAP_MM = 2.0
GUIDE_TICK_MM = 3.0
GUIDE_RGB = (128, 128, 128)
WHITE = 255
# A4 at 600 dpi is ~100 MB of RGB already; more than that is not a print sheet for a Pi.
DPI_RANGE = (100, 600)
# A photo whose aspect differs more than this from its physical size would be visibly stretched.
ASPECT_TOLERANCE = 0.02

Orientation = Literal["portrait", "landscape"]
Rect = tuple[int, int, int, int]


class LayoutError(ApplianceError, ValueError):
    """A print sheet cannot be laid out as asked (unknown paper, bad sizes)."""


class PhotoTooLargeError(LayoutError):
    """Not even one copy of the photo fits on the printable area of the paper."""


@dataclass(frozen=True, eq=False)
class PrintSheet:
    """A composed sheet: white RGB pixels, what paper and DPI they are for, where photos sit."""

    image: np.ndarray
    paper: str
    dpi: int
    orientation: Orientation
    paper_size_mm: tuple[float, float]
    photo_size_px: tuple[int, int]
    placements: tuple[Rect, ...]

    @property
    def copies(self) -> int:
        return len(self.placements)


@dataclass(frozen=True)
class _Grid:
    orientation: Orientation
    sheet_w: int
    sheet_h: int
    cols: int
    rows: int

    @property
    def copies(self) -> int:
        return self.cols * self.rows


def mm_to_px(mm: float, dpi: int) -> int:
    """Millimetres to whole pixels at `dpi`, rounded to the nearest pixel."""
    return round(mm * dpi / MM_PER_INCH)


def paper_size_mm(paper: str) -> tuple[float, float]:
    """Portrait (width, height) of a paper name; raises LayoutError naming the valid ones."""
    key = paper.strip().lower()
    if key not in PAPER_SIZES_MM:
        raise LayoutError(f"unknown paper {paper!r}: choose one of {', '.join(PAPER_SIZES_MM)}")
    return PAPER_SIZES_MM[key]


def compose_sheet(
    photo: np.ndarray,
    photo_size_mm: tuple[float, float],
    paper: str = DEFAULT_PAPER,
    dpi: int = DEFAULT_DPI,
    gap_mm: float = DEFAULT_GAP_MM,
    margin_mm: float = DEFAULT_MARGIN_MM,
    guides: bool = True,
) -> PrintSheet:
    """Tile as many copies of `photo` as fit on `paper`, each exactly `photo_size_mm` at `dpi`.

    Both paper orientations are tried and the one holding more copies wins (portrait on a tie).
    The grid is centred; cut guides are short grey ticks in the margins and gaps, in line with
    every photo edge and never over a photo.
    """
    pixels = as_rgb_image(photo)
    key = paper.strip().lower()
    paper_mm = paper_size_mm(key)
    _check_dpi(dpi)
    width_mm, height_mm = _check_lengths(photo_size_mm, gap_mm, margin_mm)
    _check_aspect(pixels, width_mm, height_mm)

    pw, ph = mm_to_px(width_mm, dpi), mm_to_px(height_mm, dpi)
    gap, margin = mm_to_px(gap_mm, dpi), mm_to_px(margin_mm, dpi)
    grid = _best_grid(paper_mm, dpi, pw, ph, gap, margin)
    if grid.copies == 0:
        short, long_ = paper_mm
        raise PhotoTooLargeError(
            f"a {width_mm:g} x {height_mm:g} mm photo does not fit on {key} paper "
            f"({short:g} x {long_:g} mm with {margin_mm:g} mm margins): choose a larger paper "
            f"({', '.join(PAPER_SIZES_MM)}) or smaller margins"
        )

    placements = _placements(grid, pw, ph, gap)
    sheet = np.full((grid.sheet_h, grid.sheet_w, 3), WHITE, dtype=np.uint8)
    if guides:
        # Drawn before the photos so a photo always covers anything under it.
        _draw_guides(
            sheet, placements, thickness=max(1, round(dpi / 300)), tick=mm_to_px(GUIDE_TICK_MM, dpi)
        )
    tile = _resize(pixels, pw, ph)
    for x, y, w, h in placements:
        sheet[y : y + h, x : x + w] = tile
    portrait = paper_mm if grid.orientation == "portrait" else (paper_mm[1], paper_mm[0])
    return PrintSheet(
        image=sheet,
        paper=key,
        dpi=dpi,
        orientation=grid.orientation,
        paper_size_mm=portrait,
        photo_size_px=(pw, ph),
        placements=tuple(placements),
    )


# --- validation ------------------------------------------------------------------------------


def _check_dpi(dpi: int) -> None:
    lo, hi = DPI_RANGE
    if not isinstance(dpi, int) or isinstance(dpi, bool) or not lo <= dpi <= hi:
        raise LayoutError(f"sheet dpi must be a whole number from {lo} to {hi}, got {dpi!r}")


def _check_lengths(
    photo_size_mm: tuple[float, float], gap_mm: float, margin_mm: float
) -> tuple[float, float]:
    if len(photo_size_mm) != 2:
        raise LayoutError(f"photo_size_mm must be (width, height), got {photo_size_mm!r}")
    width_mm, height_mm = (float(v) for v in photo_size_mm)
    if not all(math.isfinite(v) and v > 0 for v in (width_mm, height_mm)):
        raise LayoutError(f"photo size must be positive millimetres, got {photo_size_mm!r}")
    for name, value in (("gap_mm", gap_mm), ("margin_mm", margin_mm)):
        if not (math.isfinite(value) and value >= 0):
            raise LayoutError(f"{name} must be zero or more millimetres, got {value!r}")
    return width_mm, height_mm


def _check_aspect(pixels: np.ndarray, width_mm: float, height_mm: float) -> None:
    h, w = pixels.shape[:2]
    ratio = (w / h) / (width_mm / height_mm)
    if abs(ratio - 1.0) > ASPECT_TOLERANCE:
        raise LayoutError(
            f"photo is {w}x{h} px but the print is {width_mm:g} x {height_mm:g} mm: the aspect "
            f"ratios differ by {abs(ratio - 1.0):.0%}, so it would print stretched; crop it to "
            "the print size first"
        )


# --- geometry --------------------------------------------------------------------------------


def _fit(length: int, item: int, gap: int, margin: int) -> int:
    # n items and n-1 gaps must fit in the length left after both margins.
    usable = length - 2 * margin
    return max(0, (usable + gap) // (item + gap)) if usable >= item else 0


def _best_grid(
    paper_mm: tuple[float, float], dpi: int, pw: int, ph: int, gap: int, margin: int
) -> _Grid:
    short, long_ = mm_to_px(paper_mm[0], dpi), mm_to_px(paper_mm[1], dpi)
    options = [
        _Grid("portrait", short, long_, _fit(short, pw, gap, margin), _fit(long_, ph, gap, margin)),
        _Grid(
            "landscape", long_, short, _fit(long_, pw, gap, margin), _fit(short, ph, gap, margin)
        ),
    ]
    # max() keeps the first of equals, so portrait wins a tie.
    return max(options, key=lambda g: g.copies)


def _placements(grid: _Grid, pw: int, ph: int, gap: int) -> list[Rect]:
    block_w = grid.cols * pw + (grid.cols - 1) * gap
    block_h = grid.rows * ph + (grid.rows - 1) * gap
    x0 = (grid.sheet_w - block_w) // 2
    y0 = (grid.sheet_h - block_h) // 2
    return [
        (x0 + c * (pw + gap), y0 + r * (ph + gap), pw, ph)
        for r in range(grid.rows)
        for c in range(grid.cols)
    ]


def _edge_lines(starts: list[int], size: int, t: int) -> list[tuple[int, int]]:
    """Pixel spans [a, b) of guide lines just outside both edges of each photo span."""
    lines = []
    for s in sorted(set(starts)):
        lines.append((s - t, s))
        lines.append((s + size, s + size + t))
    return lines


def _whitespace_spans(starts: list[int], size: int, total: int, tick: int) -> list[tuple[int, int]]:
    """Spans [a, b) across the grid where no photo is: ticks in both margins, full inner gaps."""
    ordered = sorted(set(starts))
    spans = [(ordered[0] - tick, ordered[0]), (ordered[-1] + size, ordered[-1] + size + tick)]
    spans += [(a + size, b) for a, b in itertools.pairwise(ordered) if b > a + size]
    return [(max(0, a), min(total, b)) for a, b in spans if min(total, b) > max(0, a)]


def _draw_guides(sheet: np.ndarray, placements: list[Rect], thickness: int, tick: int) -> None:
    sheet_h, sheet_w = sheet.shape[:2]
    xs = [x for x, _, _, _ in placements]
    ys = [y for _, y, _, _ in placements]
    pw, ph = placements[0][2], placements[0][3]
    colour = np.array(GUIDE_RGB, dtype=np.uint8)
    # Vertical cut lines (left/right photo edges), drawn only across rows free of photos.
    for xa, xb in _edge_lines(xs, pw, thickness):
        xa, xb = max(0, xa), min(sheet_w, xb)
        if xb <= xa:
            continue
        for ya, yb in _whitespace_spans(ys, ph, sheet_h, tick):
            sheet[ya:yb, xa:xb] = colour
    # Horizontal cut lines (top/bottom photo edges), across columns free of photos.
    for ya, yb in _edge_lines(ys, ph, thickness):
        ya, yb = max(0, ya), min(sheet_h, yb)
        if yb <= ya:
            continue
        for xa, xb in _whitespace_spans(xs, pw, sheet_w, tick):
            sheet[ya:yb, xa:xb] = colour


def _resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    if (w, h) == (width, height):
        return pixels
    # INTER_AREA averages when shrinking (no moiré); cubic when a small file must grow.
    shrinking = w >= width and h >= height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(pixels, (width, height), interpolation=interpolation))
