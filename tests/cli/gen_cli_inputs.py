"""Generates the inputs of disasm_cli_test (benign content only).

Usage: gen_cli_inputs.py OUT_DIR
Every file is either a valid benign model file or deliberately broken
bytes; nothing here carries a payload.
"""
import io
import os
import pickle
import random
import struct
import sys
import zipfile

import torch


def write(out, name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def zip_bytes(members, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data,
                       compress_type=compression)
    return buf.getvalue()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)

    # Valid inputs.
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    good_zip = buf.getvalue()
    write(out, "good_state_dict.pt", good_zip)
    value = {"weights": [1.5, -2, 3 ** 70], "name": "caf\u00e9", "ok": True,
             "raw": b"\x00\x01"}
    for proto in range(6):
        write(out, f"good_p{proto}.pkl", pickle.dumps(value, protocol=proto))
    # Deep but valid nesting: 100000 nested lists, built without recursion.
    n = 100000
    write(out, "deep_lists.pkl",
          b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b".")

    # Broken inputs.
    good = pickle.dumps({"key": "a long enough string value"}, protocol=2)
    write(out, "truncated.pkl", good[: len(good) - 12])
    write(out, "truncated_zip.pt", good_zip[: len(good_zip) // 2])
    rng = random.Random(1234)
    # Start with a byte that is not a pickle opcode or archive magic.
    write(out, "random.bin",
          b"\xfe" + bytes(rng.randrange(256) for _ in range(4095)))
    # BINUNICODE8 declaring 2**62 bytes with 3 present.
    write(out, "absurd_length.pkl",
          b"\x80\x04\x8d" + struct.pack("<Q", 1 << 62) + b"abc")
    write(out, "unknown.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    write(out, "empty.bin", b"")
    # Zip bomb: 16 inner zips, each holding a "pickle" that expands to
    # 256 MiB (4 GiB in all, over the default 2 GiB limit) from ~250 KiB.
    # Members that look like pickles must be expanded to be analysed, so the
    # limits have to stop this.
    body = b"\x80\x04\x8e" + struct.pack("<Q", 256 << 20) + b"\x00" * (256 << 20)
    inner = zip_bytes([("model.pkl", body)])
    del body
    write(out, "zip_bomb.zip",
          zip_bytes([(f"bomb/inner{i:02d}.zip", inner) for i in range(16)],
                    compression=zipfile.ZIP_STORED))
    del inner
    # Archives nested deeper than the default depth limit (8).
    data = good
    name = "inner.pkl"
    for level in range(12):
        data = zip_bytes([(name, data)])
        name = f"level{level}.zip"
    write(out, "deep_nesting.zip", data)
    # A zip whose pickle member is truncated: the error names the member.
    write(out, "zip_with_truncated_member.zip",
          zip_bytes([("model/data.pkl", good[:-12]), ("model/version", b"3\n")]))


if __name__ == "__main__":
    main()
