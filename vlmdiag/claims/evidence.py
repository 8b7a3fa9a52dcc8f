"""A recipe's checkpoints and the measurements made on them, each made once per run."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from functools import partial
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
    """Opened checkpoints by spec, shared by every recipe of a run (a spec is opened once).
    ``store`` (a :class:`~vlmdiag.cache.ResultsCache`, or None) remembers their content digests."""

    def __init__(self, *, allow_pickle: bool = False, trust_remote_code: bool = False, store=None):
        self.allow_pickle = allow_pickle
        self.trust_remote_code = trust_remote_code  # for loading models (--trust-remote-code)
        self.store = store
        self._open: dict[str, Checkpoint] = {}

    def get(self, spec: str) -> Checkpoint:
        if spec not in self._open:
            self._open[spec] = open_checkpoint(spec, allow_pickle=self.allow_pickle, store=self.store)
        return self._open[spec]


@dataclass(frozen=True)
class _Plan:
    """How to make one measurement: the checkpoint roles it reads, the probe items it asks (part
    of the cache key, by content), where it computes, and ``compute()``."""

    roles: tuple[str, ...]
    compute: Callable[[], Any]
    device: Callable[[], str]
    probes: Any = None
    also_in: tuple[str, ...] = ()  # measurements whose cached value holds this one (spectra hold norms)


def _no_progress(done: int, total: int) -> None:
    pass


@dataclass
class Evidence:
    """Lazily computed, memoized measurements of one recipe.

    A measurement is made once per run (memo) and, when ``results`` is a
    :class:`~vlmdiag.cache.ResultsCache`, read from or stored in the persistent cache, keyed by
    the checkpoints' identities, the settings, the probe items, the measuring code and the
    environment (see :mod:`vlmdiag.cache`). ``cache_log`` records ``(measurement, status)`` for
    every :meth:`measure` call, status ``hit`` (read from the cache), ``miss`` (measured now and
    stored) or ``off`` (measured now, not cached).

    ``progress(label)`` returns a ``(done, total)`` callback for a long step (optionally with a
    ``close()`` method, called when the step ends), or None.
    """

    recipe: Recipe
    checkpoints: CheckpointCache
    progress: Callable[[str], Callable[[int, int], None] | None] = lambda label: None
    wants_spectra: bool = False  # a spectral claim is selected: make one weight pass, not two
    results: Any = None  # a vlmdiag.cache.ResultsCache, or None for no persistent cache
    cache_log: list[tuple[str, str]] = field(default_factory=list)
    _memo: dict[Any, tuple[Any, str]] = field(default_factory=dict)

    _models: Any = None  # a vlmdiag.runtime.model.ResidentModels (one model per GPU), made on first use
    _answers: dict[str, str] = field(default_factory=dict)  # run_abilities answer cache, shared
    _identities: dict[str, dict] = field(default_factory=dict)

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
        """The named measurement, computed on first use (or read from the results cache).

        ``settings`` (a claim's :meth:`~vlmdiag.claims.registry.ClaimThresholds.probe_settings`,
        plus ``regions`` for claims measured at the cuts) are passed to ``_plan_<name>`` as
        keyword arguments and are part of the memo and cache keys.
        """
        key = name if not settings else (name, tuple(sorted(settings.items())))
        if key not in self._memo:
            self._memo[key] = self._obtain(name, dict(settings or {}))
        value, status = self._memo[key]
        self.cache_log.append((name, status))
        return value

    def _obtain(self, name: str, settings: dict) -> tuple[Any, str]:
        if name == "weight_deltas" and self.wants_spectra:
            value = self.measure("weight_spectra")  # norms come with spectra: one pass
            return value, self.cache_log[-1][1]
        plan: _Plan = getattr(self, f"_plan_{name}")(**settings)
        material = self._cache_material(name, settings, plan)
        if material is None:
            value, status = plan.compute(), "off"
        else:
            value, hit = self.results.obtain(name, material, plan.compute, also_in=plan.also_in)
            status = "hit" if hit else "miss"
        if name == "weight_spectra":
            self._memo.setdefault("weight_deltas", (value, status))
        return value, status

    def _cache_material(self, name: str, settings: dict, plan: _Plan) -> dict | None:
        """The cache key material of a measurement, or None when there is no results cache or
        the key cannot be computed (with a warning)."""
        if self.results is None:
            return None
        try:
            return self._material(name, settings, plan)
        except (TypeError, OSError) as error:
            from vlmdiag.cache import CacheWarning

            warnings.warn(f"measurement {name!r} not cached: its key cannot be computed ({error})",
                          CacheWarning, stacklevel=3)
            return None

    def _material(self, name: str, settings: dict, plan: _Plan) -> dict:
        """The cache key material of a measurement (see :mod:`vlmdiag.cache`)."""
        from vlmdiag.cache import checkpoint_identity, key_material

        for role in plan.roles:
            if role not in self._identities:
                self._identities[role] = checkpoint_identity(self.checkpoint(role))
        return key_material(name, checkpoints={role: self._identities[role] for role in plan.roles},
                            device=plan.device(), settings=settings, probes=plan.probes)

    @contextmanager
    def _step(self, label: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
        """A long step's progress callback (a no-op without a display), closed when it ends."""
        callback = self.progress(f"{self.recipe.name}: {label}")
        if callback is not None and total is not None:
            callback(0, total)
        try:
            yield callback or _no_progress
        finally:
            close = getattr(callback, "close", None)
            if close is not None:
                close()

    @staticmethod
    def _model_device() -> str:
        from vlmdiag.cache import device_description
        from vlmdiag.runtime.model import default_device, default_dtype

        device = default_device()
        return device_description(device, default_dtype(device))

    @staticmethod
    def _weight_device() -> str:
        import torch

        from vlmdiag.cache import device_description

        return device_description("cuda" if torch.cuda.is_available() else "cpu", "torch.float32")

    # ------------------------------------------------------------------ models and probe answers

    def loaded(self, role: str):
        """The :class:`~vlmdiag.runtime.model.LoadedModel` of a role (``base``, ``rl``, ``origin``,
        ``rl_frozen_<Region>``), loaded once per run (default device and dtype); on a GPU one model
        is resident at a time, so loading another frees the previous one."""
        if self._models is None:
            from vlmdiag.runtime.model import ResidentModels

            self._models = ResidentModels()
        return self._models.get(self.recipe.specs()[role], self.checkpoint(role).path,
                                trust_remote_code=self.checkpoints.trust_remote_code)

    def _abilities(self, loaded: Callable[[], Any], fingerprint: str, items,
                   max_new_tokens: int, tick: Callable[[int], None] = lambda n: None) -> dict:
        """Mvis/Mv2r/Mrea of one model state (``score_abilities``).

        ``fingerprint`` is the state's exact identity (a checkpoint's
        :attr:`~vlmdiag.checkpoints.Checkpoint.fingerprint`, or a splice's
        :meth:`~vlmdiag.transplant.Splicer.fingerprint`): its graded answers are an ``answers``
        entry of the results cache keyed by it, the items and the decoding, so a model state asked
        by several claims (IN and RL by the stage table, the transplant sweep and the freezing
        claim; a splice equal to a parent byte for byte) generates once per machine, across
        pytest-xdist workers too; within a run, answers are also shared through an in-memory cache
        keyed by the same identity. ``loaded()`` is called only when answers are generated.
        ``tick(n)`` is called after each batch of ``n`` answers."""
        from vlmdiag.measure.abilities import greedy_decoding, make_predict, run_abilities, score_abilities

        decoding = greedy_decoding(max_new_tokens)

        def generate():
            predict = make_predict(loaded(), max_new_tokens=max_new_tokens)[0]

            def counted(messages_batch, images_batch):
                answers = predict(messages_batch, images_batch)
                tick(len(answers))
                return answers

            return run_abilities(items, counted, cache=self._answers, fingerprint=fingerprint, decoding=decoding)

        plan = _Plan((), generate, self._model_device, probes=items)  # the state's identity covers its files
        material = self._cache_material("answers", {"state": fingerprint, "decoding": decoding}, plan)
        outcomes = generate() if material is None else self.results.obtain("answers", material, generate)[0]
        return score_abilities(outcomes)

    def _ability_sweep(self, label: str, items, max_new_tokens: int, count: int,
                       states: Iterator[tuple[str, Callable[[], Any], str]]) -> dict:
        """``{label: scores}`` of ``count`` model states on the same items, as one progress step.

        ``states`` yields ``(label, loaded, fingerprint)`` (see :meth:`_abilities`) and
        keeps the model in that state until the next item is asked for (a splice sweep); it is
        closed when done or on error."""
        from vlmdiag.measure.abilities import build_prompts

        per_state = sum(len(build_prompts(item)[0]) for item in items)
        total = per_state * count
        scores = {}
        with self._step(label, total) as progress, closing(states):
            for index, (name, loaded, fingerprint) in enumerate(states):
                done = [index * per_state]

                def tick(n: int, done=done, end=(index + 1) * per_state) -> None:
                    done[0] = min(done[0] + n, end)
                    progress(done[0], total)

                scores[name] = self._abilities(loaded, fingerprint, items, max_new_tokens, tick)
                progress((index + 1) * per_state, total)
        return scores

    # ------------------------------------------------------------------ inference measurements

    def _plan_attention(self, *, n_items: int, max_new_tokens: int, seed: int, sink_ratio: float | None = 20.0) -> _Plan:
        from vlmdiag.organism.tasks import ability_items

        items = ability_items("math_vqa", n_items, seed=seed)

        def compute():
            from vlmdiag.claims.inference import measure_attention

            base, rl = self.loaded("base"), self.loaded("rl")
            with self._step("attention (IN, RL; own and teacher-forced)") as progress:
                return measure_attention(base, rl, items, max_new_tokens=max_new_tokens, progress=progress,
                                         sink_ratio=sink_ratio)

        return _Plan(("base", "rl"), compute, self._model_device, probes=items)

    def _plan_skip(self, *, n_items: int, max_new_tokens: int, seed: int) -> _Plan:
        from vlmdiag.organism.tasks import ability_items

        items = ability_items("text_math", n_items, seed=seed)

        def compute():
            from vlmdiag.measure.skip import skip_sweep

            loaded = self.loaded("base")
            # All settings × items in shared batches; the items' own question, as Mrea asks them
            # (the paper's GSM8K prefix is for real math sets).
            with self._step("layer-skip sweep") as progress:
                return skip_sweep(loaded, items, max_new_tokens=max_new_tokens, prefix="", progress=progress)

        return _Plan(("base",), compute, self._model_device, probes=items)

    def _plan_swap(self, *, n_items: int, max_new_tokens: int, seed: int, mode: str = "from") -> _Plan:
        from vlmdiag.organism.tasks import SWAP_TASK_OF, swap_pairs as organism_pairs

        pairs = [pair for task in SWAP_TASK_OF for pair in organism_pairs(task, n_items, seed=seed)]

        def compute():
            from vlmdiag.measure.swap import swap_pairs

            loaded = self.loaded("base")
            with self._step("visual-token swap sweep") as progress:  # all pairs × layers in shared batches
                return swap_pairs(loaded, pairs, mode=mode, max_new_tokens=max_new_tokens, progress=progress)

        return _Plan(("base",), compute, self._model_device, probes=pairs)

    def _plan_abilities(self, *, n_items: int, max_new_tokens: int, seed: int) -> _Plan:
        from vlmdiag.probes.organism import organism_probe_set

        items = organism_probe_set(n_items, seed=seed).all_items()
        roles, notes = [], []
        if self.recipe.origin is not None:
            if can_run(self.checkpoint("origin").path):
                roles.append(("Base", "origin"))
            else:
                notes.append("Base (--origin) left out: its folder has no tokenizer/processor")
        else:
            notes.append("Base stage left out: no --origin")
        roles += [("IN", "base"), ("RL", "rl")]
        return self._checkpoints_plan("abilities", roles, notes, items, max_new_tokens)

    def _plan_transplant(self, *, n_items: int, max_new_tokens: int, seed: int, regions) -> _Plan:
        from vlmdiag.probes.organism import organism_probe_set

        items = organism_probe_set(n_items, seed=seed).all_items()

        def compute():
            from vlmdiag.claims.inference import AbilityTable
            from vlmdiag.transplant import Splicer, all_variants

            loaded = self.loaded("base")
            splicer = Splicer(loaded.model, self.checkpoint("base"), self.checkpoint("rl"), regions=regions)
            count = len(all_variants())
            # The splicer's incremental sweep holds each variant while its answers are generated; a
            # variant equal to a parent byte for byte has that parent's identity and shares its answers.
            states = ((variant.label("IN", "RL"), lambda: loaded, splicer.fingerprint(variant))
                      for variant, _ in splicer.sweep())
            scores = self._ability_sweep(f"transplant sweep ({count} models)", items, max_new_tokens, count, states)
            return AbilityTable(scores, (f"splices at cuts {regions.cuts} ({regions.preset}); non-decoder "
                                         "components from the Early source",))

        return _Plan(("base", "rl"), compute, self._model_device, probes=items)

    def _plan_freezing(self, *, n_items: int, max_new_tokens: int, seed: int, regions) -> _Plan:
        from vlmdiag.probes.organism import organism_probe_set

        items = organism_probe_set(n_items, seed=seed).all_items()
        roles, notes = [], []
        for label, role in [("IN", "base"), ("RL", "rl")] + [(f"RL-frozen-{r}", f"rl_frozen_{r}")
                                                            for r, _ in self.recipe.rl_frozen]:
            if role.startswith("rl_frozen_") and not can_run(self.checkpoint(role).path):
                notes.append(f"{label} left out: its folder has no tokenizer/processor")
                continue
            roles.append((label, role))
        return self._checkpoints_plan("freezing", roles, notes, items, max_new_tokens)

    def _checkpoints_plan(self, step: str, roles: list[tuple[str, str]], notes: list[str], items,
                          max_new_tokens: int) -> _Plan:
        """Abilities of unmodified checkpoints: ``roles`` is ``[(label, role)]``, ``notes`` what
        was left out; the :class:`~vlmdiag.claims.inference.AbilityTable` is keyed by label."""

        def compute():
            from vlmdiag.claims.inference import AbilityTable

            states = ((label, partial(self.loaded, role), self.checkpoint(role).fingerprint) for label, role in roles)
            scores = self._ability_sweep(f"{step} (" + ", ".join(label for label, _ in roles) + ")",
                                         items, max_new_tokens, len(roles), states)
            return AbilityTable(scores, tuple(notes))

        return _Plan(tuple(role for _, role in roles), compute, self._model_device, probes=items)

    # ------------------------------------------------------------------ weight measurements

    def _weight_roles(self) -> tuple[str, ...]:
        return ("base", "rl", "origin") if self.recipe.origin else ("base", "rl")

    def _weight_pass(self, spectra: bool):
        from vlmdiag.measure.weights import weight_deltas

        origin = self.checkpoint("origin") if self.recipe.origin else None
        with self._step("weight spectra" if spectra else "weight norms") as progress:
            return weight_deltas(self.checkpoint("base"), self.checkpoint("rl"), origin, spectra=spectra,
                                 progress=progress)

    def _plan_weight_spectra(self) -> _Plan:
        return _Plan(self._weight_roles(), partial(self._weight_pass, True), self._weight_device)

    def _plan_weight_deltas(self) -> _Plan:
        return _Plan(self._weight_roles(), partial(self._weight_pass, False), self._weight_device,
                     also_in=("weight_spectra",))
