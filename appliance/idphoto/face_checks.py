"""Every check on the face's appearance, in report order, from one set of mesh zones."""

from __future__ import annotations

import numpy as np

from appliance.idphoto import appearance, occlusion, wearables
from appliance.idphoto.checks import Check
from appliance.idphoto.face_zones import FaceImage, FaceZones
from appliance.idphoto.specs import DocumentSpec


def face_checks(
    pixels: np.ndarray,
    alpha: np.ndarray,
    points: np.ndarray,
    spec: DocumentSpec,
    religious_covering: bool = False,
) -> list[Check]:
    """`points` are the mesh's 468 points measured on the finished `pixels`; `alpha` is its
    matte. `religious_covering` is the operator's mark that a head covering is worn for
    religious reasons (then the face from chin to forehead must show)."""
    zones = FaceZones(np.asarray(points, dtype=np.float64)[:, :2], pixels.shape[:2])
    face = FaceImage(pixels, alpha, zones)
    return [
        appearance.exposure_check(face),
        appearance.illumination_check(face),
        appearance.face_shadow_check(face),
        appearance.background_shadow_check(face),
        appearance.colour_check(face),
        appearance.red_eye_check(face),
        appearance.eyes_visible_check(face),
        *wearables.glasses_checks(face, spec),
        wearables.head_covering_check(face, spec, religious_covering),
        *occlusion.occlusion_checks(face, religious_covering),
    ]
