"""``python -m flowy``: the same as the ``flowy`` command."""

import sys

from .cli.main import main

sys.exit(main())
