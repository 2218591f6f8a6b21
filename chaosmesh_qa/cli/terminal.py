"""The CLI's terminal conventions: colour follows https://no-color.org.

Any non-empty ``NO_COLOR`` turns every ANSI style off: the click context of every command (``cli.main`` passes
``color=False``, so click strips styles from whatever it prints) and the live progress view of ``run`` and
``gameday`` (``live_console``: a rich console without a colour system, which emits no style codes; the live
view's cursor movements are not colour and stay).  An empty ``NO_COLOR`` is the same as none.  Used by
``chaosmesh_qa.cli`` (``main``), ``cli.run`` and ``cli.gameday``; rich is imported only by ``live_console``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

NO_COLOR_ENV = "NO_COLOR"


def color_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """False when ``NO_COLOR`` is set to anything but the empty string."""
    return not (os.environ if environ is None else environ).get(NO_COLOR_ENV)


def live_console(**options: object) -> Console:
    """The console the live progress view draws on: without any style when colour is not allowed."""
    from rich.console import Console  # here: every command imports this module, only run and gameday draw

    if not color_allowed():
        return Console(color_system=None, no_color=True, **options)  # type: ignore[arg-type]
    return Console(**options)  # type: ignore[arg-type]
