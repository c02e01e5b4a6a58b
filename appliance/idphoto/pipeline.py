"""From one photo's bytes to a finished ID photo: digital file, print sheet, report.

decode (reduced, for the models) -> one face -> landmarks + matte -> crown/chin/eyes ->
placement by the document's rules -> decode only what is kept, at the scale it is kept ->
one warp (crop + scale + roll) -> refined matte -> new background -> the pipeline's own landmark
pass on the result -> checks -> encode (exact pixels, DPI, size cap, no metadata) -> sheet.

Four stages run beside the others on a second core (`side_work` in stages.py): the matte
beside the face search; after the render, the print sheet, the measure of what is left of the
old background and then the digital file's encode, while the main thread verifies the output
and runs the checks (the face checks first: they need only the verification's mesh) and the
preview. The report's per-stage timings are each stage's own time, so they add up to more
than the total; "segment_wait", "remnants_wait", "encode_wait" and "sheet_wait" are what the
main thread still waited for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from appliance.config import Config
from appliance.errors import FaceTooSmallError, MultipleFacesError, NoFaceError
from appliance.idphoto import checks as checks_mod
from appliance.idphoto.face_checks import face_checks
from appliance.idphoto.finishing import all_checks, face_on, make_report, print_sheet
from appliance.idphoto.framing import measure_head, plan_frame, raster_affine
from appliance.idphoto.render import chain, draw_guides, kept_to_view, measure_output, render
from appliance.idphoto.specs import get_spec
from appliance.idphoto.stages import Timings, View, side_work
from appliance.imaging.decode import DecodedImage, decode
from appliance.imaging.encode import encode_jpeg, encode_jpeg_capped
from appliance.imaging.geometry import apply_affine
from appliance.imaging.matte import parse_hex_colour
from appliance.imaging.remnants import find_remnants
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
        face_point, eye_px = face_on(view_to_raster, head)
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
        # After the render, three jobs need only the finished pixels and go to the second core:
        # the print sheet (tiled, and a 2 MP JPEG: the longest), the measure of what is left
        # of the old background (wanted by the checks), then the digital file's encode. The
        # main thread meanwhile verifies the output and runs the face checks on it.
        side = side_work()
        sheet_job = side.submit(
            timings.timed,
            "sheet",
            print_sheet,
            self.inference,
            self.config,
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
        remnants_job = side.submit(
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
        digital_job = side.submit(
            timings.timed,
            "encode",
            partial(
                encode_jpeg_capped,
                rendered.pixels,
                dpi=round(px_per_mm * 25.4),
                max_bytes=spec.max_file_bytes,
                min_bytes=spec.min_file_bytes,
                min_size=spec.digital_min_px,
            ),
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
        with timings("face_checks"):
            on_face = (
                face_checks(
                    rendered.pixels, rendered.alpha, measured[1], spec, request.religious_covering
                )
                if measured is not None
                else []
            )
        with timings("remnants_wait"):
            remnants = remnants_job.result()
        with timings("checks"):
            report_checks = all_checks(
                rendered,
                measured,
                spec,
                px_per_mm,
                background,
                1.0 / out_per_full if out_per_full else 0.0,
                head.roll,
                remnants,
                on_face,
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
        with timings("encode_wait"):
            digital = digital_job.result()
        with timings("sheet_wait"):
            sheet = sheet_job.result()
        report = make_report(
            spec, analysis, face, view, size, px_per_mm, digital, measured, head, plan,
            out_per_full, background, rendered, report_checks, timings,
        )  # fmt: skip
        return Product(digital.data, sheet, preview, report)
