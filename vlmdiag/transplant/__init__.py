"""Frankenstein transplants: splice Early / Mid / Late decoder regions of two checkpoints
(paper §3.3, Table 2; App. E; ``notes/reference-implementation.md`` §8.4).

Notation ``X:Y:Z`` = the sources of the Early:Mid:Late LLM decoder regions. ``A`` (alias ``IN``,
``SFT``) is the checkpoint given first (``--from``), ``B`` (alias ``RL``) the second (``--with``).
Inside a region the complete state of every decoder layer is taken from its source (attention,
MLP, both layer norms), nothing is renormalised.

Everything that is *not* a decoder layer (vision tower, projector, token embeddings, final norm,
``lm_head``) comes from one explicit checkpoint, ``components_from``. The default is the Early
source, which is what the authors' code does (it loads the Early source in full and overwrites
layers from the others). mergekit's passthrough would instead take the embeddings from the first
slice and the final norm / ``lm_head`` from the last one; the written YAML says when that differs.

Two ways to get a splice:

* :class:`Splicer` splices **in memory**: A's model is loaded once, the chosen tensors are
  streamed from B's safetensors into it, the caller evaluates, and A's exact tensors are put
  back. A sweep over the 8 variants (:func:`all_variants`, :meth:`Splicer.sweep`) therefore
  loads no checkpoint again; the transplant measurement scores each variant while the sweep
  holds it.
* :func:`write_transplant` (and the ``vlmdiag transplant`` command, :func:`main`) writes a spliced
  checkpoint folder, tensor by tensor, with a mergekit-compatible ``mergekit_config.yml``.

One module per concern:

===============  ===================================================================
``variants``     the ``X:Y:Z`` grammar: :class:`Variant`, :func:`parse_variant`, :func:`all_variants`
``plan``         :class:`SplicePlan` (the source of every tensor), :func:`plan_splice`, pair checks
``splicer``      :class:`Splicer` (in memory: ``splice`` one variant, ``sweep`` all of them)
``write``        :func:`write_transplant` (a new checkpoint folder)
``mergekit``     :func:`mergekit_config` (the passthrough YAML written beside the weights)
``cli``          ``vlmdiag transplant`` / ``python -m vlmdiag.transplant`` (:func:`main`)
===============  ===================================================================
"""

from __future__ import annotations

from vlmdiag.transplant.cli import build_parser, main
from vlmdiag.transplant.mergekit import mergekit_config
from vlmdiag.transplant.plan import SplicePlan, plan_splice
from vlmdiag.transplant.splicer import SpliceRecord, Splicer
from vlmdiag.transplant.variants import COMPONENTS, Side, Variant, all_variants, parse_variant
from vlmdiag.transplant.write import TransplantResult, write_transplant

__all__ = [
    "COMPONENTS", "Side", "Variant", "SplicePlan", "SpliceRecord", "Splicer", "TransplantResult", "all_variants",
    "build_parser", "parse_variant", "plan_splice", "mergekit_config", "write_transplant", "main",
]
