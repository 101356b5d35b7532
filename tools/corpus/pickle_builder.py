"""Opcode-level pickle builder for the malicious corpus.

Payloads are described as small expression trees (``G`` global, ``Call``,
``Attr``, ``Seq``, ``Put``/``Ref`` memo use, ``Build``, ``Raw``) and compiled
to opcodes by ``Emitter`` with a chosen protocol and encoding style (GLOBAL vs
STACK_GLOBAL, which string opcode, memo opcode).  Nothing here ever unpickles:
the output is bytes, validated elsewhere with ``pickletools.genops`` only.

Stack discipline: compiling an expression leaves exactly one value on the
unpickler stack.  ``Seq`` evaluates its items in order and keeps the last.
"""

from __future__ import annotations

import dataclasses
import io
import pickletools
import struct
from typing import Any, Sequence

# --- expression tree -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class G:
    """A global ``module.name`` (GLOBAL / STACK_GLOBAL / INST-free lookup)."""
    module: str
    name: str


@dataclasses.dataclass(frozen=True)
class Call:
    """``func(*args)`` through REDUCE."""
    func: Any
    args: tuple = ()


@dataclasses.dataclass(frozen=True)
class Attr:
    """``getattr(obj, name)`` through ``builtins.getattr``."""
    obj: Any
    name: Any


@dataclasses.dataclass(frozen=True)
class Seq:
    """Evaluates items in order (POP between them); leaves the last."""
    items: tuple


@dataclasses.dataclass(frozen=True)
class Put:
    """Evaluates ``expr``, stores it in the memo under ``key`` (left on the
    stack)."""
    key: str
    expr: Any


@dataclasses.dataclass(frozen=True)
class Ref:
    """The memo value stored earlier by ``Put(key, ...)`` (GET)."""
    key: str


@dataclasses.dataclass(frozen=True)
class Build:
    """``obj`` then ``state`` then BUILD (``__setstate__`` or dict update)."""
    obj: Any
    state: Any


@dataclasses.dataclass(frozen=True)
class Inst:
    """Protocol-0 INST: ``MARK args... INST module\\nname\\n``."""
    module: str
    name: str
    args: tuple = ()


@dataclasses.dataclass(frozen=True)
class Obj:
    """Protocol-1 OBJ: ``MARK callable args... OBJ``."""
    func: Any
    args: tuple = ()


@dataclasses.dataclass(frozen=True)
class StackGlobal:
    """STACK_GLOBAL whose module and name operands are arbitrary
    expressions (strings produced by any opcode, GET, or a REDUCE)."""
    module: Any
    name: Any


@dataclasses.dataclass(frozen=True)
class Str:
    """A string forced to a particular opcode: ``how`` is one of
    ``short`` (SHORT_BINUNICODE), ``bin`` (BINUNICODE), ``bin8``
    (BINUNICODE8), ``unicode`` (protocol-0 UNICODE, raw-unicode-escape with
    every character escaped when ``escape``), ``string`` (protocol-0 STRING,
    only in ``encoding=latin1`` loaders -- not used)."""
    value: str
    how: str
    escape: bool = False


@dataclasses.dataclass(frozen=True)
class Raw:
    """Opcode bytes inserted verbatim; must push exactly one value."""
    data: bytes


def call(module: str, name: str, *args: Any) -> Call:
    return Call(G(module, name), tuple(args))


def method(obj: Any, name: str, *args: Any) -> Call:
    return Call(Attr(obj, name), tuple(args))


# --- emitter ----------------------------------------------------------------


