"""A checkpoint folder read tensor by tensor, with canonical names, and the compatibility check
between checkpoints that are compared."""

from __future__ import annotations

import json
from functools import cached_property, partial
from pathlib import Path

import torch

from vlmdiag.adapters import Adapter, TensorLocation, adapter_for
from vlmdiag.checkpoints import identity
from vlmdiag.checkpoints.safetensors_header import DTYPES, TensorEntry, read_header, read_tensor
from vlmdiag.checkpoints.reader import TensorReader
from vlmdiag.checkpoints.validate import check_layer_counts, check_regular_files, shard_files
from vlmdiag.errors import CheckpointError, IncompatibleCheckpointsError, printable
from vlmdiag.paths import protect_checkpoint

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_SHARD_INDEX = "model.safetensors.index.json"


class Checkpoint:
    """A local Hugging Face checkpoint folder, read lazily.

    Nothing but headers is read at construction; :meth:`get` reads one tensor. Tensor names are
    canonical (transformers 5.x in-memory names, see :mod:`vlmdiag.adapters`), whatever layout the
    files use. Never writes into the folder. ``store`` (a :class:`~vlmdiag.cache.ResultsCache`, or
    None) remembers the content digests of :attr:`fingerprint` between runs.

    Opening registers the folder with :func:`vlmdiag.paths.protect_checkpoint`: no report, plot
    or cache entry of this process may be written into it afterwards.

    Raises:
        CheckpointError: no config.json, no weights, pickle-only weights without
            ``allow_pickle``, a corrupt/truncated safetensors file, a FIFO or device in the
            folder, a malformed shard index, one that names a missing file or a file outside the
            folder, a config whose layer counts disagree with the weights, or an unsupported
            architecture (:mod:`vlmdiag.checkpoints.validate`).
    """

    def __init__(self, path: str | Path, *, allow_pickle: bool = False, spec: str | None = None, store=None):
        self.path = Path(path)
        self.spec = spec or str(path)
        self.store = store
        if not self.path.is_dir():
            raise CheckpointError(f"{self.path}: checkpoint folder does not exist")
        protect_checkpoint(self.path)  # from now on no report, plot or cache entry may land here
        check_regular_files(self.path)
        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"{self.path}: no config.json (is this a Hugging Face checkpoint folder?)")
        try:
            self._config_bytes = config_file.read_bytes()
        except OSError as error:
            raise CheckpointError(f"{config_file}: cannot read ({error.strerror})") from error
        try:
            self.config: dict = json.loads(self._config_bytes)
        except (ValueError, RecursionError) as error:
            raise CheckpointError(f"{config_file}: not valid JSON ({error})") from error
        if not isinstance(self.config, dict):
            raise CheckpointError(f"{config_file}: expected a JSON object, got {type(self.config).__name__}")
        try:
            self.adapter: Adapter = adapter_for(self.config, source=str(config_file))
            self.num_llm_layers = self.adapter.num_llm_layers(self.config)
            self.num_vision_layers = self.adapter.num_vision_layers(self.config)
        except CheckpointError as error:
            message = str(error)
            raise CheckpointError(message if str(config_file) in message else f"{config_file}: {message}") from None
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as error:  # odd value types
            raise CheckpointError(f"{config_file}: unexpected value ({type(error).__name__}: {error}); "
                                  f"layer counts must be integers") from error
        self._entries, self._pickled = self._index(allow_pickle)
        check_layer_counts(self, config_file)

    def _index(self, allow_pickle: bool):
        """Map canonical names to safetensors entries or to (pickle file, on-disk name)."""
        entries: dict[str, TensorEntry] = {}
        pickled: dict[str, tuple[Path, str]] = {}
        for file in self._weight_files():
            if file.suffix == ".safetensors":
                locations = dict(read_header(file)[0])
            else:
                if not allow_pickle:
                    raise CheckpointError(
                        f"{self.path}: only pickle weights ({file.name}); pickle files can run code "
                        f"when loaded. Convert to safetensors, or pass --allow-pickle if you trust them")
                locations = {name: (file, name) for name in _load_pickle(file)}
            for name, location in locations.items():
                canonical = self.adapter.canonical(name)
                if canonical in entries or canonical in pickled:
                    raise CheckpointError(f"{file}: tensor {name!r} appears twice (as {canonical!r})")
                (entries if isinstance(location, TensorEntry) else pickled)[canonical] = location
        return entries, pickled

    def _weight_files(self) -> list[Path]:
        index = self.path / _SHARD_INDEX
        if index.is_file():
            files = shard_files(index)
            missing = [name for name, f in files.items() if not f.is_file()]
            if missing:
                raise CheckpointError(f"{index}: names shard(s) that do not exist: {printable(', '.join(missing))}")
            return sorted(files.values())
        safetensors = sorted(self.path.glob("*.safetensors"))
        if safetensors:
            return safetensors
        pickles = sorted(f for f in self.path.iterdir() if f.suffix in _PICKLE_SUFFIXES)
        if pickles:
            return pickles
        raise CheckpointError(f"{self.path}: no weights (no *.safetensors, no model.safetensors.index.json)")

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Every canonical tensor name, sorted."""
        return tuple(sorted([*self._entries, *self._pickled]))

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of a tensor, from the header (no data read)."""
        if name in self._entries:
            return self._entries[name].shape
        return tuple(self.get(name).shape)

    def dtype(self, name: str) -> torch.dtype:
        """Stored dtype of a tensor."""
        if name in self._entries:
            return DTYPES[self._entries[name].dtype]
        return self.get(name).dtype

    def entry(self, name: str) -> TensorEntry | None:
        """The safetensors byte range of a tensor, or None for a tensor from a pickle file.

        Raises:
            KeyError: no such canonical tensor name.
        """
        if name in self._entries:
            return self._entries[name]
        if name in self._pickled:
            return None
        raise KeyError(f"{self.path}: no tensor {name!r}")

    def reader(self) -> TensorReader:
        """A :class:`~vlmdiag.checkpoints.reader.TensorReader` that reads slices of this
        checkpoint's tensors into buffers the caller owns (use it as a context manager)."""
        return TensorReader(self)

    def locate(self, name: str) -> TensorLocation:
        """Component, stack index and unified layer index of a canonical tensor name."""
        return self.adapter.locate(name, self.num_vision_layers)

    def get(self, name: str) -> torch.Tensor:
        """Read one tensor (stored dtype, CPU).

        Raises:
            KeyError: no such canonical tensor name.
        """
        if name in self._entries:
            return read_tensor(self._entries[name])
        if name in self._pickled:
            file, key = self._pickled[name]
            return _load_pickle(file)[key].clone()
        raise KeyError(f"{self.path}: no tensor {name!r}")

    @cached_property
    def fingerprint(self) -> str:
        """The checkpoint's exact identity (32 hex characters of xxh3-128): a digest of every
        tensor (canonical name, stored dtype, shape, every byte) and of every other top-level file
        of the folder by name and content (see :mod:`vlmdiag.checkpoints.identity`). Equal for two
        folders exactly when they hold the same model; a copy, or a re-sharding, keeps it.
        The first call reads every byte (remembered in :attr:`store`, when given, by file stat).

        Raises:
            CheckpointError: a file cannot be read.
        """
        return identity.compose(self.file_digests, self.tensor_digests)

    @cached_property
    def tensor_digests(self) -> dict[str, str]:
        """``{canonical name: digest}`` of every tensor (stored dtype, shape and bytes).

        Raises:
            CheckpointError: a weight file cannot be read.
        """
        digests: dict[str, str] = {}
        for file in self._weight_paths():
            if file.suffix == ".safetensors":
                compute = lambda file=file: identity.safetensors_digests(read_header(file)[0])  # noqa: E731
            else:
                compute = lambda file=file: {k: identity.torch_digest(v) for k, v in _load_pickle(file).items()}  # noqa: E731
            for name, digest in self._remembered("tensors", file, compute).items():
                digests[self.adapter.canonical(name)] = digest
        return digests

    @cached_property
    def file_digests(self) -> dict[str, str]:
        """``{file name: digest}`` of every top-level file of the folder other than the weights
        and the shard index (config, tokenizer, processor, ...; hidden files left out).

        Raises:
            CheckpointError: a file cannot be read.
        """
        weights = set(self._weight_paths())
        return {path.name: self._remembered("file", path, partial(identity.file_digest, path))
                for path in sorted(self.path.iterdir())
                if path.is_file() and not path.name.startswith(".") and path.name != _SHARD_INDEX
                and path not in weights}

    def _weight_paths(self) -> list[Path]:
        """The files that hold this checkpoint's tensors."""
        return sorted({e.file for e in self._entries.values()} | {f for f, _ in self._pickled.values()})

    def _remembered(self, kind: str, path: Path, compute):
        try:
            return identity.remembered(self.store, kind, path, compute)
        except OSError as error:
            raise CheckpointError(f"{path}: cannot read ({error.strerror or error})") from error

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, {self.adapter.family}, L={self.num_llm_layers})"


