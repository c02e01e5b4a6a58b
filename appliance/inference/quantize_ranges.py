"""Activation ranges for static int8 quantization, from the calibrator's per-sample extremes.

ai-edge-quantizer's calibrator folds each sample's min and max of every tensor into a running
value with an update function of our choosing. `collect_update` keeps them all instead, and
`settle` turns each tensor's list into one range afterwards:

* "mean": the mean of the per-sample min and max (what the build used until December 2026);
* "quantile": the per-sample min and max at quantile `q` over the samples (the `q`-th largest
  max, the (1 - q)-th smallest min): a tensor whose extremes vary by sample keeps the range that
  most samples need instead of the average, which is narrower than what the bright and dark
  photos reach (chosen by validation inside the calibration split, see `quantize`);
* "min_max": every sample's extremes covered.

The model's input tensor gets the range the wrappers feed (`input_min` .. `input_max`), not a
measured one: uint8 pixels mapped onto it are then exact in int8 (one step per pixel level),
where a measured range clipped every pixel brighter than about 234 (the mean of the samples'
brightest pixel), the white of a studio background among them. Deterministic: the result does
not depend on the order of the samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from appliance.errors import ApplianceError

HOWS = ("mean", "quantile", "min_max")


def collect_update(qsv: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The calibrator's update: every sample's min and max, kept (`settle` combines them)."""
    mins = qsv.get("mins") or [np.asarray(qsv["min"], np.float64)]
    maxs = qsv.get("maxs") or [np.asarray(qsv["max"], np.float64)]
    return {
        **new,
        "mins": [*mins, np.asarray(new["min"], np.float64)],
        "maxs": [*maxs, np.asarray(new["max"], np.float64)],
    }


def settle(
    qsvs: dict[str, dict[str, Any]],
    how: str,
    quantile: float,
    input_name: str,
    input_range: tuple[float, float],
) -> dict[str, dict[str, Any]]:
    """One (min, max) per tensor from the collected extremes; the input gets `input_range`."""
    if how not in HOWS:
        raise ApplianceError(f"activation ranges {how!r}: choose one of {', '.join(HOWS)}")
    out: dict[str, dict[str, Any]] = {}
    for name, qsv in qsvs.items():
        if "mins" in qsv:
            mins, maxs = np.stack(qsv["mins"]), np.stack(qsv["maxs"])
        elif "min" in qsv:  # a tensor seen once
            mins, maxs = np.asarray(qsv["min"])[np.newaxis], np.asarray(qsv["max"])[np.newaxis]
        else:
            out[name] = qsv
            continue
        if how == "mean":
            low, high = mins.mean(axis=0), maxs.mean(axis=0)
        elif how == "min_max":
            low, high = mins.min(axis=0), maxs.max(axis=0)
        else:
            low = np.quantile(mins, 1.0 - quantile, axis=0)
            high = np.quantile(maxs, quantile, axis=0)
        if name == input_name:
            low, high = np.full_like(low, input_range[0]), np.full_like(high, input_range[1])
        kept = {k: v for k, v in qsv.items() if k not in ("mins", "maxs")}
        out[name] = {**kept, "min": low.astype(np.float32), "max": high.astype(np.float32)}
    return out
