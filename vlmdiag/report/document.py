"""The run report as data (SPEC §5), and writing it atomically."""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import vlmdiag
from vlmdiag.atomic import write_atomic  # noqa: F401 (re-exported: plugin, plots)

# 2: metrics.conditions per claim, the baseline section (and a claim's baseline entry); 1 read as before.
SCHEMA_VERSION = 2


def environment() -> dict[str, Any]:
    """Versions and device of this run (pytest-benchmark's ``machine_info``, in short)."""
    versions = {}
    for package in ("torch", "transformers", "safetensors", "numpy", "scipy", "pytest"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    device = "cpu"
    try:
        import torch

        if torch.cuda.is_available():
            device = f"cuda ({torch.cuda.get_device_name(0)} x{torch.cuda.device_count()})"
    except ImportError:
        pass
    return {"python": platform.python_version(), "platform": platform.platform(), "device": device,
            "versions": versions}


def build_report(results: list[dict], *, checkpoints: dict, regions: str, thresholds: str,
                 cache: dict | None = None, baseline: dict | None = None, complete: bool = True) -> dict:
    """The JSON document: ``schema_version``, ``vlmdiag_version``, ``created``, ``complete`` (False
    when the run was interrupted, crashed or stopped early: then it is written beside the report,
    see :mod:`vlmdiag.report.safety`), ``environment``,
    ``checkpoints`` (per recipe and role: spec, path, fingerprint), ``regions``, ``thresholds``,
    ``cache`` (``enabled``, ``dir`` of the results cache; None when not given) and ``claims`` (one
    entry per claim and recipe: ``id``, ``recipe``, ``verdict``, ``metrics``, ``reason``, ``cache``
    (whether its measurements came from the results cache), ``baseline`` (its comparison with
    ``--baseline``, see :mod:`vlmdiag.report.baseline`), ...), sorted by recipe then claim id; and
    ``baseline``: the comparison's summary (:func:`vlmdiag.report.baseline.summary`), None without
    ``--baseline``."""
    return {
        "schema_version": SCHEMA_VERSION,
        "vlmdiag_version": vlmdiag.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "complete": complete,
        "environment": environment(),
        "checkpoints": checkpoints,
        "regions": regions,
        "thresholds": thresholds,
        "cache": cache,
        "claims": sorted(results, key=lambda r: (r["recipe"], r["id"])),
        "baseline": baseline,
    }


def _jsonable(value: Any) -> Any:
    """NaN/Inf become null (strict JSON); tuples become lists; numpy scalars become numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(report: dict) -> str:
    """Strict JSON text of a report."""
    return json.dumps(_jsonable(report), indent=2, allow_nan=False)


def load_report(path: str | Path) -> dict:
    """Read a saved report.

    Raises:
        UsageError (a ``ValueError``): unreadable, not JSON, not a vlmdiag report (no integer
            ``schema_version``, ``claims`` not a list of objects with ``id``, ``recipe`` and
            ``verdict``), or a schema newer than this vlmdiag reads.
    """
    from vlmdiag.errors import UsageError

    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as error:
        raise UsageError(f"{path}: cannot read the report ({error.strerror})") from error
    except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, absurdly deep
        raise UsageError(f"{path}: not a JSON report ({type(error).__name__})") from error
    if not (isinstance(data, dict) and type(data.get("schema_version")) is int and isinstance(data.get("claims"), list)
            and all(isinstance(c, dict) and all(isinstance(c.get(k), str) for k in ("id", "recipe", "verdict"))
                    for c in data["claims"])):
        raise UsageError(f"{path}: not a vlmdiag report (no integer schema_version, or claims that are not "
                         f"objects with id, recipe and verdict)")
    if data["schema_version"] > SCHEMA_VERSION:
        raise UsageError(f"{path}: report schema_version {data['schema_version']} is newer than this "
                         f"vlmdiag reads ({SCHEMA_VERSION}); upgrade vlmdiag")
    return data
