"""The built-in measurement plans, one module each (registered on import; see
:mod:`vlmdiag.runner.plans`)."""
