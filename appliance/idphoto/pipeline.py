"""From one photo's bytes to a finished ID photo: digital file, print sheet, report.

decode (reduced, for the models) -> one face -> landmarks + matte -> crown/chin/eyes ->
placement by the document's rules -> decode only what is kept, at the scale it is kept ->
one warp (crop + scale + roll) -> refined matte -> new background -> the pipeline's own landmark
pass on the result -> checks -> encode (exact pixels, DPI, size cap, no metadata) -> sheet.

Three stages run beside the others on a second core (`side_work`): the matte beside the face
search; the print sheet, and the measure of what is left of the old background, beside
everything after the render. The report's per-stage timings are
each stage's own time, so they add up to more than the total; "segment_wait" and "sheet_wait"
are what the main thread still waited for them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from appliance.config import Config
from appliance.errors import FaceTooSmallError, MultipleFacesError, NoFaceError
from appliance.idphoto import checks as checks_mod
from appliance.idphoto.face_checks import face_checks
from appliance.idphoto.framing import measure_head, plan_frame, raster_affine
from appliance.idphoto.render import chain, draw_guides, kept_to_view, measure_output, render
from appliance.idphoto.specs import DocumentSpec, get_spec
from appliance.imaging.decode import DecodedImage, decode
from appliance.imaging.encode import encode_jpeg, encode_jpeg_capped
from appliance.imaging.geometry import apply_affine
from appliance.imaging.layout import compose_sheet
from appliance.imaging.matte import parse_hex_colour
from appliance.imaging.remnants import Remnant, find_remnants
from appliance.inference.detector import Face
from appliance.inference.landmarks import MIN_PRESENCE, FaceLandmarks
from appliance.inference.segmenter import PortraitMask
from appliance.inference.service import InferenceService
from appliance.memory import keep_freed_buffers, mark_busy

# A second face at least this wide, relative to the largest, counts as another person.
OTHER_FACE_SHARE = 0.35
# Below this eye distance in the analysis image, look again at a sharper crop of the face.
REFOCUS_EYE_PX = 56.0
# Refuse when the output would need the face enlarged more than this (the resolution check
# already fails from 2x: the photo is still made, the operator decides).
MAX_ENLARGEMENT = 4.0


# A detected face and the face mesh that confirmed it.
Found = tuple[Face, FaceLandmarks]


@dataclass(frozen=True)
class ProductRequest:
    spec_id: str | None = None
    background: str | None = None  # "#RRGGBB"; portraits also take "blur"; None = spec default
    paper: str = "4x6"
    portrait: str | None = None  # "4:5", "2:3" or "1:1": a portrait instead of an ID photo
    # The operator's mark that a head covering is worn for religious reasons.
    religious_covering: bool = False


@dataclass(frozen=True)
class Product:
    digital: bytes
    sheet: bytes | None
    preview: bytes
    report: dict[str, Any]


T = TypeVar("T")


@dataclass
class Timings:
    stages: dict[str, float] = field(default_factory=dict)

    def timed(self, stage: str, work: Callable[..., T], *args: Any) -> T:
        """Run `work` and record its time under `stage` (for work on a side thread)."""
        with self(stage):
            return work(*args)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - start) * 1000.0
            self.stages[stage] = round(self.stages.get(stage, 0.0) + elapsed, 2)


@dataclass(frozen=True)
class View:
    """Pixels the models look at: a scaled (and maybe cropped) copy of the photo."""

    pixels: np.ndarray
    scale: float  # view px per full-resolution px
    origin: tuple[float, float] = (0.0, 0.0)  # full-resolution px of the view's top left

    def to_full(self, x: float, y: float) -> tuple[float, float]:
        return (self.origin[0] + x / self.scale, self.origin[1] + y / self.scale)


_SIDE: ThreadPoolExecutor | None = None
_SIDE_LOCK = threading.Lock()


def side_work() -> ThreadPoolExecutor:
    """Threads for the stages that need not wait for each other: the matte beside the face
    search, the print sheet beside the verification, checks and encodes. The models, OpenCV
    and the JPEG encoder release the GIL, so on a multi-core device these really overlap
    (measured on 2 cores, alternating runs in one process: about 13 ms less for a 0.4 MP
    photo, 14 ms less for 12 MP)."""
    global _SIDE
    with _SIDE_LOCK:
        if _SIDE is None:
            _SIDE = ThreadPoolExecutor(max_workers=2, thread_name_prefix="idphoto")
        return _SIDE


class IdPhotoPipeline:
    """Stateless apart from the loaded models: safe to share between threads."""

    def __init__(self, inference: InferenceService, config: Config) -> None:
        self.inference = inference
        self.config = config
        keep_freed_buffers()  # process-wide: see appliance/memory.py

    # --- finding the face --------------------------------------------------------------------

    def _detect(self, pixels: np.ndarray) -> list[Found]:
        """Faces confirmed by the face mesh; each detector is tried only if the previous one
        found none (near faces, then far faces, then small faces tile by tile)."""
        stages = (
            self.inference.detector.detect,
            self.inference.far_detector.detect,
            self._detect_tiled,
        )
        for stage in stages:
            found = self._confirmed(pixels, stage(pixels))
            if found:
                return found
        return []

    def _confirmed(self, pixels: np.ndarray, faces: list[Face]) -> list[Found]:
        # Detectors see faces in fur, fabric and logos now and then; the mesh model's own
        # face-presence score tells them apart (real faces score near 1, the rest near 0).
        # The mesh is kept: it is the first landmark pass for the face that is used.
        found = [(face, self.inference.landmarker.landmarks(pixels, face)) for face in faces]
        return [(face, marks) for face, marks in found if marks.presence >= MIN_PRESENCE]

    def _detect_tiled(self, pixels: np.ndarray, tile: int | None = None) -> list[Face]:
        """Small faces in a wide frame: the short-range model on overlapping tiles."""
        height, width = pixels.shape[:2]
        tile = tile or max(160, min(height, width) // 3)
        step = tile * 5 // 8
        found: list[Face] = []
        for y in range(0, max(1, height - tile + step), step):
            for x in range(0, max(1, width - tile + step), step):
                crop = np.ascontiguousarray(pixels[y : y + tile, x : x + tile])
                if min(crop.shape[:2]) < 32:
                    continue
                for face in self.inference.detector.detect(crop):
                    moved = Face(
                        face.score,
                        type(face.box)(
                            face.box.x0 + x, face.box.y0 + y, face.box.x1 + x, face.box.y1 + y
                        ),
                        tuple((px + x, py + y) for px, py in face.keypoints),
                    )
                    if all(moved.box.iou(other.box) < 0.3 for other in found):
                        found.append(moved)
        return sorted(found, key=lambda f: -f.score)

    def _one_face(self, faces: list[Found]) -> Found:
        if not faces:
            raise NoFaceError(
                "no face found: make sure one person faces the camera, lit and in the frame "
                "(a face that fills less than about a fiftieth of the photo's width is too "
                "small to find: move closer)"
            )
        widest = max(face.box.width for face, _ in faces)
        usable = [pair for pair in faces if pair[0].box.width >= OTHER_FACE_SHARE * widest]
        if len(usable) > 1:
            raise MultipleFacesError(len(usable))
        return usable[0]

    def _find_face(
        self, data: bytes, analysis: DecodedImage, timings: Timings
    ) -> tuple[Face, FaceLandmarks, View]:
        """The one face, its landmarks (two passes) and the view they are measured in."""
        view = View(analysis.pixels, analysis.scale)
        with timings("detect"):
            faces = self._detect(view.pixels)
        if not faces and analysis.scale < 0.5:
            # Nothing at the reduced size, but the photo has many more pixels: a person
            # standing far back. Look tile by tile at twice the resolution.
            with timings("detect_far"):
                closer = decode(
                    data,
                    max_pixels=self.config.imaging.max_pixels,
                    max_bytes=self.config.imaging.decode_budget_bytes,
                    max_side=2 * max(analysis.pixels.shape[:2]),
                )
                tiles = self._confirmed(closer.pixels, self._detect_tiled(closer.pixels, 256))
            if tiles:
                analysis, view, faces = closer, View(closer.pixels, closer.scale), tiles
        face, marks = self._one_face(faces)
        if face.eye_distance >= REFOCUS_EYE_PX or analysis.scale >= 0.999:
            with timings("landmarks"):
                return face, self.inference.landmarker.realign(view.pixels, face, marks), view
        # A small face in a large frame: decode more pixels and look again at a crop around it.
        with timings("refocus"):
            wanted = min(1.0, analysis.scale * 1.5 * REFOCUS_EYE_PX / max(face.eye_distance, 1))
            longest = max(analysis.full_size)
            sharper = decode(
                data,
                max_pixels=self.config.imaging.max_pixels,
                max_bytes=self.config.imaging.decode_budget_bytes,
                max_side=math.ceil(longest * wanted),
            )
            ratio = sharper.scale / analysis.scale
            box = face.box.scaled(ratio)
            side = max(box.width, box.height)
            cx, cy = box.center
            h, w = sharper.pixels.shape[:2]
            x0, x1 = max(0, round(cx - 2.5 * side)), min(w, round(cx + 2.5 * side))
            y0, y1 = max(0, round(cy - 3.0 * side)), min(h, round(cy + 3.5 * side))
            crop = np.ascontiguousarray(sharper.pixels[y0:y1, x0:x1])
            view = View(crop, sharper.scale, (x0 / sharper.scale, y0 / sharper.scale))
            faces = self._detect(crop)
        if not faces:
            raise NoFaceError("no face found when looking closer: retake with the face larger")
        centre = ((cx - x0), (cy - y0))
        face, marks = min(faces, key=lambda pair: math.dist(pair[0].box.center, centre))
        with timings("landmarks"):
            return face, self.inference.landmarker.realign(view.pixels, face, marks), view

    def _find_face_and_mask(
        self, data: bytes, analysis: DecodedImage, timings: Timings
    ) -> tuple[Face, FaceLandmarks, View, PortraitMask]:
        """The face (detection and two mesh passes) and the portrait matte of its view. The
        matte needs only the pixels, so it is made on the second core while the face is
        searched for ("segment" is its own time, "segment_wait" what was left of it)."""
        early = side_work().submit(
            timings.timed, "segment", self.inference.segmenter.segment, analysis.pixels
        )
        face, marks, view = self._find_face(data, analysis, timings)
        with timings("segment_wait"):
            mask = early.result()
        if view.pixels is not analysis.pixels:
            # The face was found on a closer look (a small face in a big frame): the matte
            # must be of that view.
            with timings("segment"):
                mask = self.inference.segmenter.segment(view.pixels)
        return face, marks, view, mask

    # --- the product ---------------------------------------------------------------------------

    def process(self, data: bytes, request: ProductRequest) -> Product:
        mark_busy()
        try:
            return self._process(data, request)
        finally:
            mark_busy()

    def _process(self, data: bytes, request: ProductRequest) -> Product:
        if request.portrait is not None:
            from appliance.idphoto.portrait import make_portrait

            return make_portrait(self, data, request)
        spec = get_spec(request.spec_id or self.config.product.default_spec)
        background = parse_hex_colour(request.background or spec.default_background)
        timings = Timings()
        imaging = self.config.imaging
        with timings("decode"):
            analysis = decode(
                data,
                max_pixels=imaging.max_pixels,
                max_bytes=imaging.decode_budget_bytes,
                max_side=imaging.analysis_max_side,
                at_least=False,
            )
        face, marks, view, mask = self._find_face_and_mask(data, analysis, timings)
        with timings("measure"):
            head = measure_head(view.pixels, marks, mask, self.inference.segmenter)
            plan = plan_frame(head, spec)
        size = spec.digital_size_px
        px_per_mm = spec.px_per_mm
        # Output px per full-resolution px: decode no more than that (and never more than all).
        out_per_full = px_per_mm * plan.mm_per_px * view.scale
        needed_head_px = plan.head_mm * px_per_mm
        if out_per_full > MAX_ENLARGEMENT:
            raise FaceTooSmallError(
                f"face too small for {spec.id} at this resolution: the head is "
                f"{needed_head_px / out_per_full:.0f} px tall in the photo and the digital file "
                f"needs {needed_head_px:.0f} px; move closer or use a higher resolution"
            )
        with timings("decode_kept"):
            if out_per_full <= analysis.scale or analysis.scale >= 1.0:
                # The first decode already holds every pixel the output needs (or every
                # pixel there is: a small photo is decoded in full for the models).
                kept = analysis
            else:
                kept = decode(
                    data,
                    max_pixels=imaging.max_pixels,
                    max_bytes=imaging.decode_budget_bytes,
                    max_side=math.ceil(max(analysis.full_size) * min(1.0, out_per_full)),
                    shrink=False,  # the render area-resamples only the region it shows
                )
        view_to_raster = chain(plan.to_mm, raster_affine(plan, size, px_per_mm))
        kept_to_raster = chain(kept_to_view(view.scale, view.origin, kept.scale), view_to_raster)
        chin_row = float((view_to_raster @ np.array([*head.chin, 1.0]))[1])
        head_rows = plan.head_mm * px_per_mm
        face_point, eye_px = _face_on(view_to_raster, head)
        with timings("render"):
            rendered = render(
                kept.pixels,
                kept_to_raster,
                view_to_raster,
                size,
                mask,
                self.inference,
                background,
                chin_row,
                head_rows,
                face_point,
                eye_px,
            )
        # What is left of the old background is measured on the finished pixels beside the
        # verification pass (the face's place on them is known from the source).
        remnants_job = side_work().submit(
            timings.timed,
            "remnants",
            find_remnants,
            rendered.pixels,
            rendered.alpha,
            background,
            face_point,
            eye_px,
            chin_row,
            rendered.source,
        )
        # The print sheet needs only the finished pixels: it is tiled and encoded (a 2 MP
        # JPEG, the longest single step) on the second core from here on.
        sheet_job = side_work().submit(
            timings.timed,
            "sheet",
            self._sheet,
            rendered.pixels,
            spec,
            request.paper,
            plan,
            mask,
            view,
            kept,
            background,
            chin_row / px_per_mm,
            head,
        )
        with timings("verify"):
            eyes = apply_affine(view_to_raster, np.array([marks.right_eye, marks.left_eye]))
            measured = measure_output(
                rendered.pixels,
                rendered.alpha,
                self.inference,
                face.mapped(view_to_raster),
                ((eyes[0, 0], eyes[0, 1]), (eyes[1, 0], eyes[1, 1])),
                1,  # more than one usable face in the photo was refused above
            )
        with timings("encode"):
            digital = encode_jpeg_capped(
                rendered.pixels,
                dpi=round(px_per_mm * 25.4),
                max_bytes=spec.max_file_bytes,
                min_bytes=spec.min_file_bytes,
                min_size=spec.digital_min_px,
            )
        with timings("remnants_wait"):
            remnants = remnants_job.result()
        with timings("checks"):
            report_checks = self._checks(
                rendered,
                measured,
                spec,
                px_per_mm,
                background,
                1.0 / out_per_full if out_per_full else 0.0,
                head.roll,
                remnants,
                request.religious_covering,
            )
        eye_lo, eye_hi = spec.eye_line_px_range
        with timings("preview"):
            preview = encode_jpeg(
                draw_guides(
                    rendered.pixels,
                    measured[0] if measured else None,
                    (size[1] - eye_hi, size[1] - eye_lo),
                    None,
                    marks=checks_mod.marked_regions(report_checks),
                ),
                dpi=72,
                quality=85,
            )
        with timings("sheet_wait"):
            sheet = sheet_job.result()
        report = {
            "spec": spec.id,
            "input": {"format": analysis.format, "size": list(analysis.full_size)},
            "face": {
                "score": round(face.score, 3),
                "box": [
                    round(v)
                    for v in (
                        *view.to_full(face.box.x0, face.box.y0),
                        *view.to_full(face.box.x1, face.box.y1),
                    )
                ],
            },
            "output": {
                "size": list(size),
                "dpi": round(px_per_mm * 25.4),
                "bytes": len(digital.data),
                "jpeg_quality": digital.quality,
            },
            "geometry": _geometry(measured[0] if measured else None, px_per_mm, size),
            "transforms": {
                "roll_corrected_deg": round(head.roll, 2),
                "scale_out_per_source_px": round(out_per_full, 4),
                "background": "#{:02X}{:02X}{:02X}".format(*background),
                "subject_extended_px": rendered.extended_px,
                "matte_dropped_px": rendered.dropped_px,
                "crown_from_matte": head.crown_from_matte,
            },
            "checks": [c.to_dict() for c in report_checks],
            "verdict": checks_mod.worst(report_checks),
            "notes": list(head.notes + plan.notes),
            "timings_ms": timings.stages,
        }
        return Product(digital.data, sheet, preview, report)

    def _sheet(
        self,
        pixels: np.ndarray,
        spec: DocumentSpec,
        paper: str,
        plan: Any,
        mask: Any,
        view: View,
        kept: DecodedImage,
        background: tuple[int, int, int],
        chin_mm: float,
        head: Any,
    ) -> bytes:
        dpi = self.config.product.sheet_dpi
        per_mm = dpi / 25.4
        print_size = (round(spec.width_mm * per_mm), round(spec.height_mm * per_mm))
        height, width = pixels.shape[:2]
        if abs(width / height - print_size[0] / print_size[1]) < 0.01:
            photo = pixels  # same shape: compose_sheet resizes it to the exact print pixels
        else:  # a portal-shaped digital frame: render the print shape on its own
            to_raster = chain(plan.to_mm, raster_affine(plan, print_size, per_mm))
            kept_to_raster = chain(kept_to_view(view.scale, view.origin, kept.scale), to_raster)
            photo = render(
                kept.pixels,
                kept_to_raster,
                to_raster,
                print_size,
                mask,
                self.inference,
                background,
                chin_mm * per_mm,
                plan.head_mm * per_mm,
                *_face_on(to_raster, head),
            ).pixels
        sheet = compose_sheet(photo, (spec.width_mm, spec.height_mm), paper=paper, dpi=dpi)
        # Printed at 300 dpi, 4:2:0 chroma (150 dpi) is below what the eye resolves on paper.
        return encode_jpeg(sheet.image, dpi=sheet.dpi, quality=95, subsampling=2)

    def _checks(
        self,
        rendered: Any,
        measured: Any,
        spec: DocumentSpec,
        px_per_mm: float,
        background: tuple[int, int, int],
        source_per_out: float,
        roll: float,
        remnants: list[Remnant],
        religious_covering: bool = False,
    ) -> list[checks_mod.Check]:
        if measured is None:
            return [checks_mod.check("single face", "fail", 0, "exactly 1", "no face")]
        measure, points = measured
        return [
            *checks_mod.geometry_checks(measure, spec, px_per_mm),
            *checks_mod.pose_checks(measure, roll),
            *checks_mod.image_checks(
                rendered.pixels, rendered.alpha, measure, background, source_per_out
            ),
            checks_mod.background_check(
                rendered.pixels, rendered.alpha, measure, background, px_per_mm, remnants
            ),
            *face_checks(rendered.pixels, rendered.alpha, points, spec, religious_covering),
            checks_mod.framing_check(rendered.extended_share),
        ]


def _face_on(view_to_raster: np.ndarray, head: Any) -> tuple[tuple[float, float], float]:
    """The eye midpoint and the eye distance of `head` on a raster."""
    x, y = apply_affine(view_to_raster, np.array([head.eye_mid]))[0]
    return (float(x), float(y)), head.eye_distance * float(np.hypot(*view_to_raster[:, 0]))


def _geometry(measure: Any, px_per_mm: float, size: tuple[int, int]) -> dict[str, float]:
    if measure is None:
        return {}
    return {
        "crown_y": round(measure.crown_y, 1),
        "chin_y": round(measure.chin_y, 1),
        "eye_line_y": round(measure.eye_mid[1], 1),
        "face_centre_x": round(measure.face_centre_x, 1),
        "head_height_mm": round((measure.chin_y - measure.crown_y) / px_per_mm, 2),
        "eye_line_from_bottom_mm": round((size[1] - measure.eye_mid[1]) / px_per_mm, 2),
        "centre_offset_mm": round((measure.face_centre_x - size[0] / 2) / px_per_mm, 2),
        "eye_distance_px": round(measure.eye_distance, 1),
    }
