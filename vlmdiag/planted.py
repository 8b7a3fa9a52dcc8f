"""Small real Qwen2.5-VL checkpoints with *planted* weight updates, so tests (and a first run of
the suite) know the truth the weight claims must find.

A triple is Base (origin) → IN (origin + ΔIN) → RL (IN + ΔRL), saved with ``save_pretrained``
in the hub layout real checkpoints use. Deltas are planted in the LLM decoder's weight matrices,
per Early/Mid/Late region (``paper`` preset), with a chosen per-element scale, rank, density
(the share of elements updated) or a rotation of the matrix's principal subspace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vlmdiag.regions import regions_for


@dataclass(frozen=True)
class Plant:
    """An update planted into every decoder-layer matrix: per-element standard deviation by region
    (``{"Early": s, "Mid": s, "Late": s}``), rank (None: full-rank Gaussian noise), density (the
    share of elements it touches, a random mask; 1: all) and ``rotation``: the angle (degrees) by
    which the top-:data:`PRINCIPAL_RANK` left singular subspace of each matrix is turned into its
    complement, singular values and right vectors kept (after the noise, if any)."""

    scale: dict[str, float]
    rank: int | None = None
    density: float = 1.0
    rotation: float = 0.0


#: Rank of the strong component the ``rotation`` scenario gives Base's matrices (singular values
#: 4…2 against a random bulk's ≈0.4), so their principal subspace is well defined; it is the
#: ``k`` of :data:`vlmdiag.measure.delta_stats.PRINCIPAL_K`.
PRINCIPAL_RANK = 16


#: Named (ΔIN, ΔRL) pairs. ``paper``: what the paper reports (both concentrated in Mid, RL 100×
#: smaller and low-rank). ``inverted``: the opposite of every weight claim. ``uniform``: no
#: structure at all (same-size full-rank noise everywhere, for both stages). ``null``: no RL
#: update (RL = IN; stored in another dtype than IN, a pure rounding round trip). ``sparse``: RL
#: touches 10 % of each matrix's elements (Mukherjee et al., arXiv 2505.11711), IN all of them;
#: ``dense``: RL touches every element. ``rotation``: RL turns each matrix's principal subspace by
#: 20° (IN adds small noise; Base has a strong rank-16 component, see :data:`SPIKED`).
SCENARIOS: dict[str, tuple[Plant, Plant]] = {
    "paper": (Plant({"Early": 1e-2, "Mid": 3e-2, "Late": 1e-2}),
              Plant({"Early": 1e-4, "Mid": 3e-4, "Late": 1.5e-4}, rank=2)),
    "inverted": (Plant({"Early": 1e-2, "Mid": 1e-2, "Late": 1e-2}, rank=2),
                 Plant({"Early": 6e-2, "Mid": 1e-2, "Late": 1e-2})),
    "uniform": (Plant({"Early": 1e-2, "Mid": 1e-2, "Late": 1e-2}),
                Plant({"Early": 1e-2, "Mid": 1e-2, "Late": 1e-2})),
    "null": (Plant({"Early": 1e-2, "Mid": 3e-2, "Late": 1e-2}),
             Plant({"Early": 0.0, "Mid": 0.0, "Late": 0.0})),
    "sparse": (Plant({"Early": 1e-2, "Mid": 1e-2, "Late": 1e-2}),
               Plant({"Early": 1e-3, "Mid": 1e-3, "Late": 1e-3}, density=0.1)),
    "dense": (Plant({"Early": 1e-2, "Mid": 1e-2, "Late": 1e-2}),
              Plant({"Early": 1e-3, "Mid": 1e-3, "Late": 1e-3})),
    "rotation": (Plant({"Early": 1e-3, "Mid": 1e-3, "Late": 1e-3}),
                 Plant({"Early": 0.0, "Mid": 0.0, "Late": 0.0}, rotation=20.0)),
}
#: Scenarios whose Base matrices get a strong rank-PRINCIPAL_RANK component.
SPIKED = frozenset({"rotation"})


def tiny_config(num_layers: int = 6, hidden: int = 64, vision_depth: int = 2):
    """A tiny Qwen2.5-VL config (about 0.3M parameters at the defaults)."""
    from transformers import Qwen2_5_VLConfig

    head_dim = 16
    return Qwen2_5_VLConfig(
        text_config=dict(hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=hidden // head_dim,
                         num_key_value_heads=2, intermediate_size=2 * hidden, vocab_size=320,
                         bos_token_id=0, eos_token_id=2, pad_token_id=0,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=vision_depth, hidden_size=32, intermediate_size=64, num_heads=2,
                           out_hidden_size=hidden, fullatt_block_indexes=[vision_depth - 1],
                           window_size=56, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=12, video_token_id=13, vision_start_token_id=9, vision_end_token_id=10,
    )


def _delta(shape: torch.Size, scale: float, rank: int | None, generator: torch.Generator) -> torch.Tensor:
    rows, cols = shape[0], int(torch.tensor(shape[1:]).prod())
    if rank is None:
        delta = torch.randn(rows, cols, generator=generator)
    else:
        delta = torch.randn(rows, rank, generator=generator) @ torch.randn(rank, cols, generator=generator)
        delta /= rank ** 0.5
    return (scale * delta).reshape(shape)


def _rotated(w: torch.Tensor, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """``w`` with its top-PRINCIPAL_RANK left singular vectors U_k turned by ``degrees`` toward
    random orthonormal directions P ⟂ U_k: U_k cos θ + P sin θ (every principal angle θ)."""
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    k = min(PRINCIPAL_RANK, w.shape[0] // 2, len(s))
    top = u[:, :k]
    p = torch.randn(w.shape[0], k, generator=generator, dtype=torch.float64)
    p = torch.linalg.qr(p - top @ (top.T @ p)).Q
    theta = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    turned = top * torch.cos(theta) + p * torch.sin(theta)
    return (w.double() + (turned - top) @ torch.diag(s[:k]) @ vh[:k]).to(w.dtype)


def _spike(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """A rank-PRINCIPAL_RANK matrix with singular values 4…2 and random singular vectors."""
    k = min(PRINCIPAL_RANK, shape[0] // 2, shape[1])
    u = torch.linalg.qr(torch.randn(shape[0], k, generator=generator)).Q
    v = torch.linalg.qr(torch.randn(shape[1], k, generator=generator)).Q
    return u @ torch.diag(torch.linspace(4.0, 2.0, k)) @ v.T


def _matrices(state: dict[str, torch.Tensor]):
    """``(name, layer)`` of the LLM decoder's weight matrices."""
    prefix = "model.language_model.layers."
    for name, tensor in state.items():
        if name.startswith(prefix) and name.endswith(".weight") and tensor.ndim == 2 and "norm" not in name:
            yield name, int(name[len(prefix):].split(".", 1)[0])


