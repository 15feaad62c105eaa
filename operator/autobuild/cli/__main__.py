"""``python -m autobuild.cli``: the ``autobuild`` command without its console script."""

import sys

from autobuild.cli import main

sys.exit(main())
