"""`python -m cybershuttle` is the `cybershuttle` command."""
import sys

from .cli.main import main

sys.exit(main())
