"""Show package code in a notebook by named markers in the source, never by character offsets.

A region of a module is marked with two comment lines, ``# [name]`` and ``# [/name]``::

    def fit(model, batches, settings, ...):
        ...
        # [training-loop]
        for step in range(settings.max_steps):
            ...
        # [/training-loop]

``show_source(fit)`` prints the whole function; ``show_source(training.fit, "training-loop")`` prints only
the marked lines (dedented), and a marker that does not exist is a clear error, so a renamed region
breaks the notebook's test instead of silently printing something else.
"""

from __future__ import annotations

import inspect
import re
import textwrap

from .errors import CourseError

_MARK = re.compile(r"^\s*# \[(/?)([\w.-]+)\]\s*$")


def source_of(obj, marker: str | None = None) -> str:
    """The source of ``obj`` (a module, class or function), or only the region between its marker lines."""
    src = inspect.getsource(obj)
    if marker is None:
        return "\n".join(line for line in src.splitlines() if not _MARK.match(line)) + "\n"
    lines, inside, found = [], False, False
    for line in src.splitlines():
        m = _MARK.match(line)
        if m and m.group(2) == marker:
            if m.group(1) == "/":
                inside = False
            else:
                inside, found = True, True
            continue
        if inside and not _MARK.match(line):
            lines.append(line)
    if not found:
        names = sorted({m.group(2) for line in src.splitlines() if (m := _MARK.match(line))})
        raise CourseError(
            f"no region '# [{marker}]' in {getattr(obj, '__qualname__', obj)!r}; its marked regions: {names or 'none'}"
        )
    return textwrap.dedent("\n".join(lines)) + "\n"


def show_source(obj, marker: str | None = None) -> None:
    """Print ``source_of(obj, marker)``: what the notebook's reader should read next."""
    print(source_of(obj, marker), end="")
