"""User probe suites: a YAML manifest (``--probes PATH.yaml`` or ``--probes manifest:PATH``).

Schema (field names follow lmms-eval's task YAML where one fits: ``dataset_path``,
``generation_kwargs.max_new_tokens``; image paths are relative to the manifest's folder)::

    name: my-probes                 # optional; the report's suite name (default: the file name)
    answer_format: boxed            # optional: none | think_answer | boxed (default none)
    generation_kwargs:
      max_new_tokens: 1024          # optional; default: the claim's max_new_tokens (thresholds.yaml)
    items:                          # ability items by kind, each a list or {dataset_path: FILE.jsonl}
      vqa:                          # Mvis: asked with the image and with a black image
        - {id: q1, image: img/q1.png, question: "How many apples?", answer: "3"}
      math_vqa:                     # Mv2r: also asked with a black image + description
        - {id: m1, image: img/m1.png, question: "...", answer: "12", description: "exact text"}
      text_math:                    # Mrea and layer skipping: text only
        dataset_path: math.jsonl    # JSON Lines of {id, question, answer}
    swap_pairs:                     # by task: ocr, counting, grounding, recognition
      counting:
        - {id: c1, target_image: a.png, source_image: b.png, prompt: "How many dots?",
           target_answer: "3", source_answer: "5"}
      grounding:                    # boxes x1, y1, x2, y2 in pixels of the image
        - {id: g1, target_image: a.png, source_image: b.png, prompt: "Where is the dot?",
           target_bbox: [1, 2, 30, 40], source_bbox: [50, 60, 90, 99]}

Optional item fields: ``choices`` (a list of option texts; ``answer`` may be its letter), ``meta``.
A malformed manifest, a missing field or a missing image file raises a one-line
:class:`~vlmdiag.errors.ProbeError` naming ``file:line``; an image that exists but cannot be
decoded leaves its item out, listed in the report (``left_out``).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from PIL import Image, UnidentifiedImageError

from vlmdiag.errors import ProbeError, UsageError
from vlmdiag.probes.prompts import ANSWER_FORMATS
from vlmdiag.probes.records import read_records
from vlmdiag.probes.suite import RecordingSuite, resolved
from vlmdiag.probes.types import AbilityItem, SwapPair

KINDS = ("vqa", "math_vqa", "text_math")
TASKS = ("ocr", "counting", "grounding", "recognition")
_TOP = {"name", "answer_format", "generation_kwargs", "items", "swap_pairs", "description"}
_ITEM = {"id", "image", "question", "answer", "description", "choices", "meta"}
_PAIR = {"id", "target_image", "source_image", "prompt", "target_answer", "source_answer",
         "target_bbox", "source_bbox", "meta"}
_LINE = "__line__"


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records each mapping's 1-based line under ``__line__``."""


def _mapping(loader, node):
    out = loader.construct_mapping(node, deep=True)
    out[_LINE] = node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


class _Undecodable(Exception):
    pass


