"""The ``paper:DIR`` probe suite: the paper's released probes from local copies (no download).

Layout of ``DIR`` (every part optional; a missing part empties only the requests that need it,
with the reason in :attr:`~vlmdiag.probes.suite.Drawn.note`):

* the vision-functionality swap pairs: ``DIR/<task>/data.jsonl`` (``counting``, ``grounding``,
  ``ocr``, ``recognition``; the layout of the authors' ``dataset/vision_functionality_dataset``),
  or the same under ``DIR/vision_functionality/``; read by
  :func:`vlmdiag.probes.vision_functionality.load_vision_functionality`;
* MathVista testmini (Mvis: ``general-vqa``, Mv2r: ``math-targeted-vqa``):
  ``DIR/mathvista/testmini.json`` (the GitHub release, images under ``DIR/mathvista/images/``),
  ``testmini.jsonl``, or the Hugging Face parquet export ``DIR/mathvista/**/testmini*.parquet``;
* the Mv2r descriptions (the paper used GPT-4o-mini captions; vlmdiag never calls an API):
  ``DIR/mathvista/descriptions.jsonl`` or ``DIR/descriptions.jsonl``, JSON Lines of
  ``{"pid": ..., "description": ...}``;
* MATH-500 (Mrea): ``DIR/math500/test.jsonl`` (``HuggingFaceH4/MATH-500``), ``test.json`` or
  ``DIR/math500/**/*.parquet``.

Swap pairs are the first ``n`` lines per task (the authors' code takes the first 50); ability items
are drawn with :func:`vlmdiag.probes.records.sample` and the run's seed.
"""

from __future__ import annotations

from pathlib import Path

from vlmdiag.errors import UsageError
from vlmdiag.probes.suite import RecordingSuite, resolved

SWAP_TASKS = ("counting", "grounding", "ocr", "recognition")


def _first(folder: Path, names: tuple[str, ...], pattern: str) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.rglob(pattern)) if folder.is_dir() else []
    return found[0] if found else None


class PaperSuite(RecordingSuite):
    """Probe items from a local folder of the paper's released probes (module docstring).

    Raises (on construction):
        UsageError: ``DIR`` was not given or is not a folder.
    """

    name = "paper"
    answer_format = "boxed"       # the authors' transfer and layer-skip queries (paper code, §8)
    max_new_tokens = 1024

    def __init__(self, root: str | None):
        super().__init__()
        if not root:
            raise UsageError("--probes paper:DIR: give the folder of the paper's probes (paper:/data/probes)")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise UsageError(f"--probes paper:{root}: {self.root} is not a folder")
        nested = self.root / "vision_functionality"
        self.pairs_root = nested if nested.is_dir() else self.root
        mathvista = self.root / "mathvista"
        self.mathvista = _first(mathvista, ("testmini.json", "testmini.jsonl"), "testmini*.parquet")
        self.descriptions = _first(mathvista, ("descriptions.jsonl",), "descriptions.jsonl") \
            or _first(self.root, ("descriptions.jsonl",), "descriptions.jsonl")
        self.math500 = _first(self.root / "math500", ("test.jsonl", "test.json"), "*.parquet")
        self._left_out: list[str] = []
        self._loaded: dict = {}
        self._check_records()

    def _check_records(self) -> None:
        """Read every record (not the images) now, so a malformed file fails before any model
        loads, naming ``file:line``."""
        from vlmdiag.probes.math500 import load_math500
        from vlmdiag.probes.mathvista import load_mathvista
        from vlmdiag.probes.records import jsonl_lines, load_descriptions
        from vlmdiag.probes.vision_functionality import _answers, parse_line

        for task in SWAP_TASKS:
            path = self.pairs_root / task / "data.jsonl"
            if path.is_file():
                for number, line in jsonl_lines(path):
                    if line.strip():
                        where = f"{path}:{number}"
                        _answers(parse_line(line, where=where, folder=path.parent), where)
        if self.descriptions is not None:
            load_descriptions(self.descriptions)
        if self.mathvista is not None:
            load_mathvista(self.mathvista, n=1)   # checks every record; decodes one image per category
        if self.math500 is not None:
            load_math500(self.math500, n=1)

    def source(self) -> dict:
        def shown(path):
            return resolved(path) if path is not None else None

        tasks = [t for t in SWAP_TASKS if (self.pairs_root / t / "data.jsonl").is_file()]
        return {"root": resolved(self.root), "vision_functionality": shown(self.pairs_root) if tasks else None,
                "swap_tasks": tasks, "mathvista": shown(self.mathvista), "descriptions": shown(self.descriptions),
                "math500": shown(self.math500)}

    def left_out(self) -> list[str]:
        return list(dict.fromkeys(self._left_out))

    def _swap_pool(self, task, n, seed):
        from vlmdiag.probes.vision_functionality import load_vision_functionality

        path = self.pairs_root / task / "data.jsonl"
        if not path.is_file():
            return (), f"no {task} swap pairs: {path} does not exist (the vision_functionality layout)"
        loaded = load_vision_functionality(self.pairs_root, tasks=[task], limit=n)
        self._left_out += loaded.skipped_reasons
        if loaded.skipped:
            return loaded.pairs, (f"{len(loaded.pairs)} of the first {len(loaded.pairs) + loaded.skipped} "
                                  f"{task} pairs of {path}: {loaded.skipped} left out (image not readable; "
                                  "listed in left_out)")
        return loaded.pairs, None

    def _ability_pool(self, kind, n, seed):
        if kind == "text_math":
            if self.math500 is None:
                return (), f"no MATH-500 copy: put test.jsonl under {self.root / 'math500'} (Mrea, layer skipping)"
            from vlmdiag.probes.math500 import load_math500

            probes = self._load(("math500", n, seed), lambda: load_math500(self.math500, n=n, seed=seed))
        else:
            if self.mathvista is None:
                return (), (f"no MathVista testmini copy: put testmini.json (and images/) or the parquet "
                            f"export under {self.root / 'mathvista'} (Mvis, Mv2r)")
            if kind == "math_vqa" and self.descriptions is None:
                from vlmdiag.probes.mathvista import NO_DESCRIPTIONS

                return (), f"{NO_DESCRIPTIONS} at {self.root / 'mathvista' / 'descriptions.jsonl'}"
            from vlmdiag.probes.mathvista import load_mathvista

            probes = self._load(("mathvista", n, seed), lambda: load_mathvista(
                self.mathvista, descriptions=self.descriptions, n=n, seed=seed))
        self._left_out += probes.skipped_items
        items = probes.items.get(kind, ())
        if not items:
            return (), "; ".join(probes.skipped.values()) or f"{probes.source[0]}: no {kind} items"
        if len(items) < n and probes.skipped_items:
            return items, (f"{len(items)} {kind} items from {probes.source[0]}: {len(probes.skipped_items)} "
                           "left out (image not decodable; listed in left_out)")
        return items, None

    def _load(self, key, load):
        if key not in self._loaded:
            self._loaded[key] = load()
        return self._loaded[key]
