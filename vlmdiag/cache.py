"""The persistent results cache: measurements kept on disk between runs.

A measurement (a weight pass, a generation sweep, a transplant sweep...) is stored under a key
derived from everything that determines its value:

* the measurement's name and its settings (probe count, decoding budget, region cuts...);
* each checkpoint (or model state) it reads: :attr:`~vlmdiag.checkpoints.Checkpoint.fingerprint`,
  a digest of every tensor and every other file of the folder by content (an edit of any byte
  that matters is a miss; a copy elsewhere is a hit);
* the probe items, by content (question text, answers, image pixels);
* the code that measures (a hash of vlmdiag's measuring modules, and ``vlmdiag.__version__``);
* the numerical environment: torch, transformers, tokenizers, numpy, ... versions, the device
  (and GPU model) and the dtype the models run in.

Verdict rules are not part of the key: the cache holds measurements, and every run judges them
again, so an edited ``thresholds.yaml`` or verdict rule takes effect at once.

Entries are JSON files ``<root>/<measurement>/<key>.json`` under :func:`results_dir`, written to a
temporary file and renamed into place (concurrent pytest-xdist workers and Ctrl-C never leave a
half-written entry). :meth:`ResultsCache.obtain` measures under a per-entry file lock
(``<key>.lock``, ``flock`` through filelock), so when several workers need the same measurement
one makes it and the others wait and read its entry. Values are encoded without pickle: vlmdiag
dataclasses by name and fields, numpy arrays as dtype + shape + raw bytes (:mod:`vlmdiag.codec`). An entry that cannot be read or decoded is a
miss (with a :class:`CacheWarning`) and is overwritten by the new measurement.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import vlmdiag
from vlmdiag.atomic import write_atomic
from vlmdiag.codec import decode, encode  # noqa: F401  (part of this module's interface)

FORMAT = 1  # bump when the entry layout or the value encoding changes
_VERSIONED = ("torch", "transformers", "tokenizers", "safetensors", "accelerate", "numpy", "scipy",
              "pillow", "math-verify")
# Modules whose code does not change what a measurement returns: reports, the pytest and
# command-line front ends, the hooks, the organism's training pipeline (its checkpoints are keyed
# by their fingerprints) and the verdict rules (vlmdiag.claims, judged again on every run).
_NOT_MEASURING = ("report/", "plugin/", "cli.py", "options.py", "organism/build.py",
                  "organism/train.py", "organism/cli.py", "claims/", "hookspec.py", "extensions.py", "api.py",
                  "integrations/", "measure/samples.py")


_ENTRY = re.compile(r"[0-9a-f]{40}\.json")
_LOCK = re.compile(r"[0-9a-f]{40}\.lock")
_TEMP = re.compile(r"\..+\.tmp")


def _holds_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").exists() or any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


class CacheWarning(UserWarning):
    """A cache entry could not be read or written; the measurement is made (again) instead."""


def results_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``<root>/results``, where ``<root>`` is :func:`cache_root` (the model organism's too)."""
    return cache_root(cache_dir) / "results"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$VLMDIAG_CACHE_DIR``, else ``~/.cache/vlmdiag``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("VLMDIAG_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "vlmdiag"


# --------------------------------------------------------------------------- key material


def canonical(value: Any) -> Any:
    """A JSON-ready description of ``value`` for hashing: like :func:`encode`, but images and
    arrays become digests of their contents and any dataclass is described by its fields.

    Raises:
        TypeError: a value whose content cannot be described (an arbitrary object).
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)  # exact, and NaN-safe
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, dict):
        return {"dict": sorted(([canonical(k), canonical(v)] for k, v in value.items()),
                               key=lambda kv: json.dumps(kv[0], sort_keys=True))}
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.ascontiguousarray(value)
        return {"array": array.dtype.str, "shape": list(array.shape),
                "sha256": hashlib.sha256(array.tobytes()).hexdigest()}
    if isinstance(value, bytes):
        return {"bytes": hashlib.sha256(value).hexdigest()}
    if hasattr(value, "tobytes") and hasattr(value, "mode") and hasattr(value, "size"):  # a PIL image
        return {"image": value.mode, "size": list(value.size), "sha256": hashlib.sha256(value.tobytes()).hexdigest()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"class": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(f"cannot describe a {type(value).__module__}.{type(value).__qualname__} for a cache key")


def content_digest(value: Any) -> str:
    """sha256 (hex) of :func:`canonical` ``(value)``: equal for equal contents, whatever the objects."""
    return hashlib.sha256(json.dumps(canonical(value), sort_keys=True).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 (hex, 16 chars) of vlmdiag's measuring code: every ``.py``/``.yaml`` file of the
    package except reports, front ends, the organism's training pipeline and verdict rules."""
    package = Path(vlmdiag.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package).as_posix()
        if path.suffix not in (".py", ".yaml") or "__pycache__" in relative or not _measuring(relative):
            continue
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _measuring(relative: str) -> bool:
    return not any(relative.startswith(x) if x.endswith("/") else relative == x for x in _NOT_MEASURING)


def environment_key(device: str) -> dict:
    """The numerical environment of a measurement: Python (major.minor), the versions of the
    libraries that compute or grade it, and ``device`` (see :func:`device_description`)."""
    versions = {}
    for package in _VERSIONED:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"python": ".".join(platform.python_version_tuple()[:2]), "versions": versions, "device": device}


