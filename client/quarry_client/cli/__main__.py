"""`python -m quarry_client.cli …` runs the `quarry` command line."""

import sys

from quarry_client.cli import main

sys.exit(main())
