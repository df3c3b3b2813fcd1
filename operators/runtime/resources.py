"""The data files Surgeflow ships (the repository's top-level `data/`), read through
`importlib.resources`.

`data/` is a package whose files are package data, so a flow finds its reference tables,
intents, reply policy and surge templates the same way from a checkout and from an installed
wheel. Every reader asks here for the file it loads; nothing is read at import.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

DATA_PACKAGE = "data"


def data_file(*parts: str) -> Traversable:
    """The shipped file (or folder) `data/<parts>`, e.g. `data_file("templates", "x.json")`;
    `data_file()` is the folder itself. The file may not exist: readers check and say so."""
    return files(DATA_PACKAGE).joinpath(*parts)
