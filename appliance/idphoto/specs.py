"""Document photo specifications: sizes, head and eye geometry, backgrounds, file limits.

The table lives in ``specs.toml`` beside this module (one entry per document, each citing its
authority) and is read lazily, on the first lookup, never at import time.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from typing import Any

from appliance.errors import ApplianceError

MM_PER_INCH = 25.4
_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_HEX_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")

# ISO/IEC 19794-5 Annex A best practice: eye line 50-70 % of the image height from the bottom.
ISO_EYE_BAND = (0.50, 0.70)
# Crown-to-eye distance as a share of chin-to-crown: the eyes sit near the middle of the head;
# the band covers adult faces with and without hair volume.
CROWN_TO_EYE = (0.45, 0.55)

Range = tuple[float, float]
Size = tuple[int, int]
# What an authority says about spectacles: "forbidden" (medical exemptions only, with a
# certificate), "no-glare" (clear lenses, frames off the eyes, no glare) or "allowed".
GLASSES_RULES = ("forbidden", "no-glare", "allowed")
# Head coverings: "religious" (only for religious reasons, the face from the bottom of the
# chin to the top of the forehead and its edges showing) or "none" (never).
HEAD_COVERING_RULES = ("religious", "none")


class SpecError(ApplianceError, ValueError):
    """An entry of the document spec table is invalid (a bug in the table, not user input)."""


class UnknownSpecError(ApplianceError, KeyError):
    """No document spec has the requested id."""

    def __str__(self) -> str:
        # KeyError would show the message in quotes; this one is meant for a person.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class DocumentSpec:
    """One document's photo rules, in millimetres, as its authority states them."""

    id: str
    name: str
    country: str
    document: str
    width_mm: float
    height_mm: float
    dpi: int
    head_height_mm: Range
    backgrounds: tuple[str, ...]
    source: str
    source_url: str
    notes: str = ""
    head_height_derived: bool = False
    eye_line_from_bottom_mm: Range | None = None
    crown_margin_mm: Range | None = None
    chin_margin_mm: Range | None = None
    digital_px: Size | None = None
    digital_min_px: Size | None = None
    digital_max_px: Size | None = None
    digital_square: bool = False
    min_file_kb: int | None = None
    max_file_kb: int | None = None
    # ICAO 9303 / ISO/IEC 19794-5 best practice unless the authority says otherwise.
    glasses: str = "no-glare"
    head_covering: str = "religious"
    _eye_range: Range = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate(self)
        eye = self.eye_line_from_bottom_mm or _derived_eye_line(self)
        object.__setattr__(self, "_eye_range", eye)
        _check_range(self, "eye line", eye, 0.0, self.height_mm)

    # --- physical --------------------------------------------------------------------------

    @property
    def print_size_mm(self) -> tuple[float, float]:
        """(width, height) of the printed photo in mm."""
        return (self.width_mm, self.height_mm)

    @property
    def eye_line_mm(self) -> Range:
        """Eye line from the bottom edge in mm: the authority's range, else the derived one."""
        return self._eye_range

    @property
    def eye_line_derived(self) -> bool:
        """True when the authority sets no eye line and :attr:`eye_line_mm` is derived."""
        return self.eye_line_from_bottom_mm is None

    @property
    def default_background(self) -> str:
        return self.backgrounds[0]

    # --- digital ---------------------------------------------------------------------------

    @property
    def digital_size_px(self) -> Size:
        """(width, height) of the digital file: the authority's exact size, else mm at ``dpi``."""
        if self.digital_px is not None:
            return self.digital_px
        return (_mm_to_px(self.width_mm, self.dpi), _mm_to_px(self.height_mm, self.dpi))

    @property
    def px_per_mm(self) -> float:
        """Vertical scale of the digital file; a digital frame of another aspect (some portals
        want 3:4) keeps the print's vertical geometry and is wider or narrower at the sides."""
        return self.digital_size_px[1] / self.height_mm

    @property
    def head_height_px_range(self) -> Size:
        """Chin-to-crown range in digital px, rounded inwards so both ends stay compliant."""
        return _inward_px(self.head_height_mm, self.px_per_mm)

    @property
    def eye_line_px_range(self) -> Size:
        """Eye line measured from the bottom edge, in digital px, rounded inwards."""
        return _inward_px(self.eye_line_mm, self.px_per_mm)

    @property
    def max_file_bytes(self) -> int | None:
        # Authorities rarely say whether a KB is 1000 or 1024 bytes: cap at the smaller.
        return None if self.max_file_kb is None else self.max_file_kb * 1000

    @property
    def min_file_bytes(self) -> int | None:
        # ... and floor at the larger.
        return None if self.min_file_kb is None else self.min_file_kb * 1024

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view: every field plus the computed pixel geometry."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out["print_size_mm"] = list(self.print_size_mm)
        out["eye_line_mm"] = list(self.eye_line_mm)
        out["eye_line_derived"] = self.eye_line_derived
        out["digital_size_px"] = list(self.digital_size_px)
        out["head_height_px_range"] = list(self.head_height_px_range)
        out["eye_line_px_range"] = list(self.eye_line_px_range)
        return out


