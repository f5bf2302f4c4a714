"""`python -m nastk.cli ...`."""

import sys

from nastk.cli.main import main

sys.exit(main())
