"""The one reporting helper of the ``fgrasp`` CLI: stage lines, tables, summaries, errors.

Every line the CLI shows a user goes through a :class:`Reporter`; no other module prints.
The text builders (:func:`format_table`, :func:`format_value`) are pure and return strings,
so tests check them without capturing output.

Example::

    rep = Reporter()
    rep.stage("perception", "done", "462 points in 31 ms")
    rep.table([("held", "yes"), ("max displacement", "4.1 mm")], headers=("quantity", "value"))
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

#: Width of the stage-name column of progress lines, characters.
STAGE_NAME_WIDTH = 12


def format_value(value: Any, digits: int = 3) -> str:
    """``value`` as table text: floats with ``digits`` significant digits, None as ``-``, bools yes/no."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"
    return str(value)


def format_table(rows: Iterable[Sequence[Any]], headers: Sequence[str] | None = None,
                 title: str | None = None) -> str:
    """A plain-text table with aligned columns (numbers right-aligned, text left-aligned).

    Args:
        rows: each row a sequence of cells (any value; see :func:`format_value`).
        headers: column titles, or None for none.
        title: a line above the table, or None.

    Returns:
        The table as lines joined by ``\\n`` (no trailing newline).
    """
    raw = [list(r) for r in rows]
    text = [[format_value(c) for c in r] for r in raw]
    ncol = max([len(r) for r in text] + [len(headers or ())])
    for r in text:
        r.extend([""] * (ncol - len(r)))
    numeric = [all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool)
                   for r in raw if i < len(r) and r[i] is not None) and any(i < len(r) for r in raw)
               for i in range(ncol)]
    head = list(headers or [])
    head.extend([""] * (ncol - len(head)))
    widths = [max([len(r[i]) for r in text] + [len(head[i])]) for i in range(ncol)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()

    out = [title] if title else []
    if headers:
        out += [line(head), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in text]
    return "\n".join(out)


class Reporter:
    """Writes the CLI's user-facing output: progress lines, tables, warnings and errors.

    Args:
        stream: where normal output goes (default ``sys.stdout``).
        err_stream: where warnings and errors go (default ``sys.stderr``).
        clock: monotonic clock in seconds; progress lines show the time since construction.
    """

    def __init__(self, stream: TextIO | None = None, err_stream: TextIO | None = None,
                 clock=time.monotonic) -> None:
        self._out = stream
        self._err = err_stream
        self._clock = clock
        self._t0 = clock()

    @property
    def out(self) -> TextIO:
        return self._out if self._out is not None else sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err if self._err is not None else sys.stderr

    def _write(self, text: str, stream: TextIO) -> None:
        stream.write(text + "\n")
        stream.flush()

    def elapsed_s(self) -> float:
        """Seconds since this reporter was created."""
        return self._clock() - self._t0

    def line(self, text: str = "") -> None:
        """One line of normal output."""
        self._write(text, self.out)

    def stage(self, name: str, state: str, detail: str = "") -> None:
        """A progress line ``[  12.3 s] perception   done      462 points``."""
        text = f"[{self.elapsed_s():6.1f} s] {name:<{STAGE_NAME_WIDTH}} {state:<8}"
        self._write(f"{text} {detail}".rstrip(), self.out)

    def table(self, rows: Iterable[Sequence[Any]], headers: Sequence[str] | None = None,
              title: str | None = None) -> None:
        """Print :func:`format_table` of ``rows``."""
        self._write(format_table(rows, headers, title), self.out)

    def block(self, title: str, text: str, indent: str = "    ") -> None:
        """A titled block of preformatted text (e.g. a node's log tail) on the error stream."""
        body = "\n".join(indent + ln for ln in (text.splitlines() or ["(empty)"]))
        self._write(f"{title}\n{body}", self.err)

    def warning(self, text: str) -> None:
        self._write(f"warning: {text}", self.err)

    def error(self, text: str) -> None:
        self._write(f"error: {text}", self.err)
