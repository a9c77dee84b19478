"""`python -m posterior_diffusion.cli`: the same as the `posterior-diffusion` command."""

import sys

from posterior_diffusion.cli import main

sys.exit(main())
