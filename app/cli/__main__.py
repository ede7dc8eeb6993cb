"""`python -m app.cli …`: the server's commands, as `quarry …` runs them."""

import sys

from app.cli.commands import main

sys.exit(main())
