"""``python -m broadcasting``: the same as the ``broadcasting`` command."""

import sys

from broadcasting.cli import main

sys.exit(main())
