"""``python -m broadcasting``: the same as the ``broadcasting`` command."""

from broadcasting.cli import main

raise SystemExit(main())
