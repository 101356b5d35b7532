"""Static inspection helpers shared by the malicious-corpus tests.

Nothing here unpickles or loads: pickles are walked with
``pickletools.genops``, zips are read member by member (raw bytes), 7z is
listed/extracted with the ``7z`` command, compressed joblib files are
decompressed with the stdlib.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import codecs
import gzip
import io
import lzma
import pathlib
import pickletools
import re
import struct
import subprocess
import zipfile
import zlib

PWN_DIR = "/tmp/dynahug_pwned"
CMD = "/bin/true"
HOST = "127.0.0.1"
PORT = 9
URL = "http://127.0.0.1:9/"

_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\")]*")
_PATH_RE = re.compile(r"(?<![\w:/.])/[\w.-]+(?:/[\w.-]*)*")
_IP_RE = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
_PORT_RE = re.compile(r"127\.0\.0\.1['\"]?\s*[,:]\s*(\d+)")
_BAD_WORD_RE = re.compile(
    r"(?<![\w-])(rm|curl|wget|nc|ncat|bash|sh|dd|mkfs|reboot|shutdown|chmod|"
    r"chown|kill|pkill|python3?|perl|sudo|ssh|scp)(?![\w-])")
_PRINTABLE_RE = re.compile(rb"[\x20-\x7e\t\n]{4,}")


def _path_ok(path: str, binary_run: bool) -> bool:
    if ".." in path.split("/"):
        return False
    if path in (CMD, PWN_DIR) or path.startswith(PWN_DIR + "/"):
        return True
    # A printable run cut out of binary data (marshal) may carry the next
    # object's type byte glued to the end of an allowed path.
    return binary_run and (path.startswith(PWN_DIR) or path.startswith(CMD)) \
        and len(path) <= max(len(PWN_DIR), len(CMD)) + 1


def marshal_strings(b: bytes) -> list[str]:
    """Length-prefixed printable strings of a marshal blob (short ASCII
    z/Z, ASCII a/A, unicode u/t), found without unmarshalling."""
    out = []
    for i in range(len(b) - 2):
        t = b[i] & 0x7F
        if t in (0x7A, 0x5A):  # z Z: 1-byte length
            n, start = b[i + 1], i + 2
        elif t in (0x61, 0x41, 0x75, 0x74):  # a A u t: 4-byte length
            n, start = int.from_bytes(b[i + 1:i + 5], "little"), i + 5
        else:
            continue
        if 2 <= n <= 4096 and start + n <= len(b):
            chunk = b[start:start + n]
            if all(0x20 <= c < 0x7F or c in (9, 10) for c in chunk):
                out.append(chunk.decode("ascii"))
    return out


def text_problems(text: str, where: str, binary_run: bool = False) -> list[str]:
    """Probe-target violations in one decoded string."""
    problems = []
    for url in _URL_RE.findall(text):
        if url != URL:
            problems.append(f"{where}: URL {url!r}")
    rest = _URL_RE.sub(" ", text)
    for path in _PATH_RE.findall(rest):
        if not _path_ok(path, binary_run):
            problems.append(f"{where}: path {path!r}")
    for ip in _IP_RE.findall(rest):
        if ip != HOST:
            problems.append(f"{where}: address {ip!r}")
    for port in _PORT_RE.findall(text):
        if int(port) != PORT:
            problems.append(f"{where}: port {port}")
    for word in _BAD_WORD_RE.findall(rest):
        problems.append(f"{where}: command word {word!r}")
    return problems


# --- containers ---------------------------------------------------------------


def raw_member(zip_bytes: bytes, name: str) -> bytes:
    """Stored bytes of ``name`` read through the local header (works when the
    CRC was corrupted on purpose; no CRC check, no decompression of
    non-stored members)."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        info = zf.getinfo(name)
    off = info.header_offset
    if zip_bytes[off:off + 4] != b"PK\x03\x04":
        raise ValueError(f"{name}: no local header at {off}")
    nlen, xlen = struct.unpack("<HH", zip_bytes[off + 26:off + 30])
    start = off + 30 + nlen + xlen
    data = zip_bytes[start:start + info.compress_size]
    if info.compress_type == zipfile.ZIP_DEFLATED:
        data = zlib.decompress(data, -15)
    elif info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{name}: compression {info.compress_type}")
    return data


