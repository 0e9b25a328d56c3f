"""``python -m xcorr.benchmark [options]`` is ``xcorr bench [options]``."""

import sys

from .command import main

sys.exit(main())