class ManifestSuite(RecordingSuite):
    """The items a manifest lists (module docstring). Everything is read and checked on
    construction, images included, so a bad manifest fails before any model is loaded.

    Raises:
        UsageError: no path given.
        ProbeError: the manifest or a file it names is missing or malformed (``file:line``).
    """

    def __init__(self, path: str | None):
        super().__init__()
        if not path:
            raise UsageError("--probes manifest:PATH: give the manifest's path")
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ProbeError(f"{self.path}: probe manifest does not exist")
        try:
            doc = yaml.load(self.path.read_text(encoding="utf-8"), Loader=_LineLoader)  # noqa: S506 (safe loader)
        except UnicodeDecodeError as error:
            raise ProbeError(f"{self.path}: not UTF-8 text ({error.reason})") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ProbeError(f"{self.path}{line}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
        if not isinstance(doc, dict):
            raise ProbeError(f"{self.path}:1: a probe manifest is a mapping with items and/or swap_pairs")
        self._check_keys(doc, _TOP, "the manifest")
        self.name = str(doc.get("name") or self.path.stem)
        self.answer_format = str(doc.get("answer_format") or "none")
        if self.answer_format not in ANSWER_FORMATS:
            raise ProbeError(f"{self._at(doc)}: answer_format {self.answer_format!r} is not one of "
                             f"{', '.join(ANSWER_FORMATS)}")
        gen = doc.get("generation_kwargs") or {}
        if not isinstance(gen, dict):
            raise ProbeError(f"{self._at(doc)}: generation_kwargs must be a mapping")
        budget = gen.get("max_new_tokens")
        if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 1):
            raise ProbeError(f"{self._at(gen)}: generation_kwargs.max_new_tokens must be a positive integer")
        self.max_new_tokens = budget
        self._left_out: list[str] = []
        self.items = {kind: tuple(self._ability(kind, rec, where)
                                  for rec, where in self._entries(doc, "items", kind, KINDS)) for kind in KINDS}
        self.pairs = {task: tuple(self._pair(task, rec, where)
                                  for rec, where in self._entries(doc, "swap_pairs", task, TASKS)) for task in TASKS}
        self.items = {k: tuple(i for i in v if i is not None) for k, v in self.items.items()}
        self.pairs = {k: tuple(p for p in v if p is not None) for k, v in self.pairs.items()}
        seen: dict[str, str] = {}
        for entry in [*(i for v in self.items.values() for i in v), *(p for v in self.pairs.values() for p in v)]:
            if entry.id in seen:
                raise ProbeError(f"{entry.meta['where']}: id {entry.id!r} already given at {seen[entry.id]}")
            seen[entry.id] = entry.meta["where"]
        if not any(self.items.values()) and not any(self.pairs.values()):
            raise ProbeError(f"{self.path}: the manifest lists no items and no swap pairs")

    # ------------------------------------------------------------------ reading
    def _at(self, node) -> str:
        return f"{self.path}:{node.get(_LINE, 1)}" if isinstance(node, dict) else str(self.path)

    def _check_keys(self, node: dict, allowed: set, what: str, where: str | None = None) -> None:
        unknown = sorted(str(k) for k in node if k != _LINE and k not in allowed)
        if unknown:
            raise ProbeError(f"{where or self._at(node)}: unknown key(s) {', '.join(unknown)} in {what}; "
                             f"expected {', '.join(sorted(allowed))}")

    def _entries(self, doc: dict, section: str, key: str, allowed: tuple):
        """``(record, where)`` of every entry of ``doc[section][key]`` (inline list or dataset_path)."""
        block = doc.get(section) or {}
        if not isinstance(block, dict):
            raise ProbeError(f"{self._at(doc)}: {section} must be a mapping of {' / '.join(allowed)} to items")
        self._check_keys(block, set(allowed), section)
        value = block.get(key)
        if value is None:
            return
        if isinstance(value, dict):
            self._check_keys(value, {"dataset_path"}, f"{section}.{key}")
            if not value.get("dataset_path"):
                raise ProbeError(f"{self._at(value)}: {section}.{key} needs dataset_path (a .jsonl file) or a list")
            file = self.path.parent / str(value["dataset_path"])
            if not file.is_file():
                raise ProbeError(f"{self._at(value)}: dataset_path {file} does not exist")
            for record in read_records(file):
                yield record.data, record.where
            return
        if not isinstance(value, list):
            raise ProbeError(f"{self._at(block)}: {section}.{key} must be a list of entries or {{dataset_path: FILE}}")
        for entry in value:
            if not isinstance(entry, dict):
                raise ProbeError(f"{self._at(block)}: each {section}.{key} entry must be a mapping, got {entry!r:.40}")
            yield entry, self._at(entry)

    def _image(self, record: dict, field: str, where: str) -> Image.Image:
        name = record.get(field)
        if not isinstance(name, str) or not name:
            raise ProbeError(f"{where}: missing field {field} (an image path relative to the manifest)")
        file = self.path.parent / name
        if not file.is_file():
            raise ProbeError(f"{where}: image {file} does not exist")
        try:
            with Image.open(file) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
            raise _Undecodable(f"{where}: image {file} not decodable ({type(error).__name__}: {error})") from None

    def _text(self, record: dict, field: str, where: str, required: bool = True) -> str | None:
        value = record.get(field)
        if value is None or value == "":
            if required:
                raise ProbeError(f"{where}: missing field {field}")
            return None
        if isinstance(value, (dict, list)):
            raise ProbeError(f"{where}: {field} must be a string or number, got {type(value).__name__}")
        return str(value)

    def _ability(self, kind: str, record: dict, where: str) -> AbilityItem | None:
        self._check_keys(record, _ITEM, f"a {kind} item", where)
        choices = record.get("choices")
        if choices is not None and (not isinstance(choices, list) or not choices):
            raise ProbeError(f"{where}: choices must be a non-empty list of option texts")
        description = self._text(record, "description", where, required=kind == "math_vqa")
        try:
            image = self._image(record, "image", where) if kind != "text_math" else None
        except _Undecodable as error:
            self._left_out.append(str(error))
            return None
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        return AbilityItem(self._text(record, "id", where), kind, self._text(record, "question", where),
                           self._text(record, "answer", where), image, description,
                           tuple(str(c) for c in choices) if choices else None,
                           meta={**{k: v for k, v in meta.items() if k != _LINE}, "where": where, "source": "manifest"})

    def _pair(self, task: str, record: dict, where: str) -> SwapPair | None:
        self._check_keys(record, _PAIR, f"a {task} swap pair", where)
        boxes = {}
        for field in ("target_bbox", "source_bbox"):
            value = record.get(field)
            if value is not None and not (isinstance(value, list) and len(value) == 4
                                          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
                raise ProbeError(f"{where}: {field} must be 4 numbers x1, y1, x2, y2 (pixels)")
            boxes[field] = tuple(float(v) for v in value) if value is not None else None
        if task == "grounding" and boxes["source_bbox"] is None:
            raise ProbeError(f"{where}: a grounding pair needs source_bbox")
        try:
            target, source = self._image(record, "target_image", where), self._image(record, "source_image", where)
        except _Undecodable as error:
            self._left_out.append(str(error))
            return None
        if target.size != source.size:
            raise ProbeError(f"{where}: target {target.size} and source {source.size} differ in size; "
                             "visual-token swapping needs equal sizes")
        return SwapPair(self._text(record, "id", where), task, target, source, self._text(record, "prompt", where),
                        self._text(record, "target_answer", where, required=False),
                        self._text(record, "source_answer", where, required=False), **boxes,
                        meta={"where": where, "source": "manifest"})

    # ------------------------------------------------------------------ suite
    def source(self) -> dict:
        return {"manifest": resolved(self.path)}

    def left_out(self) -> list[str]:
        return list(self._left_out)

    def _ability_pool(self, kind, n, seed):
        items = self.items.get(kind, ())
        return items, (None if items else f"{self.path}: the manifest lists no {kind} items")

    def _swap_pool(self, task, n, seed):
        pairs = self.pairs.get(task, ())
        return pairs, (None if pairs else f"{self.path}: the manifest lists no {task} swap pairs")
