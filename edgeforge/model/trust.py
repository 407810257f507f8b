"""Refuses Keras files that would run Python from the file when loaded, unless the user trusts them.

A Keras ``Lambda`` layer stores its function as marshalled bytecode (Keras 2 ``.h5`` and Keras 3
``.keras`` alike), and a config may name any importable module for a layer or function. Keras 3
refuses lambdas in safe mode, but the legacy ``tf_keras`` HDF5 loader has no safe mode of its own:
so the model's config is read as plain JSON and checked here, before any Keras code sees it.
SavedModel folders hold graphs, not Python, and ``.tflite`` files are flatbuffers: neither is checked.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeforge.errors import ModelError

TRUST_FLAG = "--trust-model-code"

#: Modules a Keras config may name: Keras itself. Anything else is imported by the loader (code runs).
SAFE_MODULE_ROOTS = ("keras", "tf_keras")
#: Layer and function kinds that carry Python bytecode in the file.
CODE_CLASSES = ("Lambda", "__lambda__")


def keras_config(path: Path, fmt: str) -> Any | None:
    """The model's architecture config as JSON data; None when the file has none (weights only)."""
    try:
        if fmt == "keras":
            with zipfile.ZipFile(path) as z:
                text: str | bytes = z.read("config.json")
        else:
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
                if raw is None:
                    return None
                text = raw if isinstance(raw, (str, bytes)) else bytes(raw)
        return json.loads(text)
    except Exception:  # zip, HDF5 and JSON readers raise many types on damaged files
        raise ModelError(f"{path.name}: cannot read the model's configuration (corrupt or truncated file)",
                         "re-save the model with model.save()") from None


def _nodes(config: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``config`` (iteratively: a hostile file may nest deeply)."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def code_in_config(config: Any) -> list[str]:
    """What in ``config`` would run Python from the file, described for a user (empty: nothing)."""
    found: list[str] = []
    for node in _nodes(config):
        cls = node.get("class_name")
        name = node.get("config", {}).get("name") if isinstance(node.get("config"), dict) else None
        if cls in CODE_CLASSES or node.get("function_type") == "lambda":
            found.append(f"a Lambda layer{f' {name!r}' if name else ''} (Python bytecode)")
        module = node.get("module")
        if isinstance(module, str) and module.split(".")[0] not in SAFE_MODULE_ROOTS:
            found.append(f"{cls or 'an object'} from module {module!r} (imported on load)")
    return list(dict.fromkeys(found))


def check_model_code(path: Path, fmt: str, trusted: bool) -> None:
    """ModelError (exit 65) when the Keras file at ``path`` carries code and the user did not trust it."""
    if trusted or fmt not in ("keras", "h5"):
        return
    config = keras_config(path, fmt)
    found = code_in_config(config) if config is not None else []
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise ModelError(f"{path.name} contains code that would run when it is loaded: {found[0]}{more}",
                         f"edgeforge runs no code from a model file; if you trust where it came from, pass "
                         f"{TRUST_FLAG}, or rebuild the model without Lambda or custom layers")
