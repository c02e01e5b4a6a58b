"""The benchmark scripts run in smoke mode (one iteration, no timing asserted): they cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(
    script: str, out: Path, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run benchmarks/SCRIPT with ARGS and `--json OUT`, as anyone would from the root."""
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def test_process_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_benchmark("bench_process.py", out, "--smoke")
    assert result.returncode == 0, result.stderr[-2000:]
    results = {r["image"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"12mp", "0.4mp"}
    assert results["12mp"]["megapixels"] > 11.5
    assert results["0.4mp"]["megapixels"] < 0.6
    for r in results.values():
        assert r["peak_rss_mb"] > 0 and r["total_median_ms"] > 0
        assert {"decode", "detect", "render", "encode"} <= set(r["stages_median_ms"])


def test_checks_benchmark_smoke() -> None:
    """The face checks against the commit before their speed work, alternating."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_checks.py"), "--smoke"],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "face_checks, median per photo" in result.stdout and "head covering" in result.stdout


def test_daemon_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "daemon.json"
    result = run_benchmark("bench_daemon.py", out, "--smoke")
    assert result.returncode == 0, result.stderr[-2000:]
    median = json.loads(out.read_text())["median"]
    assert median["cold_start_to_ready_s"] > 0
    assert median["rss_after_one_product_mb"] >= median["rss_at_ready_mb"] > 0


def test_run_all_records_the_machine_and_each_result(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run_all.py"),
            "--smoke",
            "--only",
            "process",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    combined = json.loads((tmp_path / "all.json").read_text())
    machine = combined["machine"]
    assert machine["cores_usable"] >= 1 and machine["date_utc"].endswith("Z")
    assert machine["versions"]["ai-edge-litert"] and machine["versions"]["numpy"]
    process = combined["results"]["process"]
    assert {r["image"] for r in process["results"]} == {"12mp", "0.4mp"}
    assert (tmp_path / "process.json").is_file()
    refused = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert refused.returncode == 2 and "unknown benchmark(s) nope" in refused.stderr


def test_background_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "background.json"
    result = run_benchmark("bench_background.py", out, "--smoke")
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(out.read_text())
    assert {"astronaut.png"} <= {row["portrait"] for row in results["portraits"]}
    # Zero on every real portrait in every framing (also where a frame is continued past its
    # photo's edge).
    assert all(row["residue_mm2"] == 0.0 for row in results["portraits"]), results["portraits"]
    # With the matte as the segmenter gives it, every flag variant of the tuning set is
    # caught (of the unseen ones, not all: see benchmarks/RESULTS.md).
    assert all(
        row["old"]["status"] == "fail" for row in results["variants"] if row["set"] == "tuning"
    )
    assert all(t["drop_ms"] > 0 and t["measure_ms"] > 0 for t in results["timings"])


def test_check_accuracy_evaluation_smoke(tmp_path: Path) -> None:
    """The labelled evaluation of the compliance checks runs and tallies (one portrait)."""
    out = tmp_path / "eval.json"
    result = run_benchmark("eval_checks.py", out, "--no-variants", "--limit", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 1 and data["rows"][0]["portrait"] == "astronaut.png"
    glasses = data["table"]["glasses"]
    assert glasses["TN"] + glasses["FP"] == 1  # the astronaut wears none
    assert "| glasses |" in result.stdout


def test_memory_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    result = run_benchmark("bench_memory.py", out, "--smoke")
    assert result.returncode == 0, result.stderr[-2000:]
    results = {r["kind"]: r for r in json.loads(out.read_text())["results"]}
    assert results["jpeg-12mp"]["outcome"] == "upload 201, product 201"
    assert results["png-64mp-solid"]["outcome"] == "upload 413 image_too_large"
    for r in results.values():
        assert r["peak_rss_mb"] >= r["rss_at_ready_mb"] > 0


@pytest.mark.slow
def test_int8_build_benchmark_smoke(tmp_path: Path) -> None:
    """One model built from scratch on the corpus, then the no-op rerun (about a minute)."""
    out = tmp_path / "int8.json"
    result = run_benchmark("bench_int8_build.py", out, "--smoke", timeout=900)
    if result.returncode == 3:
        pytest.skip(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["second_run_built"] is False
    assert set(data["per_model_s"]) == {"face_detection_short_range"}
    metrics = data["distribution"]["face_detection_short_range"]
    assert metrics["face box IoU"]["samples"] >= 39
