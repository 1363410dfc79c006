"""``python -m flows.cli``: the same as the ``plumbline`` command."""

import sys

from flows.cli.app import main

sys.exit(main())
