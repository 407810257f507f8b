"""The protocol core on its own, around hand-written stand-ins for a native build's ef_model.c/.h: a float32
output that copies the input (to check the m-results formatter on any value), and a header from before
ef_model_ops / EF_MODEL_SHA256 existed (to check the fallbacks)."""

from __future__ import annotations

import math
import re
import shutil
import struct
from pathlib import Path

import pytest
from benchdut import ERROR_RE, crc32, fields, firmware, host_process

pytestmark = pytest.mark.skipif(shutil.which("cc") is None or shutil.which("make") is None,
                                reason="needs a host C compiler and make")

_HEADER = """#ifndef EF_MODEL_H_
#define EF_MODEL_H_
#include <stddef.h>
#include <stdint.h>
#define EF_MODEL_NUM_INPUTS 1
#define EF_MODEL_NUM_OUTPUTS 1
#define EF_MODEL_ARENA_BYTES 96
#define EF_MODEL_NUM_OPS 2
#define EF_MODEL_SINGLE_ROUNDING {single}
{extra}
/* input 0: int8 [1, 40], real = 1.0 * (q - 0) */
#define EF_MODEL_INPUT0_BYTES 40
/* output 0: {out_type} [1, {out_n}], real = {scale} * (q - {zp}) */
#define EF_MODEL_OUTPUT0_BYTES 40
void* ef_model_input(int index);
size_t ef_model_input_bytes(int index);
const void* ef_model_output(int index);
size_t ef_model_output_bytes(int index);
int ef_model_invoke(void);
{ops_decl}
#ifndef EF_OP_BEGIN
#define EF_OP_BEGIN(index)
#endif
#ifndef EF_OP_END
#define EF_OP_END(index)
#endif
#endif
"""

_SOURCE = """#include <string.h>
#include "ef_model.h"
static uint8_t ef_arena[EF_MODEL_ARENA_BYTES];
{ops_def}
void* ef_model_input(int index) {{ return index == 0 ? ef_arena : NULL; }}
size_t ef_model_input_bytes(int index) {{ return index == 0 ? 40 : 0; }}
const void* ef_model_output(int index) {{ return index == 0 ? ef_arena + 48 : NULL; }}
size_t ef_model_output_bytes(int index) {{ return index == 0 ? 40 : 0; }}
int ef_model_invoke(void) {{
  EF_OP_BEGIN(0);
  memcpy(ef_arena + 48, ef_arena, 40); /* op 0: copy */
  EF_OP_END(0);
  EF_OP_BEGIN(1);
  ef_arena[0] ^= 0xFF; /* op 1: clobbers the input in place (as arena reuse does) */
  EF_OP_END(1);
  return 0;
}}
"""

_NEW_DECL = """typedef struct { const char* name; uint32_t offset; uint32_t bytes; } ef_op_info;
extern const ef_op_info ef_model_ops[EF_MODEL_NUM_OPS];
const uint8_t* ef_model_arena(void);"""
_NEW_DEF = """const ef_op_info ef_model_ops[EF_MODEL_NUM_OPS] = {{"COPY", 48u, 40u}, {"XOR", 0u, 40u}};
const uint8_t* ef_model_arena(void) { return ef_arena; }"""
_NEW_EXTRA = """#define EF_MODEL_ROUNDING "single"
#define EF_MODEL_SHA256 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define EF_MODEL_TARGET "stub-target"
#define EF_MODEL_EDGEFORGE_VERSION "9.9.9\""""


def _stub(root: Path, new: bool, out_type: str, out_n: int, scale: str = "0.0", zp: str = "0") -> Path:
    native = root / "native"
    (native / "runtime").mkdir(parents=True)
    (native / "ef_model.h").write_text(_HEADER.format(
        single=1 if new else 0, extra=_NEW_EXTRA if new else "", out_type=out_type, out_n=out_n, scale=scale,
        zp=zp, ops_decl=_NEW_DECL if new else ""))
    (native / "ef_model.c").write_text(_SOURCE.format(ops_def=_NEW_DEF if new else ""))
    # output 0's facts for the bench Makefile, as edgeforge's native emitter writes them
    (native / "ef_model.mk").write_text(f"EF_OUT_TYPE := {out_type}\nEF_OUT_SCALE := {scale}\nEF_OUT_ZP := {zp}\n")
    return native


