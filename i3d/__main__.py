"""``python -m i3d``: the same as the ``i3d`` command."""

import sys

from i3d.cli import main

sys.exit(main())
