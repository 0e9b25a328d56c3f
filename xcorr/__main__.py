"""``python -m xcorr``: the command-line interface (see ``xcorr.cli``)."""

from .cli import main

raise SystemExit(main())