def device_description(device, dtype=None) -> str:
    """``cpu``, or ``cuda:<GPU model>``, plus ``/<dtype>`` when given (e.g. ``cuda:NVIDIA H100/bfloat16``).
    On CUDA, whether TF32 matmuls are allowed is part of it (they change the numbers)."""
    import torch

    device = torch.device(device)
    text = device.type
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        text = f"cuda:{torch.cuda.get_device_name(index)}:tf32={torch.backends.cuda.matmul.allow_tf32}"
    return f"{text}/{str(dtype).removeprefix('torch.')}" if dtype is not None else text


def checkpoint_identity(checkpoint) -> dict:
    """A checkpoint's part of a key: its exact :attr:`~vlmdiag.checkpoints.Checkpoint.fingerprint`
    (every tensor and every other file of the folder, by content).

    Raises:
        CheckpointError: a file of the checkpoint cannot be read.
    """
    return {"fingerprint": checkpoint.fingerprint}


def key_material(name: str, *, checkpoints: dict, device: str, settings: dict | None = None,
                 probes: Any = None) -> dict:
    """The key material of measurement ``name``: ``checkpoints`` (``{role:``
    :func:`checkpoint_identity` ``}``), ``device`` (see :func:`device_description`), ``settings``
    and ``probes`` (by content), with the entry format, vlmdiag's version and measuring code and
    the library versions.

    Raises:
        TypeError: settings or probes whose content cannot be described (see :func:`canonical`).
    """
    return {"measurement": name, "format": FORMAT, "vlmdiag": vlmdiag.__version__, "code": code_fingerprint(),
            "environment": environment_key(device), "checkpoints": checkpoints,
            "settings": canonical(settings or {}), "probes": content_digest(probes) if probes is not None else None}


def key_of(material: dict) -> str:
    """The entry key (40 hex characters of sha256) of a key material dict."""
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:40]


# --------------------------------------------------------------------------- the store


