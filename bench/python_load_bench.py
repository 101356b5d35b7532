#!/usr/bin/python3
"""Overhead of dynahug.load over the plain loader (issue 11's target: under
50 ms added per warm call for files under 10 MB).

Usage (root, like every sandboxed load):
  PYTHONPATH=build/python /usr/bin/python3 bench/python_load_bench.py [ROUNDS]

Inputs are generated into a temporary directory (benign only): a raw
pickle of a small dict, torch state dicts of ~100 KB, ~1 MB and ~9 MB, a
joblib-dumped scikit-learn model, a 4 MB .npy and a small object .npy.

Reported per file: the plain loader's median; dynahug.load's first call in
a fresh helper (helper start: process, model bundle, zygote with every ML
library imported, then the scan); warm calls with the verdict cache off
(every call is a full sandboxed analysis: bytes to the helper, private
copy, fork of the warm zygote, load with every hook, verdict, restricted
host-side load), median and p90; and a cached call (same content again,
cache on). "added" = dynahug warm median - plain median.
"""

import os
import pickle
import statistics
import sys
import tempfile
import time


def make_inputs(d):
    import joblib
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    out = []

    def add(name, loader, kwargs, writer):
        path = os.path.join(d, name)
        writer(path)
        out.append((name, path, loader, kwargs))

    add('small_dict.pkl', 'pickle.load', {},
        lambda p: pickle.dump({'w': list(range(100)), 'name': 'x'},
                              open(p, 'wb')))
    for label, n in (('100k', 160), ('1m', 512), ('9m', 1536)):
        torch.manual_seed(0)
        sd = {'l%d.weight' % i: torch.randn(n, n // 4) for i in range(4)}
        add('state_%s.pt' % label, 'torch.load', {'map_location': 'cpu'},
            lambda p, sd=sd: torch.save(sd, p))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    y = (x[:, 0] > 0).astype(int)
    add('logreg.joblib', 'joblib.load', {},
        lambda p: joblib.dump(LogisticRegression().fit(x, y), p))
    add('array_4m.npy', 'numpy.load', {'allow_pickle': True},
        lambda p: np.save(p, rng.normal(size=(512, 1024))))
    add('objects.npy', 'numpy.load', {'allow_pickle': True},
        lambda p: np.save(p, np.array([{'a': 1}, [1, 2], 'x'], dtype=object),
                          allow_pickle=True))
    return out


def plain(loader, path, kwargs):
    if loader == 'pickle.load':
        with open(path, 'rb') as f:
            return pickle.load(f)
    mod = __import__(loader.split('.')[0])
    return getattr(mod, 'load')(path, **kwargs)


def median_ms(fn, rounds):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    import dynahug
    with tempfile.TemporaryDirectory(prefix='dynahug_pybench_') as d:
        inputs = make_inputs(d)
        # Import the libraries in this process first: the plain loader's
        # time should not include its first import either.
        for _, path, loader, kwargs in inputs:
            plain(loader, path, kwargs)
        print('| file | size | plain ms | first call ms (helper start) | '
              'warm ms p50 / p90 | added ms | cached ms |')
        print('|---|---:|---:|---:|---:|---:|---:|')
        for name, path, loader, kwargs in inputs:
            size = os.path.getsize(path)
            p50_plain, _ = median_ms(lambda: plain(loader, path, kwargs),
                                     rounds)
            dynahug.shutdown()
            dynahug.configure(cache=False)
            t = time.perf_counter()
            dynahug.load(path, loader=loader, **kwargs)
            first = (time.perf_counter() - t) * 1000
            p50, p90 = median_ms(
                lambda: dynahug.load(path, loader=loader, **kwargs), rounds)
            dynahug.configure(cache=True)
            dynahug.load(path, loader=loader, **kwargs)
            cached, _ = median_ms(
                lambda: dynahug.load(path, loader=loader, **kwargs), rounds)
            print('| %s | %.1f KB | %.1f | %.0f | %.1f / %.1f | %.1f | %.1f |'
                  % (name, size / 1024, p50_plain, first, p50, p90,
                     p50 - p50_plain, cached))
            sys.stdout.flush()
        dynahug.shutdown()


if __name__ == '__main__':
    main()
