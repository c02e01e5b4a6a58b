"""One check's labelled counts from an eval_checks.py run, by the corpus's fixed split.

    nice -n 10 .venv/bin/python benchmarks/eval_checks.py --json out.json
    .venv/bin/python benchmarks/split_checks.py out.json "head covering"

The corpus photos (appliance/inference/corpus_table.py) are split once into calibration (the
photos limits are tuned on) and evaluation (held out: the honest figure); the eleven studio
portraits and their painted variants are tuning material. Prints TP/FP/TN/FN per group and
every false pass and false alarm.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.inference.corpus_table import PORTRAITS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", type=Path, help="eval_checks.py --json output")
    parser.add_argument("check", help='a check name, e.g. "head covering"')
    args = parser.parse_args()
    split = {row[0]: row[4] for row in PORTRAITS}
    rows = json.loads(args.json.read_text("utf-8"))["rows"]
    counts: dict[str, Counter[str]] = {}
    wrong: list[str] = []
    for row in rows:
        if args.check not in row["checks"] or args.check not in row["labelled"]:
            continue
        kind = "real" if row["variant"] == "(real)" else "variants"
        group = f"{kind}, {split.get(row['portrait'], 'studio')}"
        fault = args.check in row["faults"]
        result = row["checks"][args.check]
        flagged = result["status"] != "pass"
        key = ("TP" if flagged else "FN") if fault else ("FP" if flagged else "TN")
        counts.setdefault(group, Counter())[key] += 1
        if key in ("FP", "FN"):
            what = "false pass" if key == "FN" else "false alarm"
            case = f"{row['portrait']} {row['variant']} ({result['value']})"
            wrong.append(f"- {group}: {what}: {case}")
    print("| photos | TP | FP | TN | FN |\n|---|---:|---:|---:|---:|")
    for group in sorted(counts):
        c = counts[group]
        print(f"| {group} | {c['TP']} | {c['FP']} | {c['TN']} | {c['FN']} |")
    print("\n" + "\n".join(wrong))


if __name__ == "__main__":
    main()