class Emitter:
    """Compiles expressions to pickle opcodes.

    ``proto``: the PROTO header (0/1 emit none) and the default encodings.
    ``global_style``: ``"global"`` (GLOBAL opcode) or ``"stack"``
    (STACK_GLOBAL with string operands); default by protocol.
    ``memo_base``: first memo index used by ``Put`` (keep payload slots away
    from a host pickle's slots when the payload runs after it).
    """

    def __init__(self, proto: int = 2, global_style: str | None = None,
                 memo_base: int = 0, str_style: str | None = None):
        if proto not in range(0, 6):
            raise ValueError(f"bad protocol {proto}")
        self.proto = proto
        self.global_style = global_style or ("stack" if proto >= 4 else "global")
        self.str_style = str_style
        self.out = bytearray()
        self.memo: dict[str, int] = {}
        self.next_memo = memo_base

    # -- low level
    def op(self, data: bytes) -> "Emitter":
        self.out += data
        return self

    def header(self) -> "Emitter":
        if self.proto >= 2:
            self.op(b"\x80" + bytes([self.proto]))
        return self

    def stop(self) -> "Emitter":
        return self.op(b".")

    def pop(self) -> "Emitter":
        return self.op(b"0")

    def put(self, idx: int) -> "Emitter":
        if self.proto == 0:
            return self.op(b"p" + str(idx).encode() + b"\n")
        if idx < 256:
            return self.op(b"q" + bytes([idx]))
        return self.op(b"r" + struct.pack("<I", idx))

    def get_bytes(self, idx: int) -> bytes:
        """The GET/BINGET/LONG_BINGET opcode for memo slot ``idx``."""
        if self.proto == 0:
            return b"g" + str(idx).encode() + b"\n"
        if idx < 256:
            return b"h" + bytes([idx])
        return b"j" + struct.pack("<I", idx)

    def get(self, idx: int) -> "Emitter":
        return self.op(self.get_bytes(idx))

    def string(self, s: str, how: str | None = None, escape: bool = False):
        how = how or self.str_style or ("unicode" if self.proto == 0 else
                                        "short" if self.proto >= 4 else "bin")
        raw = s.encode("utf-8", "surrogatepass")
        if how == "short" and len(raw) < 256:
            return self.op(b"\x8c" + bytes([len(raw)]) + raw)
        if how in ("short", "bin"):
            return self.op(b"X" + struct.pack("<I", len(raw)) + raw)
        if how == "bin8":
            return self.op(b"\x8d" + struct.pack("<Q", len(raw)) + raw)
        if how == "unicode":
            if escape:
                body = "".join(f"\\u{ord(c):04x}" for c in s).encode("ascii")
            else:  # the escaping pickle's own protocol-0 writer applies
                body = (s.replace("\\", "\\u005c").replace("\0", "\\u0000")
                        .replace("\n", "\\u000a").replace("\r", "\\u000d")
                        .replace("\x1a", "\\u001a")).encode("raw-unicode-escape")
            return self.op(b"V" + body + b"\n")
        raise ValueError(f"bad string style {how}")

    def bytes_(self, b: bytes) -> "Emitter":
        if self.proto >= 3:
            if len(b) < 256:
                return self.op(b"C" + bytes([len(b)]) + b)
            return self.op(b"B" + struct.pack("<I", len(b)) + b)
        # Protocols 0-2 have no bytes opcode: _codecs.encode(latin1 text).
        return self.expr(Call(G("_codecs", "encode"),
                              (b.decode("latin1"), "latin1")))

    def int_(self, n: int) -> "Emitter":
        if self.proto == 0:
            return self.op(b"I" + str(int(n)).encode() + b"\n")
        if 0 <= n < 256:
            return self.op(b"K" + bytes([n]))
        if 0 <= n < 65536:
            return self.op(b"M" + struct.pack("<H", n))
        if -2**31 <= n < 2**31:
            return self.op(b"J" + struct.pack("<i", n))
        enc = _encode_long(n)
        return self.op(b"\x8a" + bytes([len(enc)]) + enc)

    def global_(self, module: str, name: str) -> "Emitter":
        if self.global_style == "global" or self.proto < 4:
            return self.op(b"c" + module.encode() + b"\n" + name.encode() + b"\n")
        self.string(module)
        self.string(name)
        return self.op(b"\x93")

    def tuple_(self, items: Sequence[Any]) -> "Emitter":
        if self.proto >= 2 and len(items) <= 3:
            for it in items:
                self.expr(it)
            return self.op([b")", b"\x85", b"\x86", b"\x87"][len(items)])
        if self.proto >= 1 and not items:
            return self.op(b")")
        self.op(b"(")
        for it in items:
            self.expr(it)
        return self.op(b"t")

    def list_(self, items: Sequence[Any]) -> "Emitter":
        if self.proto == 0:
            self.op(b"(l")
            for it in items:
                self.expr(it)
                self.op(b"a")
            return self
        self.op(b"]")
        if items:
            self.op(b"(")
            for it in items:
                self.expr(it)
            self.op(b"e")
        return self

    def dict_(self, items: dict) -> "Emitter":
        if self.proto == 0:
            self.op(b"(d")
            for k, v in items.items():
                self.expr(k)
                self.expr(v)
                self.op(b"s")
            return self
        self.op(b"}")
        if items:
            self.op(b"(")
            for k, v in items.items():
                self.expr(k)
                self.expr(v)
            self.op(b"u")
        return self

    # -- expressions
    def expr(self, e: Any) -> "Emitter":
        if e is None:
            return self.op(b"N")
        if e is True:
            return self.op(b"\x88" if self.proto >= 2 else b"I01\n")
        if e is False:
            return self.op(b"\x89" if self.proto >= 2 else b"I00\n")
        if isinstance(e, int):
            return self.int_(e)
        if isinstance(e, float):
            if self.proto == 0:
                return self.op(b"F" + repr(e).encode() + b"\n")
            return self.op(b"G" + struct.pack(">d", e))
        if isinstance(e, str):
            return self.string(e)
        if isinstance(e, Str):
            return self.string(e.value, e.how, e.escape)
        if isinstance(e, bytes):
            return self.bytes_(e)
        if isinstance(e, tuple):
            return self.tuple_(e)
        if isinstance(e, list):
            return self.list_(e)
        if isinstance(e, dict):
            return self.dict_(e)
        if isinstance(e, G):
            return self.global_(e.module, e.name)
        if isinstance(e, Call):
            self.expr(e.func)
            self.tuple_(e.args)
            return self.op(b"R")
        if isinstance(e, Attr):
            return self.expr(Call(G("builtins", "getattr"), (e.obj, e.name)))
        if isinstance(e, Seq):
            for i, it in enumerate(e.items):
                self.expr(it)
                if i != len(e.items) - 1:
                    self.pop()
            return self
        if isinstance(e, Put):
            self.expr(e.expr)
            idx = self.memo.get(e.key)
            if idx is None:  # a reused key overwrites its slot
                idx = self.next_memo
                self.next_memo += 1
                self.memo[e.key] = idx
            return self.put(idx)
        if isinstance(e, Ref):
            return self.get(self.memo[e.key])
        if isinstance(e, Build):
            self.expr(e.obj)
            self.expr(e.state)
            return self.op(b"b")
        if isinstance(e, Inst):
            self.op(b"(")
            for a in e.args:
                self.expr(a)
            return self.op(b"i" + e.module.encode() + b"\n" + e.name.encode() + b"\n")
        if isinstance(e, Obj):
            self.op(b"(")
            self.expr(e.func)
            for a in e.args:
                self.expr(a)
            return self.op(b"o")
        if isinstance(e, StackGlobal):
            self.expr(e.module)
            self.expr(e.name)
            return self.op(b"\x93")
        if isinstance(e, Raw):
            return self.op(e.data)
        raise TypeError(f"cannot emit {type(e).__name__}: {e!r}")

    def getvalue(self) -> bytes:
        return bytes(self.out)


