#!/usr/bin/env python
"""Time one step of chapter 09d's Muon (with AdamW on the non-matrices), Schedule-Free AdamW, Prodigy and Adafactor
against their reference implementations, side by side in one process, and count their state.

References: torch.optim.Muon + torch.optim.AdamW (Muon's convolutions flattened to matrices, as optlib does), schedulefree's
AdamWScheduleFree, prodigyopt's Prodigy, torch.optim.Adafactor: each built with its defaults from optlib's values by the
registry entry (`reference`). Two parameter sets: the shapes of a ResNet-18 (62 tensors, 11.7M values) and 400 matrices
of 8x8. Every optimizer gets its own copy of the same parameters and takes two steps before timing. In each
round optlib's default path and the reference each take one step, one right after the other (which one goes first
alternates; the gradients are set before each step, untimed, from a few fixed random sets), and the ratio of the pair is kept: the table gives the median time per step and the median ratio (< 1: optlib
is faster), and the state each keeps per parameter value (tensors only). The machine may be shared: compare ratios.

    python bench/bench_modern.py                        # the table (a few minutes on 2 cores: Muon's matrix products)
    python bench/bench_modern.py --json bench/results_modern.json   # also save the numbers (chapter 09d reads this file)
    python bench/bench_modern.py --quick                # small sets, 2 rounds: a smoke test
"""
import argparse, gc, json, platform, statistics, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
import optlib.all   # every chapter's optimizers, registered
from optlib.registry import get_spec, values
from bench_step import resnet18_shapes, make_params, make_grads, state_bytes

METHODS = ('muon_adamw', 'schedulefree_adamw', 'prodigy', 'adafactor')

def param_sets(quick=False):
    if quick: return {'small convnet (9 tensors)': [(16, 3, 3, 3), (16,), (32, 16, 3, 3), (32,), (32,), (64, 32, 3, 3), (64,), (10, 64), (10,)],
                      '40 matrices of 8x8': [(8, 8)] * 40}
    return {'ResNet-18 shapes (62 tensors, 11.7M params)': resnet18_shapes(), '400 matrices of 8x8': [(8, 8)] * 400}

def builders(name):
    "optlib's default path and the reference of registered optimizer `name`, as functions of a list of tensors"
    spec = get_spec(name)
    vals = values(spec, spec.build([torch.zeros(2, 2, requires_grad=True)]))
    return {'optlib': lambda ps: spec.build(ps), 'reference': lambda ps: spec.reference(ps, **vals)}, spec.reference_name

def agreement(shapes, paths, steps=3):
    "Max |diff| between the paths after `steps` steps from the same start"
    base, out = make_params(shapes), {}
    for n, make in paths.items():
        ps = [p.clone() for p in base]; opt = make(ps)
        for k in range(steps):
            for p, g in zip(ps, make_grads(shapes, k)): p.grad = g
            opt.step()
        out[n] = ps
    return max((a - b).abs().max().item() for a, b in zip(out['optlib'], out['reference']))

def time_pair(shapes, paths, rounds, sets=4):
    """Median ms per step of each path and the median ratio optlib / reference over adjacent pairs. Before each step an
    optimizer's gradients are set (untimed) to one of `sets` fixed random sets, the same for both: the references may
    change gradients in place (schedulefree divides them), and a gradient that never changes makes Prodigy's d grow
    without bound"""
    base, grads = make_params(shapes), [make_grads(shapes, k) for k in range(sets)]
    params = {n: [p.clone() for p in base] for n in paths}            # each path its own tensors and gradients
    for ps in params.values():
        for p, g in zip(ps, grads[0]): p.grad = g.clone()
    opts = {n: make(params[n]) for n, make in paths.items()}
    def set_grads(n, k):
        for p, g in zip(params[n], grads[k]): p.grad.copy_(g)
    for n, o in opts.items():
        for k in range(2): set_grads(n, k); o.step()
    times, ratios = {n: [] for n in opts}, []
    def timed(n, k):
        set_grads(n, k)
        t0 = time.perf_counter(); opts[n].step(); dt = time.perf_counter() - t0
        times[n].append(dt); return dt
    gc.collect(); gc.disable()
    try:
        for r in range(rounds):
            k = r % sets
            if r % 2: b, a = timed('reference', k), timed('optlib', k)
            else: a, b = timed('optlib', k), timed('reference', k)
            ratios.append(a / b)
    finally: gc.enable()
    n = sum(torch.Size(s).numel() for s in shapes)
    return {k: {'ms': 1e3 * statistics.median(v), 'bytes_per_value': state_bytes(opts[k]) / n} for k, v in times.items()}, statistics.median(ratios)

def run(quick=False, rounds=None):
    res = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'machine': platform.processor() or platform.machine(), 'sets': {}}
    for set_name, shapes in param_sets(quick).items():
        rows = res['sets'][set_name] = {}
        big = sum(torch.Size(s).numel() for s in shapes) > 1e6
        r = rounds or (2 if quick else (15 if big else 41))
        res.setdefault('rounds_by_set', {})[set_name] = r
        for m in METHODS:
            paths, ref_name = builders(m)
            timing, ratio = time_pair(shapes, paths, r)
            rows[m] = {**timing, 'ratio': ratio, 'reference_name': ref_name, 'max_diff': agreement(shapes, paths)}
            print(f"{set_name[:30]:30s} {m:20s} optlib {timing['optlib']['ms']:9.2f} ms  {ref_name} {timing['reference']['ms']:9.2f} ms  "
                  f"ratio {ratio:.2f}x  state/value {timing['optlib']['bytes_per_value']:.2f} B vs {timing['reference']['bytes_per_value']:.2f} B  "
                  f"max |diff| {rows[m]['max_diff']:.1e}", flush=True)
    res['rounds'] = ', '.join(f'{v} ({k.split(" (")[0]})' for k, v in res['rounds_by_set'].items())
    return res

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--rounds', type=int)
    ap.add_argument('--threads', type=int, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument('--json', help='also write the results to this file')
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    res = run(a.quick, a.rounds)
    if a.json: Path(a.json).write_text(json.dumps(res, indent=1))
    bad = [(s, m, r['max_diff']) for s, rows in res['sets'].items() for m, r in rows.items() if not r['max_diff'] <= 1e-5]
    print('optlib and the references agree: ' + ('yes' if not bad else f'NO: {bad}'))
    return 1 if bad else 0

if __name__ == '__main__': sys.exit(main())
