"""Root conftest: the fixtures vlmdiag's own tests share (checkpoint builders, probes)."""

pytest_plugins = ["fixtures.checkpoints"]