# --- helpers -------------------------------------------------------------------------------


def _mm_to_px(mm: float, dpi: float) -> int:
    return round(mm * dpi / MM_PER_INCH)


def _inward_px(mm_range: Range, scale: float) -> Size:
    lo, hi = mm_range
    # The epsilon keeps exact products (e.g. 69 % of 600 px) from flooring to one less.
    return (math.ceil(lo * scale - 1e-6), math.floor(hi * scale + 1e-6))


def _derived_eye_line(spec: DocumentSpec) -> Range:
    """ISO/IEC 19794-5's eye band, narrowed to where a head of the allowed size fits within
    the authority's crown and chin margins (crown-to-eye taken as 45-55 % of the head)."""
    h = spec.height_mm
    head_lo, head_hi = spec.head_height_mm
    c_lo, c_hi = CROWN_TO_EYE
    top_lo, top_hi = spec.crown_margin_mm or (0.0, h)
    lo = max(ISO_EYE_BAND[0] * h, h - top_hi - c_hi * head_hi, (1 - c_hi) * head_lo)
    hi = min(ISO_EYE_BAND[1] * h, h - top_lo - c_lo * head_lo)
    if spec.chin_margin_mm is not None:
        chin_lo, chin_hi = spec.chin_margin_mm
        lo = max(lo, chin_lo + (1 - c_hi) * head_lo)
        hi = min(hi, chin_hi + (1 - c_lo) * head_hi)
    return (round(lo, 2), round(hi, 2))


def _check_range(spec: DocumentSpec, what: str, rng: Range, low: float, high: float) -> None:
    if len(rng) != 2 or not rng[0] <= rng[1]:
        raise SpecError(f"spec {spec.id!r}: {what} range {rng} must be (min, max) with min <= max")
    if rng[0] < low or rng[1] > high:
        raise SpecError(f"spec {spec.id!r}: {what} range {rng} must lie within {low}..{high} mm")


def _validate(spec: DocumentSpec) -> None:
    sid = spec.id
    if not _ID_RE.match(sid):
        raise SpecError(f"spec id {sid!r} must be lowercase-kebab (a-z, 0-9, single dashes)")
    for what, value in (("width_mm", spec.width_mm), ("height_mm", spec.height_mm)):
        if not (math.isfinite(value) and value > 0):
            raise SpecError(f"spec {sid!r}: {what} must be a positive number, got {value}")
    if not 72 <= spec.dpi <= 2400:
        raise SpecError(f"spec {sid!r}: dpi {spec.dpi} is outside 72..2400")
    if not spec.source or not spec.source_url.startswith("https://"):
        raise SpecError(f"spec {sid!r}: needs a source title and an https:// source_url")
    _check_range(spec, "head height", spec.head_height_mm, 1.0, spec.height_mm)
    for what, margin in (
        ("crown margin", spec.crown_margin_mm),
        ("chin margin", spec.chin_margin_mm),
    ):
        if margin is not None:
            _check_range(spec, what, margin, 0.0, spec.height_mm)
    if not spec.backgrounds or not all(_HEX_RE.match(c) for c in spec.backgrounds):
        raise SpecError(
            f"spec {sid!r}: backgrounds must be #RRGGBB colours, got {spec.backgrounds}"
        )
    if spec.glasses not in GLASSES_RULES:
        raise SpecError(f"spec {sid!r}: glasses must be one of {GLASSES_RULES}")
    if spec.head_covering not in HEAD_COVERING_RULES:
        raise SpecError(f"spec {sid!r}: head_covering must be one of {HEAD_COVERING_RULES}")
    kb_lo, kb_hi = spec.min_file_kb, spec.max_file_kb
    if kb_lo is not None and kb_hi is not None and not 0 < kb_lo <= kb_hi:
        raise SpecError(f"spec {sid!r}: need 0 < min_file_kb <= max_file_kb")
    _validate_digital(spec)


