"""`python -m infersuite.loadtest ...`: see `python -m infersuite.loadtest --help`."""

import sys

from infersuite.loadtest.commands import main

if __name__ == "__main__":
    sys.exit(main())
