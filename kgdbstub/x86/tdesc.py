"""The x86-64 target description a `modern` stub sends (qXfer:features:read).

It names exactly the registers of registers.MODERN, in that order, so the
`g` packet and the description always agree.
"""
from __future__ import annotations

from .registers import MODERN, Register

_TYPES = """\
  <flags id="x64_eflags" size="4">
    <field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>
    <field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/>
    <field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
    <field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>
    <field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/>
    <field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
    <field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/>
    <field name="VIF" start="19" end="19"/><field name="VIP" start="20" end="20"/>
    <field name="ID" start="21" end="21"/>
  </flags>"""

_SSE_TYPES = """\
  <vector id="v8bf16" type="bfloat16" count="8"/>
  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v16i8" type="int8" count="16"/>
  <vector id="v8i16" type="int16" count="8"/>
  <vector id="v4i32" type="int32" count="4"/>
  <vector id="v2i64" type="int64" count="2"/>
  <union id="vec128">
    <field name="v8_bfloat16" type="v8bf16"/><field name="v4_float" type="v4f"/>
    <field name="v2_double" type="v2d"/><field name="v16_int8" type="v16i8"/>
    <field name="v8_int16" type="v8i16"/><field name="v4_int32" type="v4i32"/>
    <field name="v2_int64" type="v2i64"/><field name="uint128" type="uint128"/>
  </union>"""

_FEATURE_OF = {"xmm": "sse", "mxcsr": "sse", "fs_base": "segments", "gs_base": "segments"}


def _feature(register: Register) -> str:
    for prefix, feature in _FEATURE_OF.items():
        if register.name.startswith(prefix):
            return feature
    return "core"


def _type(register: Register) -> str:
    name = register.name
    if name in ("rbp", "rsp"):
        return "data_ptr"
    if name == "rip":
        return "code_ptr"
    if name == "eflags":
        return "x64_eflags"
    if register.x87:
        return "i387_ext"
    if name.startswith("xmm"):
        return "vec128"
    if name == "mxcsr":
        return "int"
    return f"int{register.size * 8}"


def _group(register: Register) -> str:
    if register.x87 or register.name.startswith("f") and register.name not in ("fs", "fs_base"):
        return ' group="float"'
    if register.name == "mxcsr":
        return ' group="vector"'
    return ""


def target_xml() -> str:
    features: dict[str, list[str]] = {"core": [], "sse": [], "segments": []}
    for number, register in enumerate(MODERN):
        features[_feature(register)].append(
            f'  <reg name="{register.name}" bitsize="{register.size * 8}" '
            f'type="{_type(register)}" regnum="{number}"{_group(register)}/>'
        )
    return "\n".join(
        [
            '<?xml version="1.0"?>',
            '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
            "<target>",
            "<architecture>i386:x86-64</architecture>",
            '<feature name="org.gnu.gdb.i386.core">',
            _TYPES,
            *features["core"],
            "</feature>",
            '<feature name="org.gnu.gdb.i386.sse">',
            _SSE_TYPES,
            *features["sse"],
            "</feature>",
            '<feature name="org.gnu.gdb.i386.segments">',
            *features["segments"],
            "</feature>",
            "</target>",
            "",
        ]
    )
