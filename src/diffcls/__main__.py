"""``python -m diffcls``: the same as the ``diffcls`` command."""

from diffcls.cli import main

raise SystemExit(main())
