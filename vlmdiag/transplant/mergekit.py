"""The mergekit ``passthrough`` YAML that describes a splice (written beside its weights)."""

from __future__ import annotations

from vlmdiag.checkpoints import Checkpoint
from vlmdiag.transplant.plan import SplicePlan


def mergekit_config(plan: SplicePlan, a: Checkpoint, b: Checkpoint, *, dtype: str | None = None) -> tuple[str, bool]:
    """A mergekit ``passthrough`` configuration (YAML text) that describes ``plan``.

    The layout is mergekit's modular one for Qwen2.5-VL-style models: ``modules.text_decoder``
    holds one slice per run of decoder layers with the same source (``layer_range: [start,
    stop)``), ``vision_tower`` and ``multi_modal_projector`` name the components source.

    Returns:
        (yaml_text, exact): ``exact`` is False when mergekit would take the final norm /
        ``lm_head`` (from its last slice) or embeddings (first slice) from another checkpoint than
        vlmdiag's ``components_from``; the YAML then says so in a comment.
    """
    import yaml

    path = {"A": str(a.path.resolve()), "B": str(b.path.resolve())}
    slices = [{"sources": [{"model": path[s], "layer_range": [start, stop]}]}
              for s, start, stop in plan.slices()]
    comp = plan.variant.components
    config: dict = {"merge_method": "passthrough"}
    if dtype:
        config["dtype"] = dtype
    config["modules"] = {
        "text_decoder": {"slices": slices},
        "vision_tower": {"models": [{"model": path[comp]}]},
        "multi_modal_projector": {"models": [{"model": path[comp]}]},
    }
    config["tokenizer_source"] = path[comp]
    exact = plan.slices()[0][0] == comp and plan.slices()[-1][0] == comp
    d = plan.as_dict("A", "B")
    header = [
        f"# Written by vlmdiag transplant: {plan.variant.label()} (Early:Mid:Late; A = IN = {path['A']}, "
        f"B = RL = {path['B']}).",
        f"# Regions {d['regions']['preset']}: Early {d['regions']['Early']}, Mid {d['regions']['Mid']}, "
        f"Late {d['regions']['Late']} (0-based decoder layers, inclusive); layer_range below is [start, stop).",
        f"# Vision tower, projector, embeddings, final norm and lm_head: from {comp} ({path[comp]}).",
    ]
    if not exact:
        header.append(
            "# NOTE: mergekit's passthrough takes the embeddings from the first text_decoder slice and the "
            "final norm / lm_head from the last one, so `mergekit-yaml` on this file would take some of "
            f"them from another checkpoint than {comp}; vlmdiag's written weights take all of them from {comp}.")
    body = yaml.dump(config, Dumper=_yaml_dumper(), sort_keys=False)
    return "\n".join(header) + "\n" + body, exact


def _yaml_dumper():
    import yaml

    class Dumper(yaml.SafeDumper):
        """Block style, except ``[start, stop]`` number lists (as mergekit writes them)."""

        def represent_list(self, data):
            flow = all(isinstance(x, (int, float)) for x in data)
            return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    Dumper.add_representer(list, Dumper.represent_list)
    return Dumper
