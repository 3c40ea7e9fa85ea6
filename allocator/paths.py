"""Names that become files or folders, and keeping every written path inside its folder.

One rule, used at input (validate.py names the cell) and again at write time (defence in depth):
an id used as a file or folder name is a single, portable path component.
"""

from __future__ import annotations

import re
from pathlib import Path

MAX_NAME_CHARS = 100
# Windows opens these as devices whatever the folder or extension ("NUL.txt" too).
RESERVED_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"COM{i}" for i in range(1, 10)] + [f"LPT{i}" for i in range(1, 10)]
    + [f"COM{c}" for c in "\u00b9\u00b2\u00b3"] + [f"LPT{c}" for c in "\u00b9\u00b2\u00b3"])
# Characters Windows forbids in names, path separators, and control characters.
_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')


def unsafe_name_reason(name: str) -> str | None:
    """Why `name` cannot be a file or folder name inside its folder, or None if it can."""
    if name in (".", ".."):
        return f"{name!r} would name the folder itself or its parent"
    bad = sorted(set(_FORBIDDEN.findall(name)))
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"it contains {shown}, which cannot appear in a file or folder name"
    if len(name) > MAX_NAME_CHARS:
        return f"it is {len(name)} characters long; the limit is {MAX_NAME_CHARS}"
    if name != name.strip(" .") :
        return "it begins or ends with a dot or a space, which file systems drop or hide"
    if name.split(".", 1)[0].strip(" ").upper() in RESERVED_DEVICES:
        return f"{name.split('.', 1)[0]!r} is a reserved device name on Windows"
    return None


class UnsafePathError(ValueError):
    """A path built from an id would leave its folder."""


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, refused unless it is a safe name whose resolved path lies in `folder`."""
    reason = unsafe_name_reason(name)
    if reason is not None:
        raise UnsafePathError(f"{name!r} cannot be used as a name inside {folder}: {reason}")
    target = Path(folder) / name
    base = Path(folder).resolve()
    resolved = target.resolve()
    if resolved.parent != base:
        raise UnsafePathError(f"{target} resolves to {resolved}, outside {base}")
    return target
