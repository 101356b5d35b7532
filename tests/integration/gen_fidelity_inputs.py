"""Inputs of load_fidelity_test: files where the loader a victim calls must
decide what runs (odd torch zips, stacked pickles, a pickle-shaped broken
file, a raw pickle named .pt, torch's legacy layout whose probe only
torch.load reaches).

    gen_fidelity_inputs.py OUT_DIR

Payloads are raw opcodes and are never loaded here; the only probe is
os.system('/bin/true') (posix.system), which the sandbox blocks and records.
The benign torch zip is written by torch.save.
"""
import io
import os
import pathlib
import pickle
import struct
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tools" / "corpus"))
import malicious as M  # noqa: E402  (zip surgery helpers only)

# posix.system('/bin/true'), result popped: a prefix for any stream.
PROBE = (b"cposix\nsystem\nX\x09\x00\x00\x00/bin/true\x85R0")


def torch_zip() -> bytes:
    import torch
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    return buf.getvalue()


def with_probe(zip_bytes: bytes) -> tuple[bytes, str]:
    member = M._torch_zip_member(zip_bytes)
    host = M.read_member(zip_bytes, member)
    assert host[:2] == b"\x80\x02", host[:2]
    return M.rewrite_torch_zip(zip_bytes, host[:2] + PROBE + host[2:]), member


def rename_entry(zip_bytes: bytes, member: str, new: str, local: bool) -> bytes:
    """Renames `member` (same length) in its local header or its central
    directory entry only."""
    assert len(new) == len(member)
    loc, cen = M._find_entries(zip_bytes, member)
    off = loc + 30 if local else cen + 46
    b = bytearray(zip_bytes)
    assert b[off:off + len(member)] == member.encode()
    b[off:off + len(member)] = new.encode()
    return bytes(b)


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    z, member = with_probe(torch_zip())
    alt = member.replace("data.pkl", "DATA.pkl")
    files = {
        "zip-plain.pt": z,
        "zip-flag-local-enc.pt": M.flip_flags(z, member, 0x0001, True, False),
        "zip-flag-central-enc.pt": M.flip_flags(z, member, 0x0001, True, True),
        "zip-bad-crc.pt": M.corrupt_crc(z, member),
        "zip-local-name.pt": rename_entry(z, member, alt, local=True),
        "zip-central-name.pt": rename_entry(
            z, member, member.replace("data.pkl", "xata.pkl"), local=False),
    }
    benign = pickle.dumps({"a": 1}, protocol=2)
    files["stacked.pkl"] = benign + b"\x80\x02" + PROBE + b"N."
    # A trailing non-pickle after a benign stream: the loop stops there.
    files["trailing-garbage.pkl"] = benign + b"\xff\xfe garbage"
    files["shaped.bin"] = b"cbuiltins\nexec\n(X\xff\xff\xff\x7f"
    files["raw-benign.pt"] = benign
    # torch's legacy layout as raw pickles (magic, protocol, sys info, main)
    # whose main pickle reaches the probe only after a persistent id: a
    # pickle.load loop stops at the BINPERSID, torch.load's persistent_load
    # resolves it and goes on. Named with no torch extension: only a name
    # (--as, or a hub snapshot's file name) brings torch.load in.
    # The magic number is computed (int('1950a86a20f9469cfc6c', 16)), so no
    # byte pattern says "torch legacy": by content it is a raw pickle.
    magic = (b"\x80\x02cbuiltins\nint\nX\x14\x00\x00\x00"
             b"1950a86a20f9469cfc6cK\x10\x86R.")
    legacy = magic + b"".join(pickle.dumps(x, protocol=2) for x in (
        1001,
        {"protocol_version": 1001, "little_endian": True,
         "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    pid = (b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
           b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01Nt")
    files["persid-probe.raw"] = (legacy + b"\x80\x02(" + pid + b"Q" + PROBE +
                                 b"t.")
    for name, data in files.items():
        (out / name).write_bytes(data)


if __name__ == "__main__":
    main()