def zip_members(zip_bytes: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        names = zf.namelist()
    return [(n, raw_member(zip_bytes, n)) for n in names]


def seven_zip_extract(path: pathlib.Path, inner: str) -> bytes:
    r = subprocess.run(["7z", "x", "-so", str(path), inner],
                       capture_output=True, check=True,
                       stdin=subprocess.DEVNULL)
    return r.stdout


def decompress(kind: str, data: bytes) -> bytes:
    if kind == "zlib":
        return zlib.decompress(data)
    if kind == "gzip":
        return gzip.decompress(data)
    if kind == "bz2":
        return bz2.decompress(data)
    if kind in ("xz", "lzma"):
        return lzma.decompress(data)
    raise ValueError(kind)


def npy_header_len(data: bytes) -> int:
    if not data.startswith(b"\x93NUMPY"):
        raise ValueError("not an npy file")
    if data[6] == 1:
        return 10 + struct.unpack("<H", data[8:10])[0]
    return 12 + struct.unpack("<I", data[8:12])[0]


def payload_stream(entry: dict, out_dir: pathlib.Path) -> tuple[bytes, str]:
    """The byte stream the entry's ``payload_span`` indexes, and its kind:
    ``raw`` (one pickle), ``legacy`` (five pickles + storages), ``npy``
    (header + pickle) or ``joblib`` (pickle with embedded array bytes)."""
    params = entry["params"]
    path = out_dir / entry["path"]
    data = path.read_bytes()
    container = params["container"]
    if container in ("7z-torch", "7z-raw"):
        data = seven_zip_extract(path, params["inner_name"])
    if container in ("torch-zip", "torch-zip-variant", "7z-torch", "zip"):
        return raw_member(data, params["pickle_member"]), "raw"
    if container in ("raw", "raw-host", "7z-raw"):
        return data, "raw"
    if container == "raw-stacked":  # the payload is the second stream
        return data[params["stream_offset"]:], "raw"
    if container in ("torch-legacy", "torch-legacy-magic"):
        return data, "legacy"
    if container == "npy":
        return data, "npy"
    if container == "npz":
        return raw_member(data, params["pickle_member"]), "npy"
    if container == "joblib":
        if params.get("compression"):
            data = decompress(params["compression"], data)
        return data, "joblib"
    raise ValueError(f"unknown container {container}")


def genops_all(data: bytes, start: int = 0) -> tuple[list, int]:
    """All opcodes of the pickle at ``start`` and the offset after STOP."""
    f = io.BytesIO(data)
    f.seek(start)
    ops = list(pickletools.genops(f))
    return ops, f.tell()


def check_full_parse(stream: bytes, kind: str) -> list[str]:
    """Every pickle of a non-broken stream parses to its STOP."""
    problems = []
    try:
        if kind == "raw":
            _, end = genops_all(stream)
            if end != len(stream):
                problems.append(f"{len(stream) - end} bytes after STOP")
        elif kind == "npy":
            _, end = genops_all(stream, npy_header_len(stream))
            if end != len(stream):
                problems.append(f"{len(stream) - end} bytes after STOP")
        elif kind == "legacy":
            pos = 0
            for _ in range(5):
                _, pos = genops_all(stream, pos)
            # What follows are the storages: count, then raw tensor data.
        elif kind == "joblib":
            pass  # raw array bytes sit between opcodes; span check only
    except ValueError as e:
        problems.append(f"genops failed: {e}")
    return problems


# --- probe scanning -----------------------------------------------------------


def _looks_latin1_binary(s: str) -> bool:
    """Protocols < 3 carry bytes as latin-1 text for _codecs.encode."""
    return all(ord(c) < 256 for c in s) and any(
        not (c.isprintable() or c in "\n\t\r") for c in s)


class ProbeScanner:
    """Collects the string/bytes arguments of pickle opcodes, decodes the
    obfuscations the given technique uses (the same decodings its payload
    performs at load time), recurses into nested pickles/zips/npys, and
    reports any probe target other than the allowed ones."""

    def __init__(self, technique: str):
        self.technique = technique
        self.problems: list[str] = []
        self.texts: list[str] = []  # every decoded text checked
        self.pickles = 0

    def scan_pickle(self, data: bytes, where: str, start: int = 0,
                    stop: int | None = None) -> None:
        """Opcode arguments from ``start`` until STOP or ``stop``."""
        self.pickles += 1
        f = io.BytesIO(data)
        f.seek(start)
        prev_host = False
        singles: list[str] = []
        try:
            for op, arg, pos in pickletools.genops(f):
                if stop is not None and pos >= stop:
                    break
                if prev_host and isinstance(arg, int) and not isinstance(arg, bool) \
                        and op.name in ("BININT", "BININT1", "BININT2", "INT",
                                        "LONG1", "LONG4", "LONG"):
                    if arg != PORT:
                        self.problems.append(f"{where}@{pos}: port {arg}")
                prev_host = arg == HOST
                if isinstance(arg, str) and op.name not in ("GLOBAL", "INST"):
                    if len(arg) == 1:
                        singles.append(arg)
                    self.scan_str(arg, f"{where}@{pos}")
                elif isinstance(arg, str):  # 'module name'
                    self.check(arg, f"{where}@{pos}")
                elif isinstance(arg, (bytes, bytearray)):
                    self.scan_bytes(bytes(arg), f"{where}@{pos}")
        except ValueError:
            pass  # broken streams end early; checked elsewhere
        if singles:
            self.check("".join(singles), f"{where}:joined-chars")

    def check(self, text: str, where: str, binary_run: bool = False) -> None:
        self.texts.append(text)
        self.problems.extend(text_problems(text, where, binary_run))

    def scan_str(self, s: str, where: str) -> None:
        if _looks_latin1_binary(s):  # bytes encoded for protocols < 3
            self.scan_bytes(s.encode("latin1"), where + ":latin1")
            return
        t = self.technique
        if t == "exec-rot13" and "\n" in s:
            self.check(codecs.decode(s, "rot13"), where + ":rot13")
            return
        if t in ("exec-base64", "nested-pickle-b64") and \
                re.fullmatch(r"[A-Za-z0-9+/=]{40,}", s):
            self.scan_bytes(base64.b64decode(s), where + ":b64")
            return
        if t == "exec-hex" and re.fullmatch(r"[0-9a-f]{40,}", s):
            self.scan_bytes(binascii.unhexlify(s), where + ":hex")
            return
        self.check(s, where)

    def scan_bytes(self, b: bytes, where: str) -> None:
        if b[:1] == b"\x80" and len(b) > 2:
            self.scan_pickle(b, where + ":pickle")
            return
        if b.startswith(b"PK\x03\x04"):
            for name, data in zip_members(b):
                if name.endswith(".pkl"):
                    self.scan_pickle(data, f"{where}:{name}")
                elif name.endswith(".npy"):
                    self.scan_pickle(data, f"{where}:{name}",
                                     npy_header_len(data))
            return
        if b.startswith(b"\x93NUMPY"):
            self.scan_pickle(b, where + ":npy", npy_header_len(b))
            return
        if b[:1] == b"\x78":
            try:
                self.scan_bytes(zlib.decompress(b), where + ":zlib")
                return
            except zlib.error:
                pass
        try:
            text = b.decode("utf-8")
            if all(c.isprintable() or c in "\n\t\r" for c in text):
                self.check(text, where)
                return
        except UnicodeDecodeError:
            pass
        for text in marshal_strings(b):  # marshal code objects
            self.check(text, where + ":marshal")
        for run in _PRINTABLE_RE.findall(b):  # any other binary blob
            self.check(run.decode("ascii"), where + ":strings", True)