def _results(d, data: bytes) -> list[str]:
    d.upload(data)
    lines = d.ok("infer 1 0")
    assert lines[-1].startswith("m-results-[") and lines[-1].endswith("]"), lines
    return lines[-1][len("m-results-[") : -1].split(",")


def test_results_formatter_on_float_outputs(tmp_path: Path) -> None:
    native = _stub(tmp_path, True, "float32", 10)
    exe = firmware(native, tmp_path / "bench", "host")
    values = [0.5, -0.25, 1e-7, -1e-7, 123456.789, math.nan, math.inf, -math.inf, 3e20, -2.5e-3]
    data = b"".join(struct.pack("<f", v) for v in values)
    with host_process(exe) as (d, _):
        d.boot()
        toks = _results(d, data)
    assert len(toks) == 10
    assert toks[:4] == ["0.500000", "-0.250000", "0.000000", "0.000000"]  # no "-0.000000"
    assert toks[5:8] == ["nan", "inf", "-inf"]
    assert re.fullmatch(r"3\.000000e\+20", toks[8]), toks[8]
    for tok, v in zip(toks, values):
        f32 = struct.unpack("<f", struct.pack("<f", v))[0]
        if math.isfinite(f32):
            assert abs(float(tok) - f32) <= max(5.0000001e-7, abs(f32) * 1e-6), (tok, f32)


def test_int16_outputs_and_identity_strings(tmp_path: Path) -> None:
    native = _stub(tmp_path, True, "int16", 20, scale="0.5", zp="-3")
    exe = firmware(native, tmp_path / "bench", "host", MODEL_NAME="stub01", VENDOR="acme")
    q = list(range(-10, 10))
    with host_process(exe) as (d, _):
        d.boot()
        assert d.ok("name") == ["m-name-dut-[acme]"]
        assert d.ok("profile")[1] == "m-model-[stub01]"
        info = d.info()
        assert (info["edgeforge"], info["target"], info["rounding"]) == ("9.9.9", "stub-target", "single")
        assert info["model_sha256"] == "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
        assert info["ops"] == "2" and info["ext"].endswith(";ef-dump")
        data = struct.pack("<20h", *q)
        toks = _results(d, data)
        assert toks == [f"{0.5 * (v + 3):.6f}" for v in q]
        # op 1 clobbers the input inside the arena: every inference must start from a fresh copy
        d.infer(5, 3)
        assert d.raw_output() == data
        assert d.dump(0) == data
        assert d.dump(1) == bytes([data[0] ^ 0xFF]) + data[1:]
        ops = d.ok("ef-ops")
        assert [ln.split(",")[1] for ln in ops[:2]] == ["COPY", "XOR"]


def test_header_without_op_table_or_identity(tmp_path: Path) -> None:
    """ef_model.h from before ef_model_ops / EF_MODEL_SHA256: the firmware still builds and says so."""
    native = _stub(tmp_path, False, "uint8", 40, scale="0.25", zp="128")
    exe = firmware(native, tmp_path / "bench", "host")
    data = bytes(range(100, 140))
    with host_process(exe) as (d, _):
        d.boot()
        info = d.info()
        assert info["model_sha256"] == "unknown" and info["target"] == "unknown"
        assert info["edgeforge"] == "unknown" and info["rounding"] == "double"
        assert info["ext"] == "ef-info;ef-out;ef-crc;ef-lap;ef-mem;ef-ops"
        toks = _results(d, data)
        assert toks == [f"{0.25 * (b - 128):.6f}" for b in data]
        assert d.error("ef-dump 0")[0] == "E_UNSUPPORTED"
        assert d.error("ef-dump 2")[0] == "E_ARG"
        ops = d.ok("ef-ops")
        assert [ln.split(",")[1] for ln in ops[:2]] == ["op", "op"]
        assert d.raw_output() == data
        assert fields(d.ok("ef-crc")[0], "m-ef-in-crc32-[") == {"bytes": "40", "crc32": f"{crc32(data):08x}"}
        assert ERROR_RE.match(d.command("db load 41")[0])