def _validate_digital(spec: DocumentSpec) -> None:
    sid = spec.id
    lo, hi = spec.digital_min_px, spec.digital_max_px
    for what, size in (
        ("digital_px", spec.digital_px),
        ("digital_min_px", lo),
        ("digital_max_px", hi),
    ):
        if size is not None and (len(size) != 2 or min(size) <= 0):
            raise SpecError(f"spec {sid!r}: {what} must be (width, height) > 0, got {size}")
    if lo is not None and hi is not None and (lo[0] > hi[0] or lo[1] > hi[1]):
        raise SpecError(f"spec {sid!r}: digital_min_px {lo} exceeds digital_max_px {hi}")
    w, h = spec.digital_size_px
    # Catches a dpi that does not fit the authority's pixel window.
    if lo is not None and (w < lo[0] or h < lo[1]):
        raise SpecError(f"spec {sid!r}: digital size {w}x{h} is below the minimum {lo}")
    if hi is not None and (w > hi[0] or h > hi[1]):
        raise SpecError(f"spec {sid!r}: digital size {w}x{h} is above the maximum {hi}")
    if spec.digital_square and w != h:
        raise SpecError(f"spec {sid!r}: digital size {w}x{h} must be square")


# --- the table -------------------------------------------------------------------------------

_TUPLE_FIELDS = {
    "head_height_mm",
    "eye_line_from_bottom_mm",
    "crown_margin_mm",
    "chin_margin_mm",
    "backgrounds",
    "digital_px",
    "digital_min_px",
    "digital_max_px",
}
_FIELD_NAMES = {f.name for f in fields(DocumentSpec) if f.init}


def _spec_from_entry(entry: dict[str, Any]) -> DocumentSpec:
    unknown = set(entry) - _FIELD_NAMES
    if unknown:
        raise SpecError(f"spec {entry.get('id')!r}: unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {k: tuple(v) if k in _TUPLE_FIELDS else v for k, v in entry.items()}
    try:
        return DocumentSpec(**values)
    except TypeError as exc:  # a missing key or a value of the wrong type
        raise SpecError(f"spec {entry.get('id')!r}: {exc}") from exc


@cache
def _load() -> dict[str, DocumentSpec]:
    raw = resources.files("appliance.idphoto").joinpath("specs.toml").read_text("utf-8")
    table: dict[str, DocumentSpec] = {}
    for entry in tomllib.loads(raw).get("spec", []):
        spec = _spec_from_entry(entry)
        if spec.id in table:
            raise SpecError(f"spec id {spec.id!r} appears twice in specs.toml")
        table[spec.id] = spec
    return table


class _SpecTable(Mapping[str, DocumentSpec]):
    """Read-only mapping id -> spec that loads the table on first use."""

    def __getitem__(self, spec_id: str) -> DocumentSpec:
        return _load()[spec_id]

    def __iter__(self) -> Iterator[str]:
        return iter(_load())

    def __len__(self) -> int:
        return len(_load())

    def __repr__(self) -> str:
        return f"<document specs: {', '.join(self)}>"


SPECS: Mapping[str, DocumentSpec] = _SpecTable()


def list_specs() -> list[DocumentSpec]:
    """Every spec, in table order (ICAO first, then by region as the table lists them)."""
    return list(_load().values())


def get_spec(spec_id: str) -> DocumentSpec:
    """The spec with this id; raises :class:`UnknownSpecError` naming the valid ids."""
    table = _load()
    key = spec_id.strip().lower()
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, table, n=3, cutoff=0.5)
    rest = [i for i in table if i not in close]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    # The id the caller sent is not repeated back: messages never echo input.
    raise UnknownSpecError(f"unknown document spec.{hint} Valid ids: {', '.join(close + rest)}")
