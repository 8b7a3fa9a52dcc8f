"""vlmdiag: the findings of "What does RL improve for Visual Reasoning? A Frankenstein-Style
Analysis" (arXiv 2602.12395) as pytest diagnostics that run on your own checkpoints."""

__version__ = "0.1.0"
