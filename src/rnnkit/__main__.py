"""``python -m rnnkit ...`` (and ``torchrun -m rnnkit train ...``) runs the ``rnnkit`` command."""

import sys

from rnnkit.cli import main

sys.exit(main())
