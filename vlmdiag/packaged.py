"""Where the diagnostics and the default thresholds that ship with vlmdiag are.

The repository keeps them at its top level (``diagnostics/``, ``thresholds.yaml``); a wheel carries
them inside the package (``vlmdiag/diagnostics/``, ``vlmdiag/thresholds.yaml``, see setup.py). Both
are found from this module's own location, never from the current folder, so a source checkout
always pairs with its own diagnostics."""

from __future__ import annotations

from pathlib import Path

from vlmdiag.errors import UsageError

_PACKAGE = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    """``vlmdiag/NAME`` of an installed wheel if it exists, else ``NAME`` beside the package (a
    source checkout or an editable install) if that exists, else the former."""
    installed = _PACKAGE / name
    checkout = _PACKAGE.parent / name
    return checkout if not installed.exists() and checkout.exists() else installed


def diagnostics_dir() -> Path:
    """The folder of vlmdiag's diagnostics (``test_*.py``, one per section of the paper): what
    ``pytest --base X --rl Y`` collects.

    Raises:
        UsageError: the installation lacks them.
    """
    folder = _shipped("diagnostics")
    if not any(folder.glob("test_*.py")):
        raise UsageError(f"vlmdiag is installed without its diagnostics ({folder} has no test_*.py); "
                         f"reinstall it: pip install --force-reinstall vlmdiag")
    return folder


def default_thresholds() -> Path:
    """The ``thresholds.yaml`` vlmdiag ships: used when neither ``--thresholds`` nor the
    ``vlmdiag_thresholds`` ini key is set and the rootdir has no ``thresholds.yaml``. (If an
    installation lacks it, reading it says so.)"""
    return _shipped("thresholds.yaml")
