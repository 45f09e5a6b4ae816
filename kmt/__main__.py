"""``python -m kmt``: the same command line as ``kmt``."""

from kmt.cli import main

raise SystemExit(main())
