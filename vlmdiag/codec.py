"""Encoding measurement values as JSON without pickle, for the results cache
(:mod:`vlmdiag.cache`): vlmdiag dataclasses by name and fields, numpy arrays as dtype + shape +
raw bytes (base64), tuples/sets/non-string-keyed dicts tagged. Decoding instantiates only
vlmdiag dataclasses; nothing is unpickled or evaluated.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
from typing import Any

import numpy as np

_TAG = "__vlmdiag_type__"
_ARRAY_KINDS = "biufcUS"  # numeric, bool and fixed-width strings; never object arrays


def encode(value: Any) -> Any:
    """A JSON-ready form of ``value`` that :func:`decode` turns back into an equal value.

    Handles None, bool, int, float (NaN/Inf kept), str, list, tuple, set, frozenset, dict (any
    encodable keys), numpy arrays and scalars (numeric, bool, fixed-width strings) and instances
    of dataclasses defined in vlmdiag.

    Raises:
        TypeError: anything else (an object array, a tensor, a foreign class), naming it.
    """
    if value is None or (isinstance(value, (bool, int, float, str)) and not isinstance(value, np.generic)):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, (tuple, set, frozenset)):
        items = list(value)
        if not isinstance(value, tuple):
            items.sort(key=repr)  # deterministic text for equal sets
        return {_TAG: type(value).__name__, "items": [encode(v) for v in items]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and _TAG not in value:
            return {k: encode(v) for k, v in value.items()}
        return {_TAG: "dict", "items": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"cannot cache a numpy array of dtype {array.dtype}")
        return {_TAG: "ndarray" if isinstance(value, np.ndarray) else "npscalar", "dtype": array.dtype.str,
                "shape": list(array.shape), "data": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()}
    cls = type(value)
    if dataclasses.is_dataclass(value) and cls.__module__.split(".")[0] == "vlmdiag":
        return {_TAG: "dataclass", "class": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(f"cannot cache a value of type {cls.__module__}.{cls.__qualname__}")


def decode(data: Any) -> Any:
    """The value :func:`encode` encoded. Only vlmdiag dataclasses are instantiated; nothing is
    unpickled or evaluated.

    Raises:
        ValueError: malformed data (an unknown tag, a class outside vlmdiag, a bad array).
    """
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        raise ValueError(f"unexpected JSON value of type {type(data).__name__}")
    tag = data.get(_TAG)
    if tag is None:
        return {k: decode(v) for k, v in data.items()}
    if tag in ("tuple", "set", "frozenset"):
        return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](decode(v) for v in data["items"])
    if tag == "dict":
        return {_hashable(decode(k)): decode(v) for k, v in data["items"]}
    if tag in ("ndarray", "npscalar"):
        dtype = np.dtype(data["dtype"])
        if dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"array dtype {dtype} is not allowed")
        shape = tuple(int(n) for n in data["shape"])
        array = np.frombuffer(base64.b64decode(data["data"], validate=True), dtype=dtype).reshape(shape).copy()
        return array if tag == "ndarray" else array[()]
    if tag == "dataclass":
        return _build_dataclass(data["class"], {k: decode(v) for k, v in data["fields"].items()})
    raise ValueError(f"unknown encoded type {tag!r}")


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _build_dataclass(name: str, values: dict) -> Any:
    module_name, _, qualname = name.partition(":")
    if module_name.split(".")[0] != "vlmdiag" or not qualname:
        raise ValueError(f"refusing to build {name!r}: not a vlmdiag class")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise ValueError(f"{name!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if set(values) != set(fields):
        raise ValueError(f"{name}: stored fields {sorted(values)} differ from the class's {sorted(fields)}")
    instance = obj(**{k: v for k, v in values.items() if fields[k].init})
    for k, v in values.items():
        if not fields[k].init:
            object.__setattr__(instance, k, v)
    return instance
