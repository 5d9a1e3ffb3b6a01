"""``python -m fastlse``: self-checks, then timings against peers (see
``fastlse.bench.cli``)."""

import sys

from fastlse.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
