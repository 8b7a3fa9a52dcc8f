"""Every claim, through the real pytest plugin, on tiny random checkpoints of seven families saved
as a user has them (config, safetensors, processor: :mod:`tiny_checkpoints`): Qwen2.5-VL as
``--base/--rl/--origin/--rl-frozen`` and Qwen3-VL, LLaVA-OneVision, SmolVLM, InternVL, Gemma 3 and
Idefics3 as ``--recipe``s of the same run (one process: the imports and the plugin's start-up are
paid once; ``--no-plots``: 84 PNGs would take a third of its time), with ``--probes synthetic``. Each family's every claim
reaches a verdict word of the SPEC, none is ``error``, the inference claims ran on the synthetic
suite's items (the report's ``probes`` section), and a claim a family cannot be measured on is
skipped with the reason :data:`FAMILY_LIMITS` states, never silently.

The visual-token spans each family's own processor writes are checked against where the model
puts its image features (the input of the first decoder layer differs from the token embeddings
there and nowhere else)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

import tiny_checkpoints
from test_spans import feature_positions
from vlmdiag.adapters import adapter_for
from vlmdiag.measure.spans import reasoning_mask, visual_spans

ROOT = Path(__file__).resolve().parents[2]
MAIN = "qwen2_5_vl"   # the --base/--rl recipe; the other families are --recipe NAME=...
VERDICTS = {"reproduced", "not_reproduced", "inconclusive", "skipped", "error"}
#: (family, claim id) -> the words the reason of its ``skipped`` verdict must hold. Empty: every
#: claim is measured on every family.
FAMILY_LIMITS: dict[tuple[str, str], str] = {}
SUITE = "synthetic:preset=small,max_new_tokens=3"


def _claims() -> dict:
    from vlmdiag.claims import all_claims

    return all_claims()


@pytest.fixture(scope="module")
def recipes(tmp_path_factory) -> dict[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("families")
    return {family: tiny_checkpoints.save_recipe(family, root / family) for family in tiny_checkpoints.FAMILIES}


def _small_thresholds(folder: Path) -> Path:
    data = yaml.safe_load((ROOT / "thresholds.yaml").read_text())
    for cid, claim in _claims().items():
        if "probes" in claim.needs and cid in data["claims"]:
            data["claims"][cid].update(n_items=1, max_new_tokens=3, bootstrap_resamples=200)
    path = folder / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_claim_reaches_a_verdict_on_every_family(recipes, tmp_path):
    report = tmp_path / "r.json"
    main = recipes[MAIN]
    args = [f"--base={main['base']}", f"--rl={main['rl']}", f"--origin={main['origin']}",
            f"--rl-frozen=Late={main['frozen_late']}"]
    for family, ckpt in recipes.items():
        if family != MAIN:
            args += [f"--recipe={family}={ckpt['base']},{ckpt['rl']},{ckpt['origin']}",
                     f"--rl-frozen={family}:Late={ckpt['frozen_late']}"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:xdist", "-p", "no:hypothesispytest",
         *args, f"--probes={SUITE}", f"--thresholds={_small_thresholds(tmp_path)}", f"--report-json={report}",
         "--report-only", "--no-cache", "--no-plots"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "vlmdiag probes: synthetic (preset small" in out
    data = json.loads(report.read_text())
    assert not (tmp_path / "r_plots").exists()   # --no-plots
    probes = data["probes"]
    assert probes["name"] == "synthetic" and probes["source"]["preset"] == "small", probes
    assert probes["source"]["generator"] == "vlmdiag.probes.synthetic" and len(probes["content_hash"]) == 64
    drawn = {f"{kind}@seed=0" for kind in (
        "vqa", "math_vqa", "text_math", "swap:ocr", "swap:counting", "swap:grounding", "swap:recognition")}
    assert drawn <= set(probes["items"]) and set(probes["items"].values()) == {1}, probes["items"]
    by = {(c["recipe"], c["id"]): c for c in data["claims"]}
    claims = _claims()
    for family in recipes:
        recipe = "main" if family == MAIN else family
        for cid, claim in claims.items():
            result = by.get((recipe, cid))
            assert result is not None, (family, cid, sorted(by))
            assert result["verdict"] in VERDICTS - {"error"}, (family, cid, result["reason"])
            limit = FAMILY_LIMITS.get((family, cid))
            if limit is not None:
                assert result["verdict"] == "skipped" and limit in result["reason"], (family, cid, result["reason"])
                continue
            assert result["verdict"] != "skipped", (family, cid, result["reason"])
            if "probes" not in claim.needs:
                continue
            # measured on the suite's items: one item per kind, one pair per swap task
            metrics = result["metrics"]
            if cid == "localization.vision_early":
                assert metrics["n_pairs"] == 4, (family, metrics["n_pairs"])
            elif "n_items" in metrics:
                assert metrics["n_items"] == 1, (family, cid, metrics["n_items"])
    paths = {recipe: {k: v["path"] for k, v in stage.items()} for recipe, stage in data["checkpoints"].items()}
    for family, ckpt in recipes.items():
        assert paths["main" if family == MAIN else family]["base"] == str(ckpt["base"])


# --- visual-token spans of each family's own processor ----------------------------------------------


#: family -> (visual tokens of a 336x224 image, markers around it) with the tiny processors
#: (LLaVA-OneVision: base tile + 2 anyres tiles + newlines; SmolVLM and Idefics3: 4 tiles + the
#: global image; InternVL: 2 tiles + the thumbnail; Gemma 3: one image pooled to 16 soft tokens)
SPANS = {"qwen2_5_vl": (12, 2), "qwen3_vl": (12, 2), "llava_onevision": (44, 0), "smolvlm": (80, 6),
         "internvl": (48, 2), "gemma3": (16, 2), "idefics3": (80, 6)}


@pytest.mark.parametrize("family", tiny_checkpoints.FAMILIES)
def test_processor_spans_of_every_family(family):
    """The visual-token span of the family's own processor output is where the model puts its image
    features; the reasoning span of a response in the family's tokenizer is what ``<think>`` and
    ``</think>`` enclose (the tags are text here, as in most families' vocabularies)."""
    model, processor, _ = tiny_checkpoints.PARTS[family](0)
    model = model.eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many items?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    image = Image.new("RGB", (336, 224), (200, 10, 10))
    images = [[image]] if family in ("smolvlm", "idefics3") else [image]
    inputs = dict(processor(text=[text], images=images, return_tensors="pt"))
    config = model.config.to_dict()
    adapter = adapter_for(config)
    assert adapter.family == family
    spans = visual_spans(inputs["input_ids"][0], adapter, config, processor.tokenizer)
    assert (spans.n_visual, int(spans.markers.sum())) == SPANS[family]
    assert torch.equal(torch.from_numpy(spans.visual), feature_positions(model, adapter, inputs))
    tokenizer = processor.tokenizer
    response = tokenizer.encode("<think> the answer is 12 </think>12", add_special_tokens=False)
    mask = reasoning_mask(tokenizer, response)
    assert "the answer is 12" in tokenizer.decode([i for i, m in zip(response, mask) if m])
    assert mask.any() and not mask[0] and not mask[-1]   # the tags and the answer after them are not reasoning