class ResultsCache:
    """Measurements on disk under ``root`` (default :func:`results_dir`).

    ``get`` and ``put`` never raise for a broken cache: an unreadable entry is a miss and an
    unwritable folder turns writing off, each with one :class:`CacheWarning`.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else results_dir()
        self.writable = True

    def path(self, name: str, key: str) -> Path:
        """Where the entry ``key`` of measurement ``name`` lives."""
        return self.root / name / f"{key}.json"

    def get(self, name: str, material: dict) -> tuple[bool, Any]:
        """``(True, value)`` when an intact entry for ``material`` exists, else ``(False, None)``."""
        key = key_of(material)
        path = self.path(name, key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return False, None
        except OSError as error:
            warnings.warn(f"{path}: cache entry unreadable ({error}); measuring again", CacheWarning, stacklevel=2)
            return False, None
        try:
            entry = json.loads(raw)
            if entry.get("format") != FORMAT or entry.get("name") != name or entry.get("key") != key:
                raise ValueError("its header does not match the key it is stored under")
            return True, decode(entry["value"])
        except Exception as error:  # noqa: BLE001 — any damage means: measure again
            warnings.warn(f"{path}: corrupt cache entry ({type(error).__name__}: {error}); measuring again",
                          CacheWarning, stacklevel=2)
            return False, None

    def put(self, name: str, material: dict, value: Any, *, seconds: float | None = None) -> Path | None:
        """Store ``value`` for ``material`` atomically; returns the entry's path, or None when the
        value cannot be encoded or the folder is not writable (with a warning)."""
        if not self.writable:
            return None
        key = key_of(material)
        try:
            entry = {"format": FORMAT, "name": name, "key": key, "vlmdiag_version": vlmdiag.__version__,
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": seconds,
                     "material": material, "value": encode(value)}
        except TypeError as error:
            warnings.warn(f"measurement {name!r} not cached: {error}", CacheWarning, stacklevel=2)
            return None
        path = self.path(name, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(entry, separators=(",", ":")).encode())
        except OSError as error:
            self.writable = False
            warnings.warn(f"{self.root}: cannot write the results cache ({error}); caching is off for "
                          f"this run (set VLMDIAG_CACHE_DIR to a writable folder)", CacheWarning, stacklevel=2)
            return None
        return path

    def obtain(self, name: str, material: dict, make: Callable[[], Any], *,
               also_in: tuple[str, ...] = ()) -> tuple[Any, bool]:
        """The value stored for ``material`` (under ``name``, or under one of ``also_in``, whose
        values hold this one), as ``(value, True)``; else ``(make(), False)``, stored.

        Made under the entry's lock: a process that needs an entry another process is making
        waits for it and reads it instead of measuring again (pytest-xdist workers share
        measurements this way). A process that dies releases its lock. Exceptions of ``make``
        propagate, with nothing stored.
        """
        with self._lock(name, material):
            for candidate, key_material in [(name, material), *((n, {**material, "measurement": n}) for n in also_in)]:
                hit, value = self.get(candidate, key_material)
                if hit:
                    return value, True
            start = time.perf_counter()
            value = make()
            self.put(name, material, value, seconds=round(time.perf_counter() - start, 3))
            return value, False

    @contextmanager
    def _lock(self, name: str, material: dict) -> Iterator[None]:
        """Hold ``<root>/<name>/<key>.lock`` (none when the folder cannot be written: measuring
        twice is then the worst case)."""
        from filelock import FileLock

        lock = None
        if self.writable:
            path = self.path(name, key_of(material)).with_suffix(".lock")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                lock = FileLock(path)
                lock.acquire()
            except OSError as error:
                lock = None
                warnings.warn(f"{path}: cannot lock the cache entry ({error}); another worker may make "
                              "the same measurement", CacheWarning, stacklevel=3)
        try:
            yield
        finally:
            if lock is not None:
                lock.release()

    def entries(self) -> list[Path]:
        """Every complete entry file (``<measurement>/<40 hex>.json``; nothing else counts)."""
        return [path for folder in self._folders() for path in sorted(folder.glob("*.json")) if _ENTRY.fullmatch(path.name)]

    def _folders(self) -> list[Path]:
        """The measurement folders: those under the root that hold no checkpoint."""
        if not self.root.is_dir():
            return []
        return [folder for folder in sorted(self.root.iterdir()) if folder.is_dir() and not _holds_checkpoint(folder)]

    def info(self) -> dict:
        """``root``, ``entries``, ``bytes``, ``by_measurement`` (``{name: {"entries", "bytes"}}``)
        and ``leftovers`` (temporary files of interrupted writers)."""
        by: dict[str, dict[str, int]] = {}
        for path in self.entries():
            stat = by.setdefault(path.parent.name, {"entries": 0, "bytes": 0})
            stat["entries"] += 1
            stat["bytes"] += path.stat().st_size
        leftovers = len(list(self.root.glob("*/.*.tmp"))) if self.root.is_dir() else 0
        return {"root": str(self.root), "entries": sum(s["entries"] for s in by.values()),
                "bytes": sum(s["bytes"] for s in by.values()), "by_measurement": by, "leftovers": leftovers}

    def clear(self) -> int:
        """Delete every entry (and leftover temporary and lock file); returns the number of entries
        deleted. Clearing while another run measures costs that run at most a measurement made twice.

        Only files named as the cache names them are deleted (``<40 hex>.json`` / ``.lock``, the
        atomic writer's ``.*.tmp``), and never in a folder that holds a checkpoint (a
        ``config.json`` or weights): a cache root pointed at the wrong folder loses nothing."""
        count = 0
        for folder in self._folders():
            for path in sorted(folder.iterdir()):
                ours = _ENTRY.fullmatch(path.name) or _LOCK.fullmatch(path.name) or _TEMP.fullmatch(path.name)
                if ours and path.is_file():
                    path.unlink(missing_ok=True)
                    count += path.suffix == ".json"
            try:
                folder.rmdir()
            except OSError:
                pass  # holds something that is not ours
        return count