def _load_pickle(file: Path) -> dict[str, torch.Tensor]:
    """A pickle weights file read with ``weights_only=True`` (tensors and plain containers only: a
    pickle that names any other object is refused, since unpickling it could run code).

    Raises:
        CheckpointError: unreadable or refused file, or not a mapping of names to tensors.
    """
    import pickle

    state = None
    for mmap in (True, False):  # mmap needs the zip format of torch >= 1.6; older files load without
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
            break
        except pickle.UnpicklingError as error:
            raise CheckpointError(f"{file}: refused: the pickle holds objects other than tensors, and "
                                  f"unpickling them could run code; convert it to safetensors") from error
        except Exception as error:  # noqa: BLE001 — corrupt zip, truncated file, legacy format, ...
            if mmap:
                continue
            first = (str(error).strip().splitlines() or [""])[0]
            raise CheckpointError(f"{file}: cannot read pickle weights ({type(error).__name__}: {first})") from error
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in state.items())):
        raise CheckpointError(f"{file}: not a state dict (a mapping of tensor names to tensors)")
    return state


def check_compatible(*checkpoints: Checkpoint) -> None:
    """Refuse checkpoints that cannot be compared tensor by tensor.

    Collects every difference against the first checkpoint and raises once.

    Raises:
        IncompatibleCheckpointsError: different architecture family or layer counts, or tensors
            missing, unexpected or mis-shaped; the message names the checkpoints and tensors.
    """
    first, problems = checkpoints[0], []
    for other in checkpoints[1:]:
        where = f"{first.path} vs {other.path}"
        if other.adapter.family != first.adapter.family:
            problems.append(f"{where}: architecture {first.adapter.family} vs {other.adapter.family}")
            continue
        if (other.num_llm_layers, other.num_vision_layers) != (first.num_llm_layers, first.num_vision_layers):
            problems.append(f"{where}: {first.num_llm_layers} vs {other.num_llm_layers} LLM layers, "
                            f"{first.num_vision_layers} vs {other.num_vision_layers} vision blocks")
        ours, theirs = set(first.names), set(other.names)
        for label, names in (("missing from the second", ours - theirs), ("only in the second", theirs - ours)):
            if names:
                problems.append(f"{where}: {len(names)} tensor(s) {label}: {_some(names)}")
        shaped = sorted(n for n in ours & theirs if first.shape(n) != other.shape(n))
        if shaped:
            problems.append(f"{where}: {len(shaped)} tensor(s) differ in shape: " + ", ".join(
                f"{n} {list(first.shape(n))} vs {list(other.shape(n))}" for n in shaped[:5])
                + (" ..." if len(shaped) > 5 else ""))
    if problems:
        raise IncompatibleCheckpointsError("incompatible checkpoints: " + "; ".join(problems))


def _some(names: set[str], limit: int = 5) -> str:
    shown = sorted(names)[:limit]
    return ", ".join(shown) + (f" ... ({len(names) - limit} more)" if len(names) > limit else "")
