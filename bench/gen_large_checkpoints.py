#!/usr/bin/python3
"""Writes large, benign torch checkpoints for bench/run_large_bench.sh.

Usage: /usr/bin/python3 bench/gen_large_checkpoints.py DIR KIND GIB [SHARDS]

KIND:
  zip      DIR/ckpt_<GIB>g.pt: torch.save (zip format) of a state dict of
           GIB * 16 float32 tensors of 4096x4096 (64 MiB each).
  legacy   DIR/ckpt_<GIB>g_legacy.pt: the same, legacy (non-zip) format
           (_use_new_zipfile_serialization=False): pickles first, then every
           storage inline.
  sharded  DIR/snapshot_<GIB>g/: a Hugging Face style snapshot of GIB GiB in
           SHARDS pytorch_model-0000i-of-0000N.bin shards (zip format), with
           pytorch_model.bin.index.json and config.json.

Written by torch.save itself, so the files are what users have. Tensor data
are zeros taken from one untouched calloc'ed NumPy buffer (the kernel's zero
page): writing a 4 GiB checkpoint costs disk bandwidth, not 4 GiB of memory.
Never commit the output; the driver deletes it after each run.
"""
import json
import os
import sys

import numpy
import torch

SIDE = 4096
NUMEL = SIDE * SIDE  # 64 MiB of float32


def state_dict(first, count, zeros):
    out = {}
    for i in range(first, first + count):
        view = zeros[(i - first) * NUMEL:(i - first + 1) * NUMEL]
        out[f"layers.{i}.weight"] = torch.from_numpy(view).view(SIDE, SIDE)
        out[f"layers.{i}.bias"] = torch.zeros(SIDE)
    return out


def main():
    out_dir, kind, gib = sys.argv[1], sys.argv[2], int(sys.argv[3])
    shards = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    os.makedirs(out_dir, exist_ok=True)
    tensors = gib * 16
    if kind in ("zip", "legacy"):
        zeros = numpy.zeros(tensors * NUMEL, dtype=numpy.float32)
        name = f"ckpt_{gib}g.pt" if kind == "zip" else f"ckpt_{gib}g_legacy.pt"
        path = os.path.join(out_dir, name)
        torch.save(state_dict(0, tensors, zeros), path,
                   _use_new_zipfile_serialization=(kind == "zip"))
        print(path)
        return
    if kind != "sharded":
        sys.exit(f"unknown kind {kind!r}")
    snap = os.path.join(out_dir, f"snapshot_{gib}g")
    os.makedirs(snap, exist_ok=True)
    per_shard = -(-tensors // shards)
    zeros = numpy.zeros(per_shard * NUMEL, dtype=numpy.float32)
    weight_map = {}
    first = 0
    for s in range(shards):
        count = min(per_shard, tensors - first)
        name = f"pytorch_model-{s + 1:05d}-of-{shards:05d}.bin"
        sd = state_dict(first, count, zeros)
        torch.save(sd, os.path.join(snap, name))
        weight_map.update({k: name for k in sd})
        first += count
    with open(os.path.join(snap, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": tensors * NUMEL * 4},
                   "weight_map": weight_map}, f, indent=1)
    with open(os.path.join(snap, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "hidden_size": SIDE,
                   "num_hidden_layers": tensors}, f, indent=1)
    print(snap)


if __name__ == "__main__":
    main()
