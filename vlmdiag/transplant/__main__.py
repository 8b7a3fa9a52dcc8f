"""``python -m vlmdiag.transplant``: the ``vlmdiag transplant`` command."""

from vlmdiag.transplant.cli import main

raise SystemExit(main())