def _apply(state: dict[str, torch.Tensor], plant: Plant, num_layers: int, generator: torch.Generator) -> dict:
    regions = regions_for("paper", num_layers)
    out = {name: tensor.clone() for name, tensor in state.items()}
    for name, layer in _matrices(state):
        tensor = state[name]
        scale = plant.scale[regions.region_of(layer)]
        delta = _delta(tensor.shape, scale, plant.rank, generator)
        if plant.density < 1:
            delta *= torch.rand(tensor.shape, generator=generator) < plant.density
        out[name] = tensor + delta
        if plant.rotation:
            out[name] = _rotated(out[name], plant.rotation, generator)
    return out


def build_triple(out: str | Path, scenario: str = "paper", *, num_layers: int = 6, hidden: int = 64,
                 seed: int = 0, dtype: str = "float32", rl_dtype: str | None = None) -> dict[str, Path]:
    """Write ``origin/``, ``base/`` and ``rl/`` checkpoint folders under ``out``.

    The updates are planted in fp32 (the training's master weights); each checkpoint is then stored
    rounded to its dtype, as trainers save them.

    Args:
        out: a folder (created; must not already hold these three folders).
        scenario: a key of :data:`SCENARIOS`.
        num_layers, hidden: decoder depth and width of the tiny model.
        seed: seeds the initial weights and the planted deltas (same seed, same bytes).
        dtype: the stored dtype of origin and base (``float32``, ``bfloat16``, ``float16``).
        rl_dtype: the stored dtype of RL (default: ``dtype``).

    Returns:
        ``{"origin": Path, "base": Path, "rl": Path}``.

    Raises:
        KeyError: unknown scenario. FileExistsError: a target folder exists.
        AttributeError: ``dtype`` is not a torch dtype.
    """
    from transformers import Qwen2_5_VLForConditionalGeneration

    plant_in, plant_rl = SCENARIOS[scenario]
    out = Path(out)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(tiny_config(num_layers, hidden)).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    origin = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if scenario in SPIKED:
        for name, _ in _matrices(origin):
            origin[name] = origin[name] + _spike(origin[name].shape, generator)
    base = _apply(origin, plant_in, num_layers, generator)
    rl = _apply(base, plant_rl, num_layers, generator)
    dtypes = {"origin": dtype, "base": dtype, "rl": rl_dtype or dtype}
    paths = {}
    for stage, state in (("origin", origin), ("base", base), ("rl", rl)):
        target = out / stage
        target.mkdir(parents=True, exist_ok=False)
        model.to(getattr(torch, dtypes[stage]))
        model.load_state_dict(state)  # rounds the fp32 values to the model's dtype
        model.save_pretrained(target)
        paths[stage] = target
    return paths
