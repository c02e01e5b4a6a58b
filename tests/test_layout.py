"""Print sheets: copies per paper, exact photo size, placement, cut guides, errors."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.idphoto.specs import get_spec
from appliance.imaging.layout import (
    GUIDE_RGB,
    LayoutError,
    PhotoTooLargeError,
    PrintSheet,
    compose_sheet,
)

INCH = 25.4
# Paper sizes by hand (portrait width x height, mm).
PAPERS = {
    "4x6": (4 * INCH, 6 * INCH),
    "5x7": (5 * INCH, 7 * INCH),
    "a6": (105, 148),
    "a4": (210, 297),
}
MARGIN_MM = 2.0
GAP_MM = 2.0


def _fit_mm(length: float, item: float) -> int:
    """How many items fit along `length` mm with MARGIN_MM at both ends and GAP_MM between."""
    return math.floor((length - 2 * MARGIN_MM + GAP_MM) / (item + GAP_MM))


def _expected(paper: str, size_mm: tuple[float, float]) -> tuple[int, str]:
    short, long_ = PAPERS[paper]
    w, h = size_mm
    portrait = _fit_mm(short, w) * _fit_mm(long_, h)
    landscape = _fit_mm(long_, w) * _fit_mm(short, h)
    return (portrait, "portrait") if portrait >= landscape else (landscape, "landscape")


# Worked by hand from the geometry above (e.g. 4x6 landscape: 4 x 2 of 35 x 45 mm).
HAND_COUNTS = {
    ("4x6", "icao-35x45"): 8,
    ("4x6", "us-2x2"): 2,
    ("5x7", "icao-35x45"): 9,
    ("5x7", "us-2x2"): 6,
    ("a6", "icao-35x45"): 6,
    ("a6", "us-2x2"): 2,
    ("a4", "icao-35x45"): 30,
    ("a4", "us-2x2"): 15,
}


def _photo(size_mm: tuple[float, float], px_per_mm: float = 20.0) -> np.ndarray:
    """A textured photo larger than print size (so the sheet shrinks it), never pure white/grey."""
    w, h = round(size_mm[0] * px_per_mm), round(size_mm[1] * px_per_mm)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = 40 + (xx * 150 // w)
    img[..., 1] = 30 + (yy * 120 // h)
    img[..., 2] = 200
    return img


def _sheet(paper: str, spec_id: str, **kwargs: object) -> tuple[PrintSheet, np.ndarray]:
    size = get_spec(spec_id).print_size_mm
    photo = _photo(size)
    return compose_sheet(photo, size, paper, **kwargs), photo  # type: ignore[arg-type]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _photo_mask(sheet: PrintSheet) -> np.ndarray:
    mask = np.zeros(sheet.image.shape[:2], bool)
    for x, y, w, h in sheet.placements:
        mask[y : y + h, x : x + w] = True
    return mask


CASES = sorted(HAND_COUNTS)


@pytest.mark.parametrize(("paper", "spec_id"), CASES)
def test_copies_match_hand_geometry(paper: str, spec_id: str) -> None:
    count, orientation = _expected(paper, get_spec(spec_id).print_size_mm)
    assert count == HAND_COUNTS[(paper, spec_id)]  # the helper agrees with the worked numbers
    sheet, _ = _sheet(paper, spec_id)
    assert sheet.copies == count == len(sheet.placements)
    assert sheet.orientation == orientation
    assert sheet.paper == paper and sheet.dpi == 300


@pytest.mark.parametrize(("paper", "spec_id"), CASES)
def test_sheet_size_and_orientation(paper: str, spec_id: str) -> None:
    sheet, _ = _sheet(paper, spec_id)
    short, long_ = (round(v * 300 / INCH) for v in PAPERS[paper])
    expected_hw = (long_, short) if sheet.orientation == "portrait" else (short, long_)
    assert sheet.image.shape == (*expected_hw, 3) and sheet.image.dtype == np.uint8
    w_mm, h_mm = sheet.paper_size_mm
    assert (w_mm > h_mm) == (sheet.orientation == "landscape")


@pytest.mark.parametrize(("paper", "spec_id"), CASES)
def test_placements_exact_size_inside_centred_without_overlap(paper: str, spec_id: str) -> None:
    sheet, _ = _sheet(paper, spec_id)
    w_mm, h_mm = get_spec(spec_id).print_size_mm
    pw, ph = round(w_mm * 300 / INCH), round(h_mm * 300 / INCH)
    assert sheet.photo_size_px == (pw, ph)
    sheet_h, sheet_w = sheet.image.shape[:2]
    margin = round(MARGIN_MM * 300 / INCH)
    gap = round(GAP_MM * 300 / INCH)
    for x, y, w, h in sheet.placements:
        assert (w, h) == (pw, ph)
        assert margin <= x and x + w <= sheet_w - margin
        assert margin <= y and y + h <= sheet_h - margin
    for a, b in itertools.combinations(sheet.placements, 2):
        assert not _overlap(a, b)
        # Neighbours in a row or a column are exactly one gap apart.
        if a[1] == b[1]:
            assert abs(a[0] - b[0]) >= pw + gap
        if a[0] == b[0]:
            assert abs(a[1] - b[1]) >= ph + gap
    left = min(x for x, *_ in sheet.placements)
    right = sheet_w - max(x + w for x, _, w, _ in sheet.placements)
    top = min(y for _, y, _, _ in sheet.placements)
    bottom = sheet_h - max(y + h for _, y, _, h in sheet.placements)
    assert abs(left - right) <= 1 and abs(top - bottom) <= 1


@pytest.mark.parametrize(("paper", "spec_id"), CASES)
def test_photo_pixels_untouched_by_guides(paper: str, spec_id: str) -> None:
    sheet, photo = _sheet(paper, spec_id)
    pw, ph = sheet.photo_size_px
    tile = cv2.resize(photo, (pw, ph), interpolation=cv2.INTER_AREA)  # shrinking -> INTER_AREA
    for x, y, w, h in sheet.placements:
        assert np.array_equal(sheet.image[y : y + h, x : x + w], tile)


@pytest.mark.parametrize(("paper", "spec_id"), CASES)
def test_guides_only_outside_photos_and_aligned_with_edges(paper: str, spec_id: str) -> None:
    sheet, _ = _sheet(paper, spec_id)
    img = sheet.image
    outside = ~_photo_mask(sheet)
    marked = outside & np.any(img != 255, axis=2)
    assert marked.any(), "no cut guides drawn"
    # Every non-white pixel outside the photos is guide grey ...
    assert np.all(img[marked] == np.array(GUIDE_RGB, np.uint8))
    # ... and lies on a line just outside a photo edge (1 px at 300 dpi).
    rects = sheet.placements
    edge_cols = {x - 1 for x, *_ in rects} | {x + w for x, _, w, _ in rects}
    edge_rows = {y - 1 for _, y, _, _ in rects} | {y + h for _, y, _, h in rects}
    ys, xs = np.nonzero(marked)
    on_edge = [
        x in edge_cols or y in edge_rows for x, y in zip(xs.tolist(), ys.tolist(), strict=True)
    ]
    assert all(on_edge)


@pytest.mark.parametrize(("paper", "spec_id"), CASES)
def test_every_photo_edge_has_guides_in_the_margins(paper: str, spec_id: str) -> None:
    sheet, _ = _sheet(paper, spec_id)
    img = sheet.image
    grey = np.all(img == np.array(GUIDE_RGB, np.uint8), axis=2)
    top = min(y for _, y, _, _ in sheet.placements)
    bottom = max(y + h for _, y, _, h in sheet.placements)
    left = min(x for x, *_ in sheet.placements)
    right = max(x + w for x, _, w, _ in sheet.placements)
    for x, y, w, h in sheet.placements:
        for col in (x - 1, x + w):  # vertical edges: ticks in the top and bottom margins
            assert grey[:top, col].any() and grey[bottom:, col].any()
        for row in (y - 1, y + h):  # horizontal edges: ticks in the left and right margins
            assert grey[row, :left].any() and grey[row, right:].any()


@pytest.mark.parametrize(("paper", "spec_id"), CASES)
def test_guides_are_ticks_not_lines_along_photo_sides(paper: str, spec_id: str) -> None:
    sheet, _ = _sheet(paper, spec_id)
    img = sheet.image
    for x, y, w, h in sheet.placements:
        # Beside a photo (not past its corners) the paper stays white: guides only mark edges.
        assert np.all(img[y : y + h, x - 1] == 255) and np.all(img[y : y + h, x + w] == 255)
        assert np.all(img[y - 1, x : x + w] == 255) and np.all(img[y + h, x : x + w] == 255)


def test_guides_in_the_gap_between_rows() -> None:
    sheet, _ = _sheet("a4", "icao-35x45")
    grey = np.all(sheet.image == np.array(GUIDE_RGB, np.uint8), axis=2)
    x, y, w, h = sheet.placements[0]
    below = next(p for p in sheet.placements if p[0] == x and p[1] > y)
    gap_rows = slice(y + h, below[1])
    assert grey[gap_rows, x - 1].all() and grey[gap_rows, x + w].all()


def test_no_guides_when_disabled() -> None:
    sheet, _ = _sheet("4x6", "icao-35x45", guides=False)
    outside = ~_photo_mask(sheet)
    assert np.all(sheet.image[outside] == 255)


def test_photo_size_exact_at_600_dpi_with_thicker_guides() -> None:
    sheet, _ = _sheet("4x6", "icao-35x45", dpi=600)
    assert sheet.photo_size_px == (827, 1063)  # 35 and 45 mm at 600 dpi
    assert sheet.dpi == 600 and sheet.copies == 8
    x, y, _, _ = sheet.placements[0]
    grey = np.all(sheet.image == np.array(GUIDE_RGB, np.uint8), axis=2)
    assert grey[y - 5, x - 1] and grey[y - 5, x - 2] and not grey[y - 5, x - 3]


def test_enlarging_a_small_photo_still_gives_the_exact_size() -> None:
    small = np.full((90, 70, 3), 90, np.uint8)  # 35 x 45 mm at 2 px/mm
    sheet = compose_sheet(small, (35, 45), "5x7")
    assert all((w, h) == (413, 531) for _, _, w, h in sheet.placements)


def test_spec_print_size_round_trip() -> None:
    spec = get_spec("cn-33x48")
    sheet = compose_sheet(_photo(spec.print_size_mm), spec.print_size_mm)
    assert sheet.photo_size_px == (round(33 * 300 / INCH), round(48 * 300 / INCH))


# --- errors ------------------------------------------------------------------------------------


def test_unknown_paper_names_the_valid_ones() -> None:
    with pytest.raises(LayoutError) as info:
        compose_sheet(_photo((35, 45)), (35, 45), "letter")
    err = info.value
    assert isinstance(err, ApplianceError) and isinstance(err, ValueError)
    for name in PAPERS:
        assert name in str(err)


def test_paper_name_is_case_insensitive() -> None:
    assert compose_sheet(_photo((35, 45)), (35, 45), "A4").paper == "a4"


def test_oversized_photo_is_refused() -> None:
    with pytest.raises(PhotoTooLargeError) as info:
        compose_sheet(_photo((110, 160), 2.0), (110, 160), "4x6")
    assert isinstance(info.value, LayoutError) and isinstance(info.value, ApplianceError)
    assert "4x6" in str(info.value)


def test_photo_just_too_big_for_the_margins_is_refused() -> None:
    # 100 mm fits a 101.6 mm side only without the 2 mm margins.
    with pytest.raises(PhotoTooLargeError):
        compose_sheet(_photo((100, 150), 2.0), (100, 150), "4x6")
    sheet = compose_sheet(_photo((100, 150), 2.0), (100, 150), "4x6", margin_mm=0.5)
    assert sheet.copies == 1


@pytest.mark.parametrize(
    ("photo_size", "kwargs"),
    [
        ((35, 45), {"dpi": 50}),
        ((35, 45), {"dpi": 1200}),
        ((35, 45), {"gap_mm": -1.0}),
        ((35, 45), {"margin_mm": float("nan")}),
        ((0, 45), {}),
    ],
)
def test_bad_arguments_are_refused(photo_size: tuple[float, float], kwargs: dict) -> None:
    with pytest.raises(LayoutError):
        compose_sheet(_photo((35, 45)), photo_size, "4x6", **kwargs)


def test_stretched_photo_is_refused() -> None:
    square = np.full((600, 600, 3), 90, np.uint8)
    with pytest.raises(LayoutError, match="stretched"):
        compose_sheet(square, (35, 45))


def test_non_rgb_input_is_refused() -> None:
    with pytest.raises(ApplianceError):
        compose_sheet(np.zeros((531, 413), np.uint8), (35, 45))
