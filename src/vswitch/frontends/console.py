"""The rich console every front end prints its tables through.

Owns the one rule for it: no syntax highlighting of values, no emoji codes (a MAC such as
52:54:00:ab:cd:01 would print ":ab:" as an emoji), and when the output is not a terminal
(piped, captured by a test or a script) a wide fixed width, so tables are not squeezed into 80
columns and wrapped mid-value.
Must not touch: the API, what a table contains.
"""

from __future__ import annotations

from rich.console import Console

#: the width of output that is not a terminal
PIPED_WIDTH = 200


def console(piped_width: int = PIPED_WIDTH) -> Console:
    """A console for one command's output; `piped_width` columns when stdout is not a terminal."""
    out = Console(highlight=False, emoji=False)
    if not out.is_terminal:
        out = Console(highlight=False, emoji=False, width=piped_width)
    return out
