"""The models the appliance runs, where each comes from, and how its input is prepared.

Every model is MediaPipe's (Apache-2.0), taken from the pinned `mediapipe==0.10.14` wheel and
verified by sha256 before it is loaded. The sample portraits (public domain / BSD-licensed
scikit-image data, and a public-domain US Navy portrait from matplotlib's sample data) come the
same way from pinned wheels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.assets import PinnedFile, PinnedWheel, verify_file
from appliance.errors import ModelMissingError

MEDIAPIPE_WHEEL = PinnedWheel(
    requirement="mediapipe==0.10.14",
    filename="mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
)

# Its sample data holds the US Navy's public-domain portrait of Commodore Grace Hopper (large
# spectacles, a peaked uniform cap, a flag beside her): the real photo the face checks are
# measured on for glasses and head coverings.
MATPLOTLIB_WHEEL = PinnedWheel(
    requirement="matplotlib==3.11.2",
    filename="matplotlib-3.11.2-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
    sha256="07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
)

SKIMAGE_WHEEL = PinnedWheel(
    requirement="scikit-image==0.25.2",
    filename="scikit_image-0.25.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641",
)


@dataclass(frozen=True)
class ModelSpec:
    """A model: its pinned file, what it is for, and how pixels map to its input range."""

    name: str
    file: PinnedFile
    purpose: str
    # Input pixels in [0, 255] are mapped linearly onto [input_min, input_max].
    input_min: float
    input_max: float


def _mp(name: str, member: str, sha256: str, size: int) -> PinnedFile:
    return PinnedFile(name, MEDIAPIPE_WHEEL, f"mediapipe/modules/{member}", sha256, size)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "face_detection_short_range",
            _mp(
                "face_detection_short_range.tflite",
                "face_detection/face_detection_short_range.tflite",
                "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
                229714,
            ),
            "BlazeFace short range: faces within about 2 m, box and 6 keypoints",
            -1.0,
            1.0,
        ),
        ModelSpec(
            "face_detection_full_range",
            _mp(
                "face_detection_full_range_sparse.tflite",
                "face_detection/face_detection_full_range_sparse.tflite",
                "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
                676746,
            ),
            "BlazeFace full range (sparse): smaller faces, up to about 5 m",
            -1.0,
            1.0,
        ),
        ModelSpec(
            "face_landmark",
            _mp(
                "face_landmark.tflite",
                "face_landmark/face_landmark.tflite",
                "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
                1242398,
            ),
            "Face mesh: 468 3-D landmarks on a 192x192 face crop",
            0.0,
            1.0,
        ),
        ModelSpec(
            "selfie_segmentation",
            _mp(
                "selfie_segmentation.tflite",
                "selfie_segmentation/selfie_segmentation.tflite",
                "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
                249505,
            ),
            "Portrait segmentation, 256x256 (general, portrait-shaped input)",
            0.0,
            1.0,
        ),
        ModelSpec(
            "selfie_segmentation_landscape",
            _mp(
                "selfie_segmentation_landscape.tflite",
                "selfie_segmentation/selfie_segmentation_landscape.tflite",
                "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
                250145,
            ),
            "Portrait segmentation, 144x256 (landscape input, faster)",
            0.0,
            1.0,
        ),
    )
}

# Kept beside the models: the Apache-2.0 licence they are distributed under.
MEDIAPIPE_LICENSE = PinnedFile(
    "LICENSE.mediapipe.txt",
    MEDIAPIPE_WHEEL,
    "mediapipe-0.10.14.dist-info/LICENSE",
    "8707eef0533987efc5b155d64761eeb6e20793f50b9bd1a68dad1cf4719d0ed8",
    12331,
)


def _sk(name: str, sha256: str, size: int) -> PinnedFile:
    return PinnedFile(name, SKIMAGE_WHEEL, f"skimage/data/{name}", sha256, size)


# Public-domain NASA and US Navy portraits and two no-face negatives, for the demo and for
# tests on a fresh clone. The scikit-image files are the same bytes as the copies in
# ../shared/data/portraits/.
SAMPLES: tuple[PinnedFile, ...] = (
    _sk(
        "astronaut.png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", 791555
    ),
    _sk("chelsea.png", "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb", 240512),
    _sk("coffee.png", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", 466706),
    PinnedFile(
        "grace_hopper.jpg",
        MATPLOTLIB_WHEEL,
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
        61306,
    ),
    PinnedFile(
        "LICENSE.scikit-image.txt",
        SKIMAGE_WHEEL,
        "scikit_image-0.25.2.dist-info/LICENSE.txt",
        "611d3207504dcb4a808df209d2e7c9b4f2e89fe690f84735c0d548160966b527",
        6435,
    ),
)


def model_files() -> list[PinnedFile]:
    return [spec.file for spec in MODELS.values()] + [MEDIAPIPE_LICENSE]


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelMissingError(
            f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}"
        ) from None


def verified_model_path(name: str, models_dir: Path) -> Path:
    """The model's path after its hash was checked; raises with the fixing command."""
    return verify_file(get_model(name).file, models_dir)
