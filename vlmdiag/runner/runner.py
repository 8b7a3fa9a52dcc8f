"""The measurement runner: one recipe's measurements, each made once per run.

:class:`Runner` looks each measurement up among the registered plans
(:mod:`vlmdiag.runner.plans`), memoises it, reads it from or stores it in the results cache
(:mod:`vlmdiag.cache`), shows a long step's progress, holds the loaded models (one per GPU at a
time) and hands plans their probe items from the run's probe suite
(:class:`~vlmdiag.probes.suite.ProbeSuite`). It knows no measurement by name.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any

from vlmdiag.checkpoints import Checkpoint
from vlmdiag.errors import NoProbeItems, UsageError
from vlmdiag.runner.checkpoints import CheckpointCache, RecipeCheckpoints, can_run
from vlmdiag.runner.plans import Plan, PlanError, get_plan, plans


def _no_progress(done: int, total: int) -> None:
    pass


class Runner:
    """Lazily made, memoised measurements of one recipe.

    Args:
        recipe: the recipe's checkpoint specs.
        checkpoints: the run's opened checkpoints (shared by recipes).
        probes: the run's :class:`~vlmdiag.probes.suite.ProbeSuite`; None for a run that makes
            no inference measurement (asking one for items then raises :class:`UsageError`).
        progress: ``progress(label)`` returns a ``(done, total)`` callback for a long step
            (optionally with ``close()``, called when the step ends), or None.
        wanted: the measurements the run's claims read; a plan ``subsumed_by`` one of them is
            read from it (the weight norms come with the spectra: one weight pass, not two).
        results: a :class:`~vlmdiag.cache.ResultsCache`, or None for no persistent cache.
        sample_log: the run's :class:`~vlmdiag.measure.samples.SampleLog` (``--log-samples``), or
            None: every model state's ability answers are written there.

    ``cache_log`` records ``(measurement, status)`` for every :meth:`measure` call, status
    ``hit`` (read from the cache), ``miss`` (measured now and stored) or ``off`` (not cached).
    """

    def __init__(self, recipe: RecipeCheckpoints, checkpoints: CheckpointCache, *, probes=None,
                 progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
                 wanted: frozenset[str] | set[str] = frozenset(), results=None, sample_log=None):
        self.recipe, self.checkpoints, self.probes = recipe, checkpoints, probes
        self.progress = progress or (lambda label: None)
        self.wanted, self.results = frozenset(wanted), results
        self.cache_log: list[tuple[str, str]] = []
        self._memo: dict[Any, tuple[Any, str]] = {}
        self._models = None  # a vlmdiag.runtime.model.ResidentModels, made on first use
        self.answers: dict[str, str] = {}  # run_abilities' in-memory answer cache, shared by plans
        self._per_item: dict[str, Any] = {}  # per_item's results, by measurement, identity and item content
        self._identities: dict[str, dict] = {}
        self.sample_log = sample_log
        self._logged: set = set()  # (state, fingerprint, items hash) already written to the sample log
        self._measuring: str | None = None  # the measurement being computed (the sample log's field)
        self._drawing: list[str] | None = None  # the notes of the draws of the plan being built
        self._probe_notes: dict[Any, tuple[str, ...]] = {}

    # ------------------------------------------------------------------ inputs

    def has(self, need: str) -> bool:
        """Whether the recipe supplies what a claim ``needs``: ``origin``, ``rl_frozen``,
        ``probes`` (a probe suite), ``inference`` (the base and RL folders hold a tokenizer and an
        image processor, so the models can run), ``origin_inference`` (so does ``--origin``)."""
        if need == "inference":
            return all(can_run(self.checkpoint(role).path) for role in ("base", "rl"))
        if need == "origin_inference":
            return self.recipe.origin is not None and can_run(self.checkpoint("origin").path)
        return {"origin": self.recipe.origin is not None,
                "rl_frozen": bool(self.recipe.rl_frozen),
                "probes": self.probes is not None}.get(need, False)

    def checkpoint(self, role: str) -> Checkpoint:
        return self.checkpoints.get(self.recipe.specs()[role])

    @property
    def num_llm_layers(self) -> int:
        return self.checkpoint("base").num_llm_layers

    def ability_items(self, kind: str, n: int, seed: int):
        """The suite's :class:`~vlmdiag.probes.suite.Drawn` ability items of ``kind``; its note
        (capped, or none held) is kept for the measurement being built (:meth:`probe_notes`).

        Raises:
            UsageError: the runner has no probe suite.
        """
        return self._noted(kind, self._suite().ability_items(kind, n, seed=seed))

    def swap_pairs(self, task: str, n: int, seed: int):
        """The suite's :class:`~vlmdiag.probes.suite.Drawn` swap pairs of ``task`` (notes as
        :meth:`ability_items`)."""
        return self._noted(f"swap {task}", self._suite().swap_pairs(task, n, seed=seed))

    def _noted(self, what: str, drawn):
        if drawn.note and self._drawing is not None:
            note = drawn.note if what in drawn.note else f"{what}: {drawn.note}"
            if note not in self._drawing:
                self._drawing.append(note)
        return drawn

    def probe_notes(self, name: str, settings: dict | None = None) -> tuple[str, ...]:
        """What the suite said when measurement ``name`` (with ``settings``) drew its items: a
        request capped at what the suite holds, a kind it does not hold; empty when all came."""
        return self._probe_notes.get(name if not settings else (name, tuple(sorted(settings.items()))), ())

    @property
    def answer_format(self) -> str:
        """The suite's answer instruction (:func:`~vlmdiag.probes.suite.generation_settings`;
        ``none`` without a suite)."""
        return self.generation()["answer_format"]

    def budget(self, max_new_tokens: int) -> int:
        """The decoding budget of graded answers: the suite's ``max_new_tokens`` when it sets one
        (reasoning models need room for ``<think>``), else the claim's (thresholds.yaml)."""
        return self.generation()["max_new_tokens"] or max_new_tokens

    def generation(self) -> dict:
        """``{"answer_format", "max_new_tokens"}`` of the suite (part of every probe measurement's
        cache key)."""
        if self.probes is None:
            return {"answer_format": "none", "max_new_tokens": None}
        from vlmdiag.probes.suite import generation_settings

        return generation_settings(self.probes)

    def _suite(self):
        if self.probes is None:
            raise UsageError(f"recipe {self.recipe.name!r}: an inference measurement needs probe items, and "
                             "this run has no probe suite")
        return self.probes

    # ------------------------------------------------------------------ measuring

    def measure(self, name: str, settings: dict | None = None) -> Any:
        """The named measurement, made on first use (or read from the results cache).

        ``settings`` (a claim's :meth:`~vlmdiag.claims.registry.ClaimThresholds.probe_settings`,
        plus ``regions`` for claims measured at the cuts) are validated by the plan's settings
        model and are part of the memo and cache keys.

        Raises:
            PlanError: no plan ``name``, or settings it does not take.
        """
        key = name if not settings else (name, tuple(sorted(settings.items())))
        if key not in self._memo:
            self._memo[key] = self._obtain(name, dict(settings or {}), key)
        value, status = self._memo[key]
        self.cache_log.append((name, status))
        return value

    def _obtain(self, name: str, settings: dict, key: Any = None) -> tuple[Any, str]:
        """Raises NoProbeItems: the plan asks probe items and the suite gave none (the notes say why)."""
        spec = get_plan(name)
        if spec.subsumed_by in self.wanted and not settings:
            value = self.measure(spec.subsumed_by)  # e.g. norms come with spectra: one pass
            return value, self.cache_log[-1][1]
        if spec.settings is None and settings:
            raise PlanError(f"measurement {name!r} takes no settings, got {', '.join(sorted(settings))}")
        outer_notes, self._drawing = self._drawing, []
        try:
            plan: Plan = spec.build(self, None if spec.settings is None else spec.settings(**settings))
        finally:
            notes, self._drawing = tuple(self._drawing), outer_notes
        self._probe_notes[key if key is not None else name] = notes
        if plan.probes is not None and len(plan.probes) == 0:
            raise NoProbeItems(f"the {getattr(self.probes, 'name', '?')} probe suite holds no item for measurement "
                               f"{name!r}: " + ("; ".join(notes) or "it handed out none"))
        material = self.cache_material(name, settings, plan)
        outer, self._measuring = self._measuring, name
        try:
            if material is None:
                value, status = plan.compute(), "off"
            else:
                value, hit = self.results.obtain(name, material, plan.compute, also_in=plan.also_in)
                status = "hit" if hit else "miss"
        finally:
            self._measuring = outer
        if plan.after is not None:
            plan.after(value)
        if not settings:
            for other in plans().values():
                if other.subsumed_by == name:
                    self._memo.setdefault(other.name, (value, status))
        return value, status

    def cache_material(self, name: str, settings: dict, plan: Plan) -> dict | None:
        """The cache key material of a measurement, or None when there is no results cache or
        the key cannot be computed (with a :class:`~vlmdiag.cache.CacheWarning`)."""
        if self.results is None:
            return None
        try:
            from vlmdiag.cache import checkpoint_identity, key_material

            for role in plan.roles:
                if role not in self._identities:
                    self._identities[role] = checkpoint_identity(self.checkpoint(role))
            if plan.probes is not None:  # the answer instruction and budget change what is generated
                settings = {**settings, "generation": self.generation()}
            return key_material(name, checkpoints={role: self._identities[role] for role in plan.roles},
                                device=plan.device(), settings=settings, probes=plan.probes)
        except (TypeError, OSError) as error:
            from vlmdiag.cache import CacheWarning

            warnings.warn(f"measurement {name!r} not cached: its key cannot be computed ({error})",
                          CacheWarning, stacklevel=3)
            return None


    @contextmanager
    def step(self, label: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
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
    def model_device() -> str:
        """The device description of a measurement that runs the models (default device and dtype)."""
        from vlmdiag.cache import device_description
        from vlmdiag.runtime.model import default_device, default_dtype

        device = default_device()
        return device_description(device, default_dtype(device))

    @staticmethod
    def weight_device() -> str:
        """The device description of the weight pass (fp32, on CUDA when there is one)."""
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

    def abilities(self, loaded: Callable[[], Any], fingerprint: str, items, max_new_tokens: int,
                  tick: Callable[[int], None] = lambda n: None, *, label: str | None = None) -> dict:
        """Mvis/Mv2r/Mrea of one model state (``score_abilities``).

        ``fingerprint`` is the state's exact identity (a checkpoint's
        :attr:`~vlmdiag.checkpoints.Checkpoint.fingerprint`, or a splice's
        :meth:`~vlmdiag.transplant.Splicer.fingerprint`): its graded answers are an ``answers``
        entry of the results cache keyed by it, the items and the decoding (the suite's answer
        format and budget, :meth:`budget`), so a model state asked by several claims (IN and RL
        by the stage table, the transplant sweep and the freezing claim; a splice equal to a
        parent byte for byte) generates once per machine, across pytest-xdist workers too;
        within a run, answers are also shared through an in-memory cache keyed by the same
        identity. ``loaded()`` is called only when answers are generated. ``tick(n)`` is called
        after each batch of ``n`` answers. With a :attr:`sample_log`, the answers are written
        there under ``label`` (once per state and items)."""
        from vlmdiag.measure.abilities import greedy_decoding, make_predict, run_abilities, score_abilities

        max_new_tokens, answer_format = self.budget(max_new_tokens), self.answer_format
        decoding = greedy_decoding(max_new_tokens)

        def generate():
            predict = make_predict(loaded(), max_new_tokens=max_new_tokens)[0]

            def counted(messages_batch, images_batch):
                answers = predict(messages_batch, images_batch)
                tick(len(answers))
                return answers

            return run_abilities(items, counted, cache=self.answers, fingerprint=fingerprint, decoding=decoding,
                                 answer_format=answer_format)

        plan = Plan((), generate, self.model_device, probes=items)  # the state's identity covers its files
        material = self.cache_material("answers", {"state": fingerprint, "decoding": decoding,
                                                   "answer_format": answer_format}, plan)
        outcomes = generate() if material is None else self.results.obtain("answers", material, generate)[0]
        if self.sample_log is not None and label is not None:
            from vlmdiag.probes.suite import items_hash

            logged = (label, fingerprint, items_hash(items), answer_format, max_new_tokens)
            if logged not in self._logged:
                self._logged.add(logged)
                self.sample_log.log_abilities(label, items, outcomes, answer_format=answer_format,
                                              measurement=self._measuring)
        return score_abilities(outcomes)

    def per_item(self, name: str, identity: dict, items, compute: Callable[[list], list]) -> list:
        """One result per item of measurement ``name``, in the order of ``items``; the items this run
        measured before under the same ``identity`` and with the same content are read, the others
        are measured by one ``compute(missing_items)`` call (one result per item, in order).

        ``identity`` holds everything else that decides an item's result: the model state's exact
        fingerprint and the measurement's settings (layers or mode, decoding budget, answer format,
        batch size); the device is added. Keys are :func:`~vlmdiag.cache.content_digest` of those
        and of the item (its id, text, images, answer), so nothing is shared across a difference
        (SPEC §8 "Identity"). A sequential run's later look (the first ``n_k`` items) measures only
        the items its earlier looks did not. Reuse assumes an item's result does not depend on the
        other items batched with it (left-padded greedy generation; tests compare batched rows with
        unbatched ones).

        Raises:
            RuntimeError: ``compute`` returned a wrong number of results.
        """
        from vlmdiag.cache import content_digest

        base = content_digest({"measurement": name, "identity": identity, "device": self.model_device()})
        keys = [content_digest([base, item]) for item in items]
        missing = [i for i, key in enumerate(keys) if key not in self._per_item]
        if missing:
            fresh = list(compute([items[i] for i in missing]))
            if len(fresh) != len(missing):
                raise RuntimeError(f"measurement {name!r}: {len(fresh)} results for {len(missing)} items")
            for i, value in zip(missing, fresh):
                self._per_item[keys[i]] = value
        return [self._per_item[key] for key in keys]

    def ability_sweep(self, label: str, items, max_new_tokens: int, count: int,
                      states: Iterator[tuple[str, Callable[[], Any], str]]) -> dict:
        """``{label: scores}`` of ``count`` model states on the same items, as one progress step.

        ``states`` yields ``(label, loaded, fingerprint)`` (see :meth:`abilities`) and keeps the
        model in that state until the next item is asked for (a splice sweep); it is closed when
        done or on error."""
        from vlmdiag.measure.abilities import build_prompts

        per_state = sum(len(build_prompts(item, self.answer_format)[0]) for item in items)
        total = per_state * count
        scores = {}
        with self.step(label, total) as progress, closing(states):
            for index, (name, loaded, fingerprint) in enumerate(states):
                done = [index * per_state]

                def tick(n: int, done=done, end=(index + 1) * per_state) -> None:
                    done[0] = min(done[0] + n, end)
                    progress(done[0], total)

                scores[name] = self.abilities(loaded, fingerprint, items, max_new_tokens, tick, label=name)
                progress((index + 1) * per_state, total)
        return scores
