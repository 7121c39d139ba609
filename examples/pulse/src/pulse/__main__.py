"""python3 -m pulse ..."""

import sys

from .cli import main

sys.exit(main())
