"""Root conftest: the fixtures vlmdiag's own tests share (checkpoint builders, probes).

Imported rather than named in ``pytest_plugins``: with an editable install, a run in another
folder collects ``diagnostics/`` from here and loads this file as a non-root conftest, where
pytest refuses ``pytest_plugins``."""

from fixtures.checkpoints import planted  # noqa: F401
