"""TEST-ONLY harness for the native kernels: turns ``lower()`` output into one C program with a
static buffer per tensor (no memory planner), compiles it with the host ``cc`` together with
``firmware/runtime/*.c``, and runs it on inputs, so tests can compare byte for byte with the
tflite-micro interpreter.

Many models can share one program: each becomes a function ``run_m<k>()``; the program reads
requests from stdin (int32 model id, then that model's input bytes) and writes the output bytes of
each request to stdout, so one process serves every model and every input of a test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeforge.model.tflite import ModelInfo, read_tflite
from edgeforge.native.csource import render_call
from edgeforge.native.ir import KernelCall
from edgeforge.native.lower import lower

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "firmware" / "runtime"
#: EF_HARNESS_CFLAGS adds flags, e.g. "-fsanitize=undefined,address -fno-sanitize-recover=all" for a UB hunt
CFLAGS = ["-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", *os.environ.get("EF_HARNESS_CFLAGS", "").split()]

_CTYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float",
           "int64": "int64_t", "bool": "uint8_t"}
_NP = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "float32": np.float32,
       "int64": np.int64, "bool": np.uint8}


def _cache_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"edgeforge-native-harness-{os.getuid()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _runtime_objects(defines: list[str]) -> list[Path]:
    """firmware/runtime/*.c compiled once per content and flags (cached across test runs)."""
    cc = shutil.which("cc") or "gcc"
    srcs = sorted(RUNTIME.glob("*.c"))
    h = hashlib.sha256(" ".join([cc, *CFLAGS, *defines]).encode())
    for f in sorted(RUNTIME.glob("*.[ch]")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    d = _cache_dir() / f"rt-{h.hexdigest()[:16]}"
    objs = [d / (s.stem + ".o") for s in srcs]
    if all(o.exists() for o in objs):
        return objs
    tmp = Path(tempfile.mkdtemp(dir=_cache_dir()))
    for s in srcs:
        subprocess.run([cc, *CFLAGS, *defines, "-I", str(RUNTIME), "-c", str(s), "-o", str(tmp / (s.stem + ".o"))],
                       check=True, capture_output=True, text=True)
    try:
        tmp.rename(d)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return objs


@dataclass
class _Model:
    info: ModelInfo
    calls: list[KernelCall]


class Program:
    """A compiled C program serving several lowered models."""

    def __init__(self, models: list[tuple[ModelInfo, bytes]], single_rounding: bool = False) -> None:
        self.models = [_Model(info, lower(info, data, single_rounding)) for info, data in models]
        self.single_rounding = single_rounding
        self.source = self._render()
        self.exe = self._compile()

    # ---- C source ----------------------------------------------------------------------------------
    def _render(self) -> str:
        out = ["#include <stdio.h>", "#include <string.h>", '#include "ef_kernels.h"', ""]
        for k, m in enumerate(self.models):
            out += self._render_model(k, m)
        out += ["int main(void) {", "  int32_t id;", "  while (fread(&id, sizeof id, 1, stdin) == 1) {",
                "    switch (id) {"]
        for k in range(len(self.models)):
            out.append(f"      case {k}: if (serve_m{k}() != 0) return 2; break;")
        out += ["      default: return 3;", "    }", "    fflush(stdout);", "  }", "  return 0;", "}", ""]
        return "\n".join(out)

    def _render_model(self, k: int, m: _Model) -> list[str]:
        info = m.info
        lines: list[str] = [f"/* ---- model {k} ---- */"]
        used: set[int] = set(info.inputs) | set(info.outputs)
        for c in m.calls:
            used.update(c.inputs)
            used.update(c.outputs)
        for t in sorted(used):
            ti = info.tensors[t]
            ctype = _CTYPES[ti.dtype]
            n = max(ti.elements, 1)
            lines.append(f"static {ctype} m{k}_t{t}[{n}] __attribute__((aligned(16)));")
        scratch = max((c.scratch_bytes for c in m.calls), default=0)
        if scratch:
            lines.append(f"static uint8_t m{k}_scratch[{scratch}] __attribute__((aligned(16)));")
        seen: set[str] = set()
        for c in m.calls:
            for a in c.consts:
                if a.name in seen:
                    continue
                seen.add(a.name)
                vals = ", ".join(("(-2147483647 - 1)" if int(v) == -(1 << 31) else str(int(v)))
                                 if a.ctype != "float" else (float(v).hex() + "f") for v in a.values)
                lines.append(f"static const {a.ctype} m{k}_{a.name}[{max(len(a.values), 1)}] = {{{vals or '0'}}};")
        lines.append(f"static void run_m{k}(void) {{")
        for c in m.calls:
            code = render_call(c, lambda t: f"(({_CTYPES[info.tensors[t].dtype]}*)m{k}_t{t})", f"(m{k}_scratch)",
                               lambda a: f"m{k}_{a.name}")
            lines.append(f"  /* op {c.op_index}: {c.op} */")
            lines.append(f"  {code}")
        lines.append("}")
        lines.append(f"static int serve_m{k}(void) {{")
        for i in info.inputs:
            t = info.tensors[i]
            lines.append(f"  if (fread(m{k}_t{i}, 1, {t.nbytes}, stdin) != {t.nbytes}) return 1;")
        lines.append(f"  run_m{k}();")
        for o in info.outputs:
            t = info.tensors[o]
            lines.append(f"  if (fwrite(m{k}_t{o}, 1, {t.nbytes}, stdout) != {t.nbytes}) return 1;")
        lines += ["  return 0;", "}", ""]
        return lines

    # ---- build and run ---------------------------------------------------------------------------------
    def _defines(self) -> list[str]:
        return [f"-DEF_SINGLE_ROUNDING={int(self.single_rounding)}"]

    def _compile(self) -> Path:
        cc = shutil.which("cc") or "gcc"
        objs = _runtime_objects(self._defines())
        h = hashlib.sha256(self.source.encode() + b"".join(o.read_bytes() for o in objs)).hexdigest()[:20]
        exe = _cache_dir() / f"prog-{h}"
        if exe.exists():
            return exe
        d = Path(tempfile.mkdtemp(dir=_cache_dir()))
        src = d / "prog.c"
        src.write_text(self.source)
        proc = subprocess.run([cc, *CFLAGS, *self._defines(), "-I", str(RUNTIME), str(src), *map(str, objs),
                               "-o", str(d / "prog")], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"harness program does not compile (kept in {d}):\n{proc.stderr[-4000:]}")
        os.replace(d / "prog", exe)
        shutil.rmtree(d, ignore_errors=True)
        return exe

    def run_many(self, requests: list[tuple[int, list[np.ndarray]]]) -> list[list[np.ndarray]]:
        """Run (model id, inputs) requests in one process; returns each request's outputs."""
        blob = bytearray()
        for k, inputs in requests:
            info = self.models[k].info
            blob += struct.pack("<i", k)
            if len(inputs) != len(info.inputs):
                raise ValueError(f"model {k} takes {len(info.inputs)} inputs")
            for x, i in zip(inputs, info.inputs, strict=True):
                t = info.tensors[i]
                a = np.ascontiguousarray(np.asarray(x, dtype=_NP[t.dtype]))
                if a.size != t.elements:
                    raise ValueError(f"input of {a.size} elements for tensor {t.name} of {t.elements}")
                blob += a.tobytes()
        proc = subprocess.run([str(self.exe)], input=bytes(blob), capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"harness program failed with {proc.returncode}: {proc.stderr[-2000:]!r}")
        data = proc.stdout
        results: list[list[np.ndarray]] = []
        pos = 0
        for k, _ in requests:
            info = self.models[k].info
            outs = []
            for o in info.outputs:
                t = info.tensors[o]
                outs.append(np.frombuffer(data[pos : pos + t.nbytes], dtype=_NP[t.dtype]).reshape(t.shape).copy())
                pos += t.nbytes
            results.append(outs)
        if pos != len(data):
            raise RuntimeError(f"harness program wrote {len(data)} bytes, expected {pos}")
        return results

    def run(self, k: int, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.run_many([(k, inputs)])[0]


def compile_models(models: list[bytes], single_rounding: bool = False) -> Program:
    return Program([(read_tflite(m), m) for m in models], single_rounding)


# ---- the oracle ---------------------------------------------------------------------------------------


def tflm_run(model: bytes, inputs: list[np.ndarray], arena_size: int | None = None) -> list[np.ndarray]:
    """Outputs of the tflite-micro reference interpreter (double rounding build)."""
    return tflm_run_many(model, [inputs], arena_size)[0]


def tflm_run_many(model: bytes, batches: list[list[np.ndarray]],
                  arena_size: int | None = None) -> list[list[np.ndarray]]:
    """One tflite-micro interpreter, invoked once per input list."""
    from tflite_micro.python.tflite_micro import runtime

    info = read_tflite(model)
    if arena_size is None:
        arena_size = 3 * sum(t.nbytes for t in info.tensors) + 65536
    ip = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    results = []
    for inputs in batches:
        for k, x in enumerate(inputs):
            t = info.tensors[info.inputs[k]]
            ip.set_input(np.asarray(x, dtype=_NP[t.dtype]).reshape(t.shape), k)
        ip.invoke()
        results.append([np.asarray(ip.get_output(k)).copy() for k in range(len(info.outputs))])
    return results


def random_inputs(info: ModelInfo, rng: np.random.Generator) -> list[np.ndarray]:
    xs = []
    for i in info.inputs:
        t = info.tensors[i]
        if t.dtype == "int8":
            xs.append(rng.integers(-128, 128, size=t.shape, dtype=np.int8))
        elif t.dtype == "float32":
            xs.append(rng.uniform(-4, 4, size=t.shape).astype(np.float32))
        else:
            raise ValueError(f"no random input for {t.dtype}")
    return xs