def _encode_long(n: int) -> bytes:
    if n == 0:
        return b""
    nbytes = (n.bit_length() >> 3) + 1
    result = n.to_bytes(nbytes, "little", signed=True)
    if n < 0 and nbytes > 1 and result[-1] == 0xFF and (result[-2] & 0x80):
        result = result[:-1]
    return result


def payload_pickle(expr: Any, proto: int = 4, **kw: Any) -> bytes:
    """A complete pickle (PROTO ... STOP) whose result is ``expr``."""
    em = Emitter(proto, **kw)
    em.header()
    em.expr(expr)
    em.stop()
    return em.getvalue()


# --- static stream surgery ---------------------------------------------------


def ops(data: bytes, start: int = 0):
    """``(opcode, arg, pos)`` of one pickle stream starting at ``start``
    (positions absolute), through STOP.  Raises ValueError on bad input."""
    f = io.BytesIO(data)
    f.seek(start)
    return list(pickletools.genops(f))


def stream_end(data: bytes, start: int = 0) -> int:
    """Offset just after the STOP that ends the pickle starting at
    ``start``."""
    f = io.BytesIO(data)
    f.seek(start)
    for _ in pickletools.genops(f):
        pass
    return f.tell()


def body_of(data: bytes) -> tuple[int, bytes]:
    """Splits a complete pickle into (protocol, body without PROTO and STOP).

    The STOP byte is kept in place as a POP in callers that need frame
    lengths preserved -- see ``prefix_inject``."""
    o = ops(data)
    first_op, first_arg, _ = o[0]
    last_op, _, last_pos = o[-1]
    if last_op.name != "STOP" or last_pos != len(data) - 1:
        raise ValueError("payload is not one complete pickle")
    if first_op.name == "PROTO":
        return first_arg, data[2:last_pos]
    return 0, data[:last_pos]


