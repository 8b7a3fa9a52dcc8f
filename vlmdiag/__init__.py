"""vlmdiag: the findings of "What does RL improve for Visual Reasoning? A Frankenstein-Style
Analysis" (arXiv 2602.12395) as pytest diagnostics that run on your own checkpoints."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # vlmdiag.run imports pytest and the plugin: only when it is used, not on `import vlmdiag`.
    if name == "run":
        from vlmdiag.api import run

        return run
    raise AttributeError(f"module 'vlmdiag' has no attribute {name!r}")
