"""The document spec table: self-consistency, the official numbers, lookup and JSON output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest

from appliance.errors import ApplianceError
from appliance.idphoto.specs import (
    SPECS,
    DocumentSpec,
    SpecError,
    UnknownSpecError,
    get_spec,
    list_specs,
)

INCH = 25.4
REQUIRED_IDS = {
    "icao-35x45",
    "us-2x2",
    "ca-50x70",
    "cn-33x48",
    "jp-35x45",
    "in-2x2",
    "uk-35x45",
    "au-35x45",
    "de-35x45",
    "fr-35x45",
}
HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
WHITE = "#FFFFFF"


def _raw_entries() -> list[dict]:
    text = resources.files("appliance.idphoto").joinpath("specs.toml").read_text("utf-8")
    return tomllib.loads(text)["spec"]


ALL = list_specs()


# --- the table as a whole ----------------------------------------------------------------------


def test_table_has_at_least_20_specs_with_unique_ids() -> None:
    raw_ids = [entry["id"] for entry in _raw_entries()]
    assert len(raw_ids) >= 20
    assert len(raw_ids) == len(set(raw_ids)), "duplicate ids in specs.toml"
    assert [s.id for s in ALL] == raw_ids
    assert set(SPECS) == set(raw_ids) and len(SPECS) == len(raw_ids)


def test_required_ids_present() -> None:
    assert set(SPECS) >= REQUIRED_IDS


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.id)
def test_spec_is_self_consistent(spec: DocumentSpec) -> None:
    assert KEBAB.match(spec.id)
    assert spec.name and spec.country and spec.document
    assert spec.source and spec.source_url.startswith("https://")
    assert spec.width_mm > 0 and spec.height_mm > 0 and spec.dpi > 0

    head_lo, head_hi = spec.head_height_mm
    assert 0 < head_lo <= head_hi < spec.height_mm
    eye_lo, eye_hi = spec.eye_line_mm
    assert 0 < eye_lo <= eye_hi < spec.height_mm
    # A head of the smallest allowed size, eyes at the top of the band, must still fit:
    # at least ~45 % of the head lies above the eyes.
    assert eye_hi + 0.45 * head_lo <= spec.height_mm + 1e-9
    for margin in (spec.crown_margin_mm, spec.chin_margin_mm):
        if margin is not None:
            assert 0 <= margin[0] <= margin[1] <= spec.height_mm

    assert spec.backgrounds and all(HEX.match(c) for c in spec.backgrounds)
    assert spec.default_background == spec.backgrounds[0]

    if spec.min_file_kb is not None and spec.max_file_kb is not None:
        assert spec.min_file_kb <= spec.max_file_kb

    w, h = spec.digital_size_px
    assert w > 0 and h > 0
    if spec.digital_px is None:
        assert (w, h) == (
            round(spec.width_mm * spec.dpi / INCH),
            round(spec.height_mm * spec.dpi / INCH),
        )
    if spec.digital_min_px is not None:
        assert w >= spec.digital_min_px[0] and h >= spec.digital_min_px[1]
    if spec.digital_max_px is not None:
        assert w <= spec.digital_max_px[0] and h <= spec.digital_max_px[1]
    if spec.digital_square:
        assert w == h

    hp_lo, hp_hi = spec.head_height_px_range
    ep_lo, ep_hi = spec.eye_line_px_range
    assert 0 < hp_lo <= hp_hi <= h
    assert 0 < ep_lo <= ep_hi < h
    # Rounded inwards: every pixel value in the range maps back inside the mm range.
    scale = h / spec.height_mm
    assert head_lo * scale - 1e-6 <= hp_lo and hp_hi <= head_hi * scale + 1e-6
    assert eye_lo * scale - 1e-6 <= ep_lo and ep_hi <= eye_hi * scale + 1e-6


@pytest.mark.parametrize("spec", [s for s in ALL if s.eye_line_derived], ids=lambda s: s.id)
def test_derived_eye_lines_are_marked_and_inside_the_iso_band(spec: DocumentSpec) -> None:
    assert spec.eye_line_from_bottom_mm is None
    lo, hi = spec.eye_line_mm
    assert 0.5 * spec.height_mm - 1e-9 <= lo <= hi <= 0.7 * spec.height_mm + 1e-9
    assert spec.to_dict()["eye_line_derived"] is True


# --- official numbers ----------------------------------------------------------------------------


def test_icao() -> None:
    s = get_spec("icao-35x45")
    assert s.print_size_mm == (35.0, 45.0)
    assert s.head_height_mm == (32.0, 36.0)


def test_us_passport_inch_rules_stored_exactly_in_mm() -> None:
    s = get_spec("us-2x2")
    assert s.print_size_mm == (2 * INCH, 2 * INCH)
    assert s.head_height_mm == pytest.approx((1 * INCH, 1.375 * INCH), abs=1e-9)
    assert s.eye_line_mm == pytest.approx((1.125 * INCH, 1.375 * INCH), abs=1e-9)
    assert not s.eye_line_derived
    assert s.digital_min_px == (600, 600) and s.digital_max_px == (1200, 1200)
    assert s.digital_square
    assert s.digital_size_px == (600, 600)
    # 600 px over 2 in: 1 in = 300 px, 1 1/8 in = 337.5 -> 338 (inwards), 1 3/8 in = 412.5 -> 412.
    assert s.head_height_px_range == (300, 412)
    assert s.eye_line_px_range == (338, 412)
    assert s.backgrounds[0] == WHITE


def test_us_visa_and_dv_file_caps() -> None:
    visa = get_spec("us-visa-2x2")
    assert visa.max_file_kb == 240 and visa.max_file_bytes == 240_000
    assert visa.digital_min_px == (600, 600) and visa.digital_max_px == (1200, 1200)
    dv = get_spec("us-dv-600")
    assert dv.digital_size_px == (600, 600)
    assert dv.max_file_kb == 240
    # Head 50-69 % and eyes 56-69 % of a 600 px image.
    assert dv.head_height_px_range == (300, 414)
    assert dv.eye_line_px_range == (336, 414)


def test_canada_china_japan_india() -> None:
    ca = get_spec("ca-50x70")
    assert ca.print_size_mm == (50.0, 70.0) and ca.head_height_mm == (31.0, 36.0)
    cn = get_spec("cn-33x48")
    assert cn.print_size_mm == (33.0, 48.0) and cn.head_height_mm == (28.0, 33.0)
    assert cn.crown_margin_mm == (3.0, 5.0) and cn.backgrounds == (WHITE,)
    jp = get_spec("jp-35x45")
    assert jp.print_size_mm == (35.0, 45.0) and jp.head_height_mm == (32.0, 36.0)
    assert jp.crown_margin_mm == (2.0, 6.0)
    # The 2-6 mm top margin narrows the derived eye band below ISO's 70 % (31.5 mm).
    assert jp.eye_line_mm[1] < 0.7 * 45
    india = get_spec("in-2x2")
    assert india.print_size_mm == (2 * INCH, 2 * INCH) and india.backgrounds == (WHITE,)


def test_uk_australia_germany_france() -> None:
    uk = get_spec("uk-35x45")
    assert uk.head_height_mm == (29.0, 34.0)
    assert uk.digital_min_px == (600, 750)
    assert (uk.min_file_kb, uk.max_file_kb) == (50, 10240)
    assert WHITE not in uk.backgrounds  # cream or light grey
    assert get_spec("au-35x45").head_height_mm == (32.0, 36.0)
    assert get_spec("de-35x45").head_height_mm == (32.0, 36.0)
    fr = get_spec("fr-35x45")
    assert fr.head_height_mm == (32.0, 36.0)
    assert WHITE not in fr.backgrounds  # white backgrounds are refused in France


def test_exact_digital_sizes_win_over_dpi() -> None:
    assert get_spec("sg-35x45").digital_size_px == (400, 514)
    cn_visa = get_spec("cn-visa-33x48")
    assert cn_visa.digital_size_px == (354, 472)
    # A 3:4 portal frame keeps the print's vertical scale: 472 px over 48 mm.
    assert cn_visa.px_per_mm == pytest.approx(472 / 48)


# --- lookup and output -------------------------------------------------------------------------


def test_get_spec_normalises_case_and_space() -> None:
    assert get_spec("  US-2x2 ") is get_spec("us-2x2")


def test_unknown_id_lists_close_matches_first_then_all_ids() -> None:
    with pytest.raises(UnknownSpecError) as info:
        get_spec("us2x2")
    err = info.value
    assert isinstance(err, ApplianceError) and isinstance(err, KeyError)
    message = str(err)
    assert not message.startswith("'"), "message must read as prose, not a quoted key"
    assert message.index("us-2x2") < message.index("icao-35x45")
    for spec_id in SPECS:
        assert spec_id in message


def test_to_dict_is_json_ready() -> None:
    data = json.loads(json.dumps([s.to_dict() for s in list_specs()]))
    us = next(d for d in data if d["id"] == "us-2x2")
    assert us["digital_size_px"] == [600, 600]
    assert us["head_height_px_range"] == [300, 412]
    assert us["print_size_mm"] == [50.8, 50.8]
    assert us["source_url"].startswith("https://travel.state.gov/")
    assert "_eye_range" not in us


def test_import_reads_no_file() -> None:
    code = "import appliance.idphoto.specs as s; print(s._load.cache_info().currsize)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        timeout=60,
        env={"PYTHONPATH": str(root)},
    )
    assert out.stdout.strip() == "0"


# --- validation catches bad entries --------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"id": "US_2x2"},
        {"backgrounds": ("white",)},
        {"head_height_mm": (36.0, 32.0)},
        {"head_height_mm": (32.0, 60.0)},
        {"eye_line_from_bottom_mm": (40.0, 52.0)},
        {"digital_px": (500, 500)},
        {"digital_px": (600, 601)},
        {"min_file_kb": 300, "max_file_kb": 240},
        {"source_url": "travel.state.gov"},
    ],
)
def test_invalid_entries_are_refused(change: dict) -> None:
    with pytest.raises(SpecError):
        replace(get_spec("us-visa-2x2"), **change)


def test_impossible_derived_eye_band_is_refused() -> None:
    # A 45 mm photo whose crown must sit 20 mm below the top leaves no room for ISO's eye band.
    with pytest.raises(SpecError):
        replace(get_spec("jp-35x45"), crown_margin_mm=(20.0, 21.0))