def prefix_inject(host: bytes, payload: bytes) -> bytes:
    """``host`` with ``payload``'s opcodes run first and their result
    discarded; the host object is still what the stream returns.

    The payload's STOP is replaced by POP *in place*, so when the payload was
    framed (protocol 4+) its last frame still ends on an opcode boundary;
    the host keeps its own PROTO (re-emitted first) and frames."""
    o = ops(payload)
    if o[-1][0].name != "STOP" or o[-1][2] != len(payload) - 1:
        raise ValueError("payload is not one complete pickle")
    p_start = 2 if o[0][0].name == "PROTO" else 0
    _check_host(host)
    h_start = 2 if host[:1] == b"\x80" else 0
    head = host[:h_start]
    return head + payload[p_start:-1] + b"0" + host[h_start:]


def prefix_raw(host: bytes, payload_ops: bytes) -> bytes:
    """``host`` with raw ``payload_ops`` (no PROTO, no STOP, may leave the
    stream broken on purpose) inserted after the host's PROTO."""
    h_start = 2 if host[:1] == b"\x80" else 0
    return host[:h_start] + payload_ops + host[h_start:]


def _check_host(host: bytes) -> None:
    """Hosts may embed raw data between opcodes (joblib writes array bytes
    after a NumpyArrayWrapper), so they cannot always be walked with genops;
    check what injection relies on: a protocol 2+ PROTO and a final STOP."""
    if host[:1] != b"\x80" or host[1] < 2 or host[-1:] != b".":
        raise ValueError("host must start with PROTO >= 2 and end with STOP")


def host_memo_len(host: bytes) -> int:
    """1 + the highest memo index the host stream writes (0 if none)."""
    hi = -1
    count = 0
    for op, arg, _ in ops(host):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            hi = max(hi, int(arg))
        elif op.name == "MEMOIZE":
            hi = max(hi, count)
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            count += 1
    return hi + 1


def suffix_inject(host: bytes, make_suffix) -> bytes:
    """Runs a payload *after* the host object is built.

    The host's STOP is replaced in place by EMPTY_TUPLE (a one-byte opcode, so
    a protocol-4 last frame still ends on an opcode boundary), then POP, then
    the root object is stored in a fresh memo slot and ``make_suffix(em,
    root_slot)`` emits opcodes that may ``GET`` it; the suffix must leave the
    stack as it found it, and the root is returned.
    """
    _check_host(host)
    proto = host[1] if host[:1] == b"\x80" else 0
    base = 100000  # far above any slot of the small hosts used here
    em = Emitter(max(proto, 2) if proto else 2, memo_base=base + 1)
    em.op(b"0")           # pops the EMPTY_TUPLE
    em.put(base)          # root -> memo[base]
    make_suffix(em, base)
    em.stop()
    return host[:-1] + b")" + em.getvalue()
