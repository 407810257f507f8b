"""Finds the data edgeforge ships (target profiles, templates) in a wheel or a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Folder of bundled data ``name`` ("targets" or "templates").

    A wheel carries them under ``edgeforge/_data/``; a checkout or editable install keeps
    them at the repository's top level, beside the package.
    """
    packaged = _PACKAGE_DIR / "_data" / name
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE_DIR.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"edgeforge data folder {name!r} not found (broken installation)")
