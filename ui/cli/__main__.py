"""`python -m privsynth_ui.cli`: the same as the `privsynth` command."""

import sys

from privsynth_ui.cli import main

sys.exit(main())
