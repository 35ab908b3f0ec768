"""``python -m thingsray up ...`` runs the ``thingsray`` command."""

import sys

from thingsray.cli import main

sys.exit(main())
