"""`python -m mobilevision.cli`: the `mobilevision` command."""

import sys

from mobilevision.cli import main

sys.exit(main())
