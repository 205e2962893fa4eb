"""Allow ``python -m harness`` as an alias of the ``regiondrill`` console script."""

from harness.cli import main

raise SystemExit(main())
