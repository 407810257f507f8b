"""The one place kernel calls become C: each ``KernelCall`` of ``edgeforge.native.ir`` rendered as a statement
calling the kernel library (``firmware/runtime/ef_kernels.h``).

Parameter structs are block-local ``static const`` initialisers, so they live in flash and the shapes stay
visible as literals. Where the data lives is the caller's business: ``tensor(i)`` gives the typed pointer
expression of tensor i, ``scratch`` the call's scratch pointer, ``const(a)`` the identifier of a constant
array (its own name unless the caller prefixes it).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edgeforge.native.ir import (STRUCTS, Binary, Concat, ConstArray, Conv, ConvAdd, Copy, Dequantize,
                                 FullyConnected, KernelCall, Logistic, Mean, Operand, Pad, Pool, Quantize,
                                 Requantize, Softmax, Weights, struct_fields)

#: the block-local name of a call's parameter struct
PARAMS_VAR = "p"

TensorRef = Callable[[int], str]
ConstRef = Callable[[ConstArray], str]


def _own_name(a: ConstArray) -> str:
    return a.name


def int_lit(v: int) -> str:
    """A C integer literal; INT32_MIN is not a valid literal on its own."""
    return "(-2147483647 - 1)" if v == -(1 << 31) else str(v)


def float_lit(v: float) -> str:
    """An exact C float literal (hexadecimal) of ``v`` rounded to float32."""
    f = float(np.float32(v))
    assert math.isfinite(f), v  # the lowering rejects non-finite scales
    return f.hex() + "f"


def _lit(v: object) -> str:
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(_lit(x) for x in v) + "}"
    return int_lit(int(v))  # type: ignore[call-overload]


def struct_init(params: object, var: str) -> str:
    """``static const ef_<op>_params <var> = {.field = value, ...};``"""
    body = ", ".join(f".{k} = {_lit(v)}" for k, v in struct_fields(params))
    return f"static const {STRUCTS[type(params)]} {var} = {{{body}}};"


def _with_struct(params: object, fn: str, args: str) -> str:
    """A block declaring the parameter struct and calling ``fn(&struct, args)``."""
    return f"{{ {struct_init(params, PARAMS_VAR)} {fn}(&{PARAMS_VAR}, {args}); }}"


def weight_suffix(w: Weights) -> str:
    """The kernel variant that reads this filter: ``_s8``, ``_s4``, ``_s8_sparse`` or ``_s4_sparse``."""
    return f"_s{w.bits}" + ("_sparse" if w.sparse else "")


def _conv_fn(c: Conv) -> str:
    return ("ef_dwconv2d" if c.depthwise else "ef_conv2d") + weight_suffix(c.weights)


class _Renderer:
    def __init__(self, tensor: TensorRef, scratch: str | None, const: ConstRef) -> None:
        self.tensor, self.scratch, self.const = tensor, scratch, const

    def op(self, x: Operand) -> str:
        return self.const(x) if isinstance(x, ConstArray) else self.tensor(x)

    def weights(self, w: Weights) -> str:
        bias = "NULL" if w.bias is None else self.const(w.bias)
        return f"{self.const(w.filter)}, {bias}, {self.const(w.mult)}, {self.const(w.shift)}"

    def render(self, k: object) -> str:
        t, o = self.tensor, self.op
        if isinstance(k, Conv):
            return _with_struct(k.params, _conv_fn(k), f"{o(k.input)}, {self.weights(k.weights)}, {t(k.output)}")
        if isinstance(k, FullyConnected):
            return _with_struct(k.params, f"ef_fc{weight_suffix(k.weights)}",
                                f"{o(k.input)}, {self.weights(k.weights)}, {t(k.output)}")
        if isinstance(k, Pool):
            return _with_struct(k.params, f"ef_{k.kind}pool_s8", f"{o(k.input)}, {t(k.output)}")
        if isinstance(k, Binary):
            return _with_struct(k.params, f"ef_{k.kind}_s8", f"{o(k.in1)}, {o(k.in2)}, {t(k.output)}")
        if isinstance(k, Softmax):
            return (f"ef_softmax_s8({o(k.input)}, {t(k.output)}, {k.rows}, {k.depth}, {int_lit(k.mult)}, "
                    f"{k.left_shift}, {int_lit(k.diff_min)});")
        if isinstance(k, Logistic):
            return (f"ef_{k.kind}_s8({o(k.input)}, {t(k.output)}, {k.size}, {k.in_zp}, {int_lit(k.mult)}, "
                    f"{k.left_shift}, {k.radius});")
        if isinstance(k, Copy):
            return f"memcpy({t(k.output)}, {o(k.input)}, {k.nbytes});"
        if isinstance(k, Mean):
            return _with_struct(k.params, "ef_mean_s8", f"{o(k.input)}, {t(k.output)}")
        if isinstance(k, Pad):
            return _with_struct(k.params, "ef_pad_s8", f"{o(k.input)}, {t(k.output)}")
        if isinstance(k, Concat):
            stmts = [f"ef_copy_strided((uint8_t*){t(k.output)} + {pc.offset}, (const uint8_t*){o(pc.source)}, "
                     f"{pc.outer}, {pc.chunk}, {pc.pitch});" for pc in k.pieces]
            return "{ " + " ".join(stmts) + " }"
        if isinstance(k, Quantize):
            return (f"ef_quantize_f32_s8({o(k.input)}, {t(k.output)}, {k.size}, {float_lit(k.scale)}, "
                    f"{k.zero_point});")
        if isinstance(k, Requantize):
            return (f"ef_requantize_s8({o(k.input)}, {t(k.output)}, {k.size}, {k.in_zp}, {k.out_zp}, "
                    f"{int_lit(k.mult)}, {k.shift});")
        if isinstance(k, Dequantize):
            return (f"ef_dequantize_s8_f32({o(k.input)}, {t(k.output)}, {k.size}, {float_lit(k.scale)}, "
                    f"{k.zero_point});")
        if isinstance(k, ConvAdd):
            return self.conv_add(k)
        raise TypeError(f"no C rendering for {type(k).__name__}")

    def conv_add(self, k: ConvAdd) -> str:
        assert self.scratch is not None, "a fused CONV_2D+ADD needs its scratch row"
        c = k.conv.params
        row = k.row_bytes
        conv_row, skip_row = f"(const int8_t*)({self.scratch})", f"{self.tensor(k.skip)} + y * {row}"
        a1, a2 = (conv_row, skip_row) if k.conv_first else (skip_row, conv_row)
        return (f"{{ {struct_init(c, 'pc')} {struct_init(k.add, 'pa')} "
                f"ef_conv_params r = pc; int32_t y; "
                f"for (y = 0; y < {c.out_h}; ++y) {{ const int32_t top = y * {c.stride_h} - {c.pad_h}; "
                f"const int8_t* src = {self.op(k.conv.input)}; "
                f"r.out_h = 1; if (top < 0) {{ r.pad_h = -top; r.in_h = {c.in_h}; }} "
                f"else {{ r.pad_h = 0; r.in_h = {c.in_h} - top; src += top * {c.in_w * c.in_c}; }} "
                f"{_conv_fn(k.conv)}(&r, src, {self.weights(k.conv.weights)}, (int8_t*)({self.scratch})); "
                f"ef_add_s8(&pa, {a1}, {a2}, {self.tensor(k.output)} + y * {row}); }} }}")


def render_call(call: KernelCall, tensor: TensorRef, scratch: str | None = None,
                const: ConstRef = _own_name) -> str:
    """``call`` as one C statement (a block where it declares parameters)."""
    return _Renderer(tensor, scratch, const).render(call.kernel)
