"""Ground truth of the organism's task generators, checked independently from the pixels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vlmdiag.organism import tasks as T
from vlmdiag.probes.types import AbilityItem, SwapPair

N = 40


def _components(img, color: str):
    """Connected components of pixels of exactly ``color``: list of (bbox, fill ratio)."""
    a = np.asarray(img.convert("RGB")).astype(int)
    mask = np.all(a == np.array(T.COLORS[color]), axis=-1)
    labels, n = ndimage.label(mask)
    out = []
    for sl in ndimage.find_objects(labels):
        ys, xs = sl
        h, w = ys.stop - ys.start, xs.stop - xs.start
        if h * w < 30:  # anti-aliasing specks
            continue
        fill = mask[sl].sum() / (h * w)
        out.append(((xs.start, ys.start, xs.stop, ys.stop), fill))
    return out


def _kind(fill: float) -> str:
    return "square" if fill > 0.95 else ("circle" if fill > 0.65 else "triangle")


def _all_shapes(img):
    return [(box, _kind(fill), color) for color in T.COLORS for box, fill in _components(img, color)]


def _read_number(img) -> int:
    """Template-match the top-left 56x56 block against each digit drawn on an empty scene."""
    block = np.asarray(img.convert("L"))[:56, :56].astype(float)
    scores = []
    for d in range(10):
        ref = np.asarray(T.render(T.Scene(d, ())).convert("L"))[:56, :56].astype(float)
        scores.append(-np.abs(block - ref).sum())
    return int(np.argmax(scores))


@pytest.mark.parametrize("held_out", [True, False])
def test_counting_answer_matches_pixels(held_out):
    answers = set()
    for it in T.generate("counting", N, seed=3, held_out=held_out):
        assert it.question == "How many shapes are there?"
        assert len(_all_shapes(it.image())) == int(it.answer), it.scene
        answers.add(int(it.answer))
    assert len(answers) >= 5  # the answer varies over 0..MAX_COUNT


def test_recognition_answer_matches_pixels():
    answers = set()
    for it in T.generate("recognition", N, seed=4, held_out=True):
        kinds = {k for _, k, _ in _all_shapes(it.image())}
        assert ("yes" if it.meta["kind"] in kinds else "no") == it.answer
        answers.add(it.answer)
    assert answers == {"yes", "no"}


def test_grounding_box_matches_pixels():
    for it in T.generate("grounding", N, seed=5, held_out=True):
        found = [box for box, k, _ in _all_shapes(it.image()) if k == it.meta["kind"]]
        assert len(found) == 1
        assert tuple(found[0]) == T.parse_bbox(it.answer) == tuple(it.bbox)


def test_reading_answer_matches_pixels():
    for it in T.generate("reading", N, seed=6, held_out=True):
        assert _read_number(it.image()) == int(it.answer)


def test_arithmetic_answer_matches_pixels_and_description():
    for it in T.generate("arithmetic", N, seed=7, held_out=True):
        img = it.image()
        k = int(it.question.split()[1])  # "Add k to the number written in the corner."
        assert it.question == T.arithmetic_question(k) and 1 <= k <= T.MAX_ADDEND
        assert _read_number(img) + k == int(it.answer)
        shapes = _all_shapes(img)
        triangles = sum(1 for _, k, _ in shapes if k == "triangle")
        desc = it.description()
        assert f"The number {_read_number(img)} " in desc
        assert f"There are {len(shapes)} shapes:" in desc
        assert f" {triangles} triangle{'' if triangles == 1 else 's'}." in desc
        n = _read_number(img)
        assert T.reasoning_target(it) == f"<think>{n}+{k}={n + k}</think><answer>{n + k}</answer>"
        assert T.reasoning_target(it, distractor=True) == f"<think>{n}</think><answer>{n}</answer>"


def test_seeded_and_reproducible():
    a = T.generate("arithmetic", 10, seed=11, held_out=True)
    b = T.generate("arithmetic", 10, seed=11, held_out=True)
    c = T.generate("arithmetic", 10, seed=12, held_out=True)
    assert [x.fingerprint() for x in a] == [x.fingerprint() for x in b]
    assert a[0].image().tobytes() == b[0].image().tobytes()
    assert [x.fingerprint() for x in a] != [x.fingerprint() for x in c]


@pytest.mark.parametrize("task", T.TASKS)
def test_held_out_disjoint_from_training(task):
    train = {it.fingerprint() for it in T.training_items(task, 400, seed=1234)}
    held = [it.fingerprint() for it in T.generate(task, 50, seed=1234, held_out=True)]
    assert len(set(held)) == len(held)
    assert not train & set(held)


@pytest.mark.parametrize("task", ["ocr", "counting", "grounding", "recognition"])
def test_swap_pairs(task):
    pairs = T.swap_pairs(task, 12, seed=2)
    assert len(pairs) == 12 and all(isinstance(p, SwapPair) and p.task == task for p in pairs)
    for p in pairs:
        assert p.target_image.size == p.source_image.size == (112, 112)
        assert p.target_answer != p.source_answer
        tgt, src = p.target_image, p.source_image
        if task == "ocr":
            assert (_read_number(tgt), _read_number(src)) == (int(p.target_answer), int(p.source_answer))
            # shapes unchanged
            assert sorted(_all_shapes(tgt)) == sorted(_all_shapes(src))
        elif task == "counting":
            assert len(_all_shapes(tgt)) == int(p.target_answer)
            assert len(_all_shapes(src)) == int(p.source_answer)
            assert _read_number(tgt) == _read_number(src)
        elif task == "grounding":
            kind = p.prompt.rstrip("?").split()[-1]
            assert [b for b, k, _ in _all_shapes(tgt) if k == kind] == [p.target_bbox]
            assert [b for b, k, _ in _all_shapes(src) if k == kind] == [p.source_bbox]
        else:
            kind = p.prompt.rstrip("?").split()[-1]
            assert kind in {k for _, k, _ in _all_shapes(tgt)}
            assert kind not in {k for _, k, _ in _all_shapes(src)}
            assert (p.target_answer, p.source_answer) == ("yes", "no")
    assert T.swap_pairs(task, 3, seed=2)[0].target_image.tobytes() == pairs[0].target_image.tobytes()


def test_token_labels_match_pixels():
    """Each merged-token label describes the 28 px cell of that token, found from the pixels."""
    scenes = T.vision_scenes(20, seed=3)
    assert [s.fingerprint() for s in scenes] == [s.fingerprint() for s in T.vision_scenes(20, seed=3)]
    for scene in scenes:
        img = T.render(scene)
        lab = T.token_labels(scene)
        assert all(len(lab[k]) == 16 for k in ("kind", "color", "digit", "row", "col"))
        found = {}
        for (x1, y1, x2, y2), kind, color in _all_shapes(img):
            assert (x2 - x1, y2 - y1) == (20, 20)
            found[(y1 // 28) * 4 + x1 // 28] = (kind, color)
        for t in range(16):
            r, c = divmod(t, 4)
            assert (lab["row"][t], lab["col"][t]) == (r, c)
            if (r, c) in T.NUMBER_CELLS:
                assert lab["kind"][t] == 4 and lab["digit"][t] == _read_number(img)
            elif t in found:
                kind, color = found[t]
                assert lab["kind"][t] == 1 + T.SHAPES.index(kind)
                assert lab["color"][t] == 1 + list(T.COLORS).index(color)
                assert lab["occupancy"][T.SHAPES.index(kind) * 16 + t] == 1
            else:
                assert lab["kind"][t] == 0 and lab["color"][t] == 0 and lab["digit"][t] == -100
        assert sum(lab["occupancy"]) == len(found) and lab["number"] == [_read_number(img)]


def test_token_order_is_the_processors_merge_order():
    """Merged token t of the organism's processor is built from the four 14 px patches of cell
    (t // 4, t % 4): the order token_labels assumes."""
    from vlmdiag.organism.tokenizer import build_processor, build_tokenizer

    proc = build_processor(build_tokenizer(T.corpus_texts(0, n_per_task=5), vocab_size=300))
    scene = T.vision_scenes(1, seed=5)[0]
    img = T.render(scene)
    pix = proc.image_processor([img], return_tensors="pt")["pixel_values"]  # (64, 3*2*14*14)
    assert tuple(pix.shape) == (64, 1176)
    mean = np.array(proc.image_processor.image_mean)[:, None]
    std = np.array(proc.image_processor.image_std)[:, None]
    a = np.asarray(img).astype(float) / 255.0
    for t in range(16):
        r, c = divmod(t, 4)
        patches = pix[4 * t:4 * t + 4].numpy().reshape(4, 3, 2, 196)[:, :, 0]  # (4, 3, 196)
        got = (patches * std + mean).mean(axis=(0, 2))
        want = a[28 * r:28 * r + 28, 28 * c:28 * c + 28].reshape(-1, 3).mean(0)
        assert np.allclose(got, want, atol=1e-3), (t, got, want)


def test_ability_items():
    vqa = T.ability_items("vqa", 9, seed=1)
    assert {i.meta["task"] for i in vqa} == set(T.VQA_TASKS)
    assert all(isinstance(i, AbilityItem) and i.image.size == (112, 112) for i in vqa)
    math = T.ability_items("math_vqa", 8, seed=1)
    text = T.ability_items("text_math", 8, seed=1)
    for m, t in zip(math, text):
        assert m.kind == "math_vqa" and m.image is not None and m.description
        assert t.kind == "text_math" and t.image is None and t.answer == m.answer
        assert t.question == f"Image Description: {m.description}\nQuestion: {m.question}"
        assert _read_number(m.image) + int(m.question.split()[1]) == int(m.answer)
    assert np.asarray(T.black_image()).max() == 0 and T.black_image().size == (112, 112)


def test_bad_input():
    with pytest.raises(ValueError, match="valid"):
        T.generate("nope", 1, seed=0, held_out=True)
    with pytest.raises(ValueError, match="ocr"):
        T.swap_pairs("reading", 1)
    with pytest.raises(ValueError, match="text_math"):
        T.ability_items("math", 1)


def test_scoring():
    assert T.is_correct("arithmetic", "<think>1+2=3</think><answer>3</answer>", "3")
    assert not T.is_correct("arithmetic", "<think>1</think><answer>1</answer>", "3")
    assert T.is_correct("reading", "7", "7")
    assert T.is_correct("grounding", "<answer>[60,4,80,24]</answer>", "[60,4,80,24]")
    assert not T.is_correct("grounding", "[4,60,24,80]", "[60,4,80,24]")
    assert T.has_reasoning_format("<think>x</think><answer>1</answer>")
    assert not T.has_reasoning_format("<think>x</think>1")
