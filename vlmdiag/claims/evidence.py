"""A recipe's checkpoints and the measurements made on them, each made once per run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vlmdiag.checkpoints import Checkpoint, open_checkpoint

ROLES = ("base", "rl", "origin")


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def can_run(folder) -> bool:
    """Whether a checkpoint folder holds what inference needs besides weights: a tokenizer
    vocabulary and an image-processor configuration (weight-only folders, such as the planted
    triples of :mod:`vlmdiag.planted`, do not)."""
    from pathlib import Path

    folder = Path(folder)
    return (any((folder / f).is_file() for f in _TOKENIZER_FILES)
            and any((folder / f).is_file() for f in _PROCESSOR_FILES))


@dataclass(frozen=True)
class Recipe:
    """The checkpoints of one RL recipe. ``base`` is the paper's IN, ``origin`` its Base."""

    name: str
    base: str
    rl: str
    origin: str | None = None
    rl_frozen: tuple[tuple[str, str], ...] = ()

    def specs(self) -> dict[str, str]:
        """``{role: spec}`` of the checkpoints given."""
        out = {"base": self.base, "rl": self.rl}
        if self.origin:
            out["origin"] = self.origin
        out.update({f"rl_frozen_{region}": spec for region, spec in self.rl_frozen})
        return out


class CheckpointCache:
    """Opened checkpoints by spec, shared by every recipe of a run (a spec is opened once)."""

    def __init__(self, *, allow_pickle: bool = False):
        self.allow_pickle = allow_pickle
        self._open: dict[str, Checkpoint] = {}

    def get(self, spec: str) -> Checkpoint:
        if spec not in self._open:
            self._open[spec] = open_checkpoint(spec, allow_pickle=self.allow_pickle)
        return self._open[spec]


