"""``python -m ganvas`` is the same as the ``ganvas`` command."""

import sys

from ganvas.cli.main import main

sys.exit(main())
