"""`python -m dtq` runs the dtq command."""

from dtq.cli.main import main

raise SystemExit(main())