@dataclass
class Evidence:
    """Lazily computed, memoized measurements of one recipe.

    ``progress(label)`` returns a ``(done, total)`` callback for a long step, or None.
    """

    recipe: Recipe
    checkpoints: CheckpointCache
    progress: Callable[[str], Callable[[int, int], None] | None] = lambda label: None
    wants_spectra: bool = False  # a spectral claim is selected: make one weight pass, not two
    _memo: dict[str, Any] = field(default_factory=dict)

    _models: dict[str, Any] = field(default_factory=dict)
    _answers: dict[str, str] = field(default_factory=dict)  # run_abilities answer cache, shared

    def has(self, need: str) -> bool:
        """Whether the recipe supplies what a claim ``needs``: ``origin``, ``rl_frozen``,
        ``probes`` (always: the organism's held-out items are built in), ``inference`` (the base
        and RL folders hold a tokenizer and an image processor, so the models can run)."""
        if need == "inference":
            return all(can_run(self.checkpoint(role).path) for role in ("base", "rl"))
        return {"origin": self.recipe.origin is not None,
                "rl_frozen": bool(self.recipe.rl_frozen),
                "probes": True}.get(need, False)

    def checkpoint(self, role: str) -> Checkpoint:
        return self.checkpoints.get(self.recipe.specs()[role])

    @property
    def num_llm_layers(self) -> int:
        return self.checkpoint("base").num_llm_layers

    def measure(self, name: str, settings: dict | None = None) -> Any:
        """The named measurement, computed on first use.

        ``settings`` (a claim's :meth:`~vlmdiag.claims.registry.ClaimThresholds.probe_settings`,
        plus ``regions`` for claims measured at the cuts) are passed to ``_measure_<name>`` as
        keyword arguments and are part of the memo key.
        """
        key = name if not settings else (name, tuple(sorted(settings.items())))
        if key not in self._memo:
            self._memo[key] = getattr(self, f"_measure_{name}")(**(settings or {}))
        return self._memo[key]

    # ------------------------------------------------------------------ models and probe answers

    def loaded(self, role: str):
        """The :class:`~vlmdiag.runtime.model.LoadedModel` of a role (``base``, ``rl``, ``origin``,
        ``rl_frozen_<Region>``), loaded once per run (default device and dtype)."""
        spec = self.recipe.specs()[role]
        if spec not in self._models:
            from vlmdiag.runtime.model import load_model

            self._models[spec] = load_model(self.checkpoint(role).path)
        return self._models[spec]

    def _abilities(self, loaded, fingerprint: str, items, max_new_tokens: int) -> dict:
        """Mvis/Mv2r/Mrea of one model state (``score_abilities``), with answers cached by
        fingerprint, prompt and decoding, so a model state asked twice (IN in the stage table
        and in the transplant sweep) generates once."""
        from vlmdiag.measure.abilities import make_predict, run_abilities, score_abilities

        predict, decoding = make_predict(loaded, max_new_tokens=max_new_tokens)
        outcomes = run_abilities(items, predict, cache=self._answers, fingerprint=fingerprint, decoding=decoding)
        return score_abilities(outcomes)

    # ------------------------------------------------------------------ inference measurements

    def _measure_attention(self, *, n_items: int, max_new_tokens: int, seed: int):
        from vlmdiag.claims.inference import measure_attention
        from vlmdiag.organism.tasks import ability_items


        items = ability_items("math_vqa", n_items, seed=seed)
        return measure_attention(self.loaded("base"), self.loaded("rl"), items, max_new_tokens=max_new_tokens)

    def _measure_skip(self, *, n_items: int, max_new_tokens: int, seed: int):
        from vlmdiag.measure.skip import skip_sweep
        from vlmdiag.organism.tasks import ability_items

        items = ability_items("text_math", n_items, seed=seed)
        # The items' own question, as Mrea asks them (the paper's GSM8K prefix is for real math sets).
        return skip_sweep(self.loaded("base"), items, max_new_tokens=max_new_tokens, prefix="")

    def _measure_swap(self, *, n_items: int, max_new_tokens: int, seed: int, mode: str = "from"):
        from vlmdiag.measure.swap import swap_pairs
        from vlmdiag.organism.tasks import SWAP_TASK_OF, swap_pairs as organism_pairs

        loaded = self.loaded("base")
        return [r for task in SWAP_TASK_OF
                for r in swap_pairs(loaded, organism_pairs(task, n_items, seed=seed), mode=mode,
                                    max_new_tokens=max_new_tokens)]

    def _measure_abilities(self, *, n_items: int, max_new_tokens: int, seed: int):
        from vlmdiag.claims.inference import AbilityTable
        from vlmdiag.probes.organism import organism_probe_set

        items = organism_probe_set(n_items, seed=seed).all_items()
        scores, notes = {}, []
        if self.recipe.origin is not None:
            if can_run(self.checkpoint("origin").path):
                scores["Base"] = self._abilities(self.loaded("origin"), self.checkpoint("origin").fingerprint,
                                                 items, max_new_tokens)
            else:
                notes.append("Base (--origin) left out: its folder has no tokenizer/processor")
        else:
            notes.append("Base stage left out: no --origin")
        for label, role in (("IN", "base"), ("RL", "rl")):
            scores[label] = self._abilities(self.loaded(role), self.checkpoint(role).fingerprint, items, max_new_tokens)
        return AbilityTable(scores, tuple(notes))

    def _measure_transplant(self, *, n_items: int, max_new_tokens: int, seed: int, regions):
        from vlmdiag.claims.inference import AbilityTable
        from vlmdiag.probes.organism import organism_probe_set
        from vlmdiag.transplant import Splicer

        items = organism_probe_set(n_items, seed=seed).all_items()
        base, rl = self.checkpoint("base"), self.checkpoint("rl")
        loaded = self.loaded("base")
        scores = {}
        splicer = Splicer(loaded.model, base, rl, regions=regions)
        for variant, _ in splicer.sweep():
            scores[variant.label("IN", "RL")] = self._abilities(loaded, splicer.fingerprint(variant), items,
                                                                max_new_tokens)
        return AbilityTable(scores, (f"splices at cuts {regions.cuts} ({regions.preset}); non-decoder "
                                     "components from the Early source",))

    def _measure_freezing(self, *, n_items: int, max_new_tokens: int, seed: int, regions):
        from vlmdiag.claims.inference import AbilityTable
        from vlmdiag.probes.organism import organism_probe_set

        items = organism_probe_set(n_items, seed=seed).all_items()
        scores, notes = {}, []
        roles = [("IN", "base"), ("RL", "rl")] + [(f"RL-frozen-{r}", f"rl_frozen_{r}") for r, _ in self.recipe.rl_frozen]
        for label, role in roles:
            if role.startswith("rl_frozen_") and not can_run(self.checkpoint(role).path):
                notes.append(f"{label} left out: its folder has no tokenizer/processor")
                continue
            scores[label] = self._abilities(self.loaded(role), self.checkpoint(role).fingerprint, items, max_new_tokens)
        return AbilityTable(scores, tuple(notes))

    def _weight_pass(self, spectra: bool):
        from vlmdiag.measure.weights import weight_deltas

        origin = self.checkpoint("origin") if self.recipe.origin else None
        label = "weight spectra" if spectra else "weight norms"
        return weight_deltas(self.checkpoint("base"), self.checkpoint("rl"), origin, spectra=spectra,
                             progress=self.progress(f"{self.recipe.name}: {label}"))

    def _measure_weight_spectra(self):
        result = self._weight_pass(spectra=True)
        self._memo.setdefault("weight_deltas", result)  # norms come with spectra
        return result

    def _measure_weight_deltas(self):
        return self.measure("weight_spectra") if self.wants_spectra else self._weight_pass(spectra=False)
