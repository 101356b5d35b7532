#!/usr/bin/python3
"""Writes small, benign model files for the trace benchmark and tests.

Usage: /usr/bin/python3 bench/gen_tiny_models.py [--mixed] DIR [N]

Default: N (200) tiny torch state dicts, DIR/tiny_NNN.pt (torch.save zip
format), each the state_dict of a small randomly shaped MLP (1-3 Linear
layers of 2-16 units, BatchNorm1d on every third), 2-7 KiB.
--mixed: N files cycling through four formats: a tiny torch state dict
(.pt), a NumPy array (.npy), a raw pickle of plain Python data (.pkl) and a
joblib dump of NumPy arrays (.joblib).
Deterministic: file i comes from seed i.
"""
import argparse
import os
import pickle

import numpy
import torch


def state_dict(i):
    gen = torch.Generator().manual_seed(i)
    depth = int(torch.randint(1, 4, (1,), generator=gen))
    widths = [int(w) for w in torch.randint(2, 17, (depth + 1,), generator=gen)]
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers.append(torch.nn.Linear(a, b))
        if i % 3 == 0:
            layers.append(torch.nn.BatchNorm1d(b))
        layers.append(torch.nn.ReLU())
    torch.manual_seed(i)
    return torch.nn.Sequential(*layers).state_dict()


def write(out, i, kind):
    rng = numpy.random.default_rng(i)
    if kind == "torch":
        path = os.path.join(out, f"tiny_{i:03d}.pt")
        torch.save(state_dict(i), path)
    elif kind == "npy":
        path = os.path.join(out, f"array_{i:03d}.npy")
        numpy.save(path, rng.standard_normal((4, 1 + i % 7)))
    elif kind == "pickle":
        path = os.path.join(out, f"config_{i:03d}.pkl")
        with open(path, "wb") as f:
            pickle.dump({"name": f"model{i}", "lr": 0.001 * (1 + i % 5),
                         "layers": list(range(i % 6)), "tags": ("a", "b")},
                        f, protocol=4)
    else:
        import joblib
        path = os.path.join(out, f"arrays_{i:03d}.joblib")
        joblib.dump({"w": rng.standard_normal(8), "b": numpy.zeros(2)}, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixed", action="store_true")
    parser.add_argument("out")
    parser.add_argument("count", nargs="?", type=int, default=200)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    kinds = ["torch", "npy", "pickle", "joblib"] if args.mixed else ["torch"]
    for i in range(args.count):
        write(args.out, i, kinds[i % len(kinds)])
    print(f"gen_tiny_models: wrote {args.count} files to {args.out}")


if __name__ == "__main__":
    main()
