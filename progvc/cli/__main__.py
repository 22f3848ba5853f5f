"""``python -m progvc.cli``: the ``progvc`` command."""

from .commands import main

raise SystemExit(main())
