#!/usr/bin/env python
"""Run every notebook's tests (as `nbdev_test` does) and the pytest suite, then print a countable summary.

`nbdev_test` prints only `Success.`; this runs the same `nbdev.test.test_nb` on each notebook, two at a time,
times each one, and ends with a plain `N passed, N failed` line (notebooks), after pytest's own summary.
"""
import argparse, multiprocessing, os, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _test_one(fn, flags):
    os.environ.setdefault('MPLBACKEND', 'Agg')
    from nbdev.test import test_nb
    from nbdev.config import get_config
    skip = get_config().tst_flags.split()
    ok, secs = test_nb(Path(fn), skip_flags=[f for f in skip if f not in flags], force_flags=flags, basepath=ROOT)
    return fn, ok, secs

def notebooks(pattern):
    return sorted(p for p in (ROOT/'nbs').glob(pattern) if not p.name.startswith('_') and '.ipynb_checkpoints' not in str(p))

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--path', default='*.ipynb', help='glob of notebooks under nbs/')
    ap.add_argument('--flags', default='', help='space separated test flags to run anyway (e.g. slow)')
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--no-pytest', action='store_true')
    a = ap.parse_args()
    nbs, flags = notebooks(a.path), a.flags.split()
    t0, results = time.time(), []
    # a fresh process per notebook: notebooks change process-wide settings (threads, RNGs, even `__main__`)
    with ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context('spawn'), max_tasks_per_child=1) as ex:
        futs = [ex.submit(_test_one, str(f), flags) for f in nbs]
        for fu in as_completed(futs):
            fn, ok, secs = fu.result()
            results.append((fn, ok, secs))
            print(f"{'PASS' if ok else 'FAIL'} {secs:6.1f}s  {Path(fn).relative_to(ROOT)}", flush=True)
    py_rc = 0
    if not a.no_pytest and any((ROOT/'tests').glob('test_*.py')):
        py_rc = subprocess.call([sys.executable, '-m', 'pytest', '-q', str(ROOT/'tests')], cwd=ROOT)
    npass = sum(ok for _, ok, _ in results); nfail = len(results) - npass
    print(f'notebooks in {time.time()-t0:.0f}s (slowest: ' +
          ', '.join(f'{Path(f).name} {s:.0f}s' for f, _, s in sorted(results, key=lambda r: -r[2])[:3]) + ')')
    print(f'notebooks: {npass} passed, {nfail} failed')
    sys.exit(1 if nfail or py_rc not in (0, 5) or not results else 0)

if __name__ == '__main__': main()
