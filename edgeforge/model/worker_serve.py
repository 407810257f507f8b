"""The child side of ``edgeforge.model.worker``: answers conversion requests on stdin with replies on stdout.

Kept apart from the parent side so that the converter (which starts workers) and the worker's request
handler (which runs the converter) do not import each other."""

from __future__ import annotations

import json
import os
import pickle
import sys
import traceback
from pathlib import Path
from typing import IO, Any

from edgeforge.errors import EdgeforgeError
from edgeforge.model.worker import _read_frame, _write_frame


def _reply(out: IO[bytes], header: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> None:
    _write_frame(out, json.dumps({**header, "blobs": len(blobs)}).encode())
    for blob in blobs:
        _write_frame(out, blob)
    out.flush()


def _handle(request: tuple[Any, ...], state: dict[str, Any]) -> tuple[dict[str, Any], tuple[bytes, ...]]:
    from edgeforge.model import convert as conv
    from edgeforge.model.load import SourceModel

    op = request[0]
    if op == "reset":
        graph = state.pop("graph", None)
        if graph is not None:
            graph.close()
        return {}, ()
    if op == "open":
        _, path, fmt, sha, trust = request
        graph = conv.LocalGraph(SourceModel(Path(path), fmt, sha, trust_code=trust))
        state["graph"] = graph
        return {"inputs": [[s.name, list(s.shape), s.dtype] for s in graph.inputs]}, ()
    if op == "convert":
        _, scheme, calibration = request
        return {}, (conv.convert_local(state["graph"], scheme, calibration),)
    if op == "quantize":
        _, data, scheme, calibration = request
        return {}, (conv.quantize_local(data, scheme, calibration),)
    raise ValueError(f"unknown request {op!r}")


def serve() -> None:
    """Child side: answer requests on stdin until it closes. Native code's prints go to /dev/null so
    that they cannot corrupt the replies on the original stdout."""
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the worker
    state: dict[str, Any] = {}
    try:
        while True:
            try:
                request = pickle.loads(_read_frame(requests))
            except EOFError:
                return
            try:
                header, blobs = _handle(request, state)
            except EdgeforgeError as exc:
                header, blobs = {"error": type(exc).__name__, "message": exc.message, "hint": exc.hint}, ()
            except Exception:  # a bug: the parent reports it as an internal error
                header, blobs = {"bug": traceback.format_exc(limit=8)[-2000:]}, ()
            _reply(replies, header, blobs)
    finally:
        graph = state.get("graph")
        if graph is not None:
            graph.close()
