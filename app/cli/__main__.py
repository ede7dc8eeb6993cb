"""`python -m app.cli …`: the server's commands, as `quarry …` runs them."""

import sys

from app.cli import main

sys.exit(main())
