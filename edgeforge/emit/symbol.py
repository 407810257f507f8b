"""The C symbol of the model array (``build --symbol``): a name the emitted sources can declare.

Characters a C identifier cannot hold are replaced (``render.c_identifier``); what is left must not
be a C or C++ keyword, a name the language reserves, a standard or TFLite Micro name the emitted
code includes, or a name the emitted code itself defines: any of those gives sources that do not
compile (``--symbol int``) or that silently mean something else (``--symbol kTensorArenaSize``).
"""

from __future__ import annotations

import re

from edgeforge.emit.render import c_identifier
from edgeforge.errors import UsageError

DEFAULT = "g_model"

KEYWORDS = frozenset("""
alignas alignof and and_eq asm atomic_cancel atomic_commit atomic_noexcept auto bitand bitor bool break case
catch char char8_t char16_t char32_t class co_await co_return co_yield compl concept const const_cast consteval
constexpr constinit continue decltype default delete do double dynamic_cast else enum explicit export extern
false float for friend goto if inline int long mutable namespace new noexcept not not_eq nullptr operator or
or_eq private protected public reflexpr register reinterpret_cast requires restrict return short signed sizeof
static static_assert static_cast struct switch synchronized template this thread_local throw true try typedef
typeid typename union unsigned using virtual void volatile wchar_t while xor xor_eq
""".split())

#: Standard library and platform names the emitted sources see through their #includes.
STANDARD_NAMES = frozenset("""
NULL EOF errno assert offsetof main size_t ptrdiff_t intptr_t uintptr_t int8_t int16_t int32_t int64_t uint8_t
uint16_t uint32_t uint64_t printf sprintf snprintf puts putchar malloc calloc realloc free memcpy memmove memset
memcmp strlen strcmp abort exit stdin stdout stderr std tflite setup loop Serial micros millis delay
""".split())

#: Names the emitted TFLite Micro and PlatformIO sources define (templates/tflm, templates/platformio).
EMITTED_NAMES = frozenset("""
kTensorArenaSize kEdgeforgeNumOps EdgeforgeOpResolver EdgeforgeRegisterOps GetModel g_interpreter g_tensor_arena
""".split())
_EMITTED_PATTERN = re.compile(r"k(Input|Output)\d+(Bytes|Scale|ZeroPoint)")


def model_symbol(text: str) -> str:
    """The C identifier for ``--symbol text``; UsageError (exit 2) for one the emitted code cannot use."""
    ident = c_identifier(text, DEFAULT)
    shown = f"--symbol {text!r}" + (f" (as C: {ident})" if ident != text else "")
    why = None
    if ident in KEYWORDS:
        why = "a C/C++ keyword"
    elif "__" in ident or re.match(r"_[A-Z]", ident):
        why = "reserved by the C/C++ standards (double underscore, or underscore and capital)"
    elif ident in STANDARD_NAMES:
        why = "a standard library or TFLite Micro name the generated code includes"
    elif ident in EMITTED_NAMES or _EMITTED_PATTERN.fullmatch(ident):
        why = "a name the generated code already defines"
    if why:
        raise UsageError(f"{shown} cannot name the model array: it is {why}",
                         f"choose another C identifier, e.g. --symbol {DEFAULT} or --symbol g_{ident.strip('_')}_model")
    return ident
