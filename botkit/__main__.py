"""Allow `python -m botkit`."""

from __future__ import annotations

from botkit.cli import main

raise SystemExit(main())
