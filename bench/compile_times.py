#!/usr/bin/env python
"""What `compile=True` costs and gives: the first step's compile time, cold and from inductor's on-disk cache, and
the step time against the default path and torch's fused AdamW, for chunks of 32 tensors and for whole buckets.

Each measurement runs in a process of its own. "cold": a new, empty `TORCHINDUCTOR_CACHE_DIR`; "warm": a second
process with the same directory, so only dynamo's tracing and the cache lookups remain. After the first step the
compiled optimizer, the default path and (for AdamW) `torch.optim.AdamW(fused=True)` are timed interleaved, one step
each per round; the table gives medians, the ratios are medians over the rounds.

    python bench/compile_times.py --json bench/results_compile_times.json   # ~10 minutes on 2 cores
    python bench/compile_times.py --quick                                   # one small case: a smoke test
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [('resnet18', 'adamw', 32), ('resnet18', 'adamw', None), ('resnet18', 'lamb', 32), ('resnet18', 'lion', 32),
         ('400x64', 'adamw', 32), ('400x64', 'lamb', 32), ('400x64', 'lion', 32), ('400x64', 'adamw', None)]
SETS = {'resnet18': 'ResNet-18 shapes (62 tensors, 11.7M params)', '400x64': '400 tensors of 64'}

def measure(pset, method, chunk, rounds, threads):
    "In this process: the first compiled step's seconds and the medians of step ms (compiled, default, torch fused)"
    import torch
    torch.set_num_threads(threads)
    sys.path[:0] = [str(ROOT), str(ROOT / 'bench')]
    import optlib.all
    from optlib.registry import get_spec
    from bench_step import make_params, make_grads, copy_params, resnet18_shapes, paths_of
    shapes = resnet18_shapes() if pset == 'resnet18' else [(64,)] * 400
    base, grads = make_params(shapes), make_grads(shapes, 0)
    params = lambda: copy_params(base, grads)
    spec = get_spec(method)
    comp = spec.build(params(), compile=True)
    comp.compile_chunk = chunk or 1 << 30
    t0 = time.perf_counter(); comp.step(); first = time.perf_counter() - t0
    opts = {'compiled': comp, 'default': spec.build(params())}
    ref = paths_of(spec, compiled=False).get('torch fused')   # torch's fused kernel with the same hyper-parameters, where torch has one
    if ref: opts['torch fused'] = ref(params())
    for o in opts.values(): o.step()
    n = 3 if pset == '400x64' else 1
    ts = {k: [] for k in opts}
    for r in range(rounds):
        for k in (list(opts) if r % 2 == 0 else list(opts)[::-1]):
            t0 = time.perf_counter()
            for _ in range(n): opts[k].step()
            ts[k].append((time.perf_counter() - t0) / n * 1e3)
    ratio = lambda k: statistics.median(a / b for a, b in zip(ts['compiled'], ts[k]))
    out = dict(first_step_s=first, graphs=comp.compiled_graphs(), ms={k: statistics.median(v) for k, v in ts.items()},
               vs_default=ratio('default'))
    if 'torch fused' in ts: out['vs_torch_fused'] = ratio('torch fused')
    return out

def run_one(case, cache, rounds, threads):
    "`measure` in a fresh process whose inductor cache is `cache`"
    env = {**os.environ, 'TORCHINDUCTOR_CACHE_DIR': cache}
    cmd = [sys.executable, __file__, '--one', json.dumps([*case, rounds, threads])]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if r.returncode: raise RuntimeError(f"{case}: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def table(results):
    rows = ['| param set | method | chunk | first step cold (s) | first step warm (s) | graphs | compiled ms | default ms | torch fused ms | compiled / default | compiled / torch fused |',
            '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for r in results:
        c, w = r['cold'], r['warm']
        f = f"{w['ms']['torch fused']:.2f}" if 'torch fused' in w['ms'] else ''
        vf = f"{w['vs_torch_fused']:.2f}x" if 'vs_torch_fused' in w else ''
        rows.append(f"| {SETS[r['set']]} | {r['method']} | {r['chunk'] or 'whole bucket'} | {c['first_step_s']:.1f} | {w['first_step_s']:.1f} | "
                    f"{w['graphs']} | {w['ms']['compiled']:.2f} | {w['ms']['default']:.2f} | {f} | {w['vs_default']:.2f}x | {vf} |")
    return '\n'.join(rows)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--one', help=argparse.SUPPRESS)
    ap.add_argument('--quick', action='store_true', help='one small case (400x64 Lion, chunks of 32), 3 rounds')
    ap.add_argument('--rounds', type=int, default=15)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--json', help='also write the results to this file')
    a = ap.parse_args()
    if a.one: return print(json.dumps(measure(*json.loads(a.one))))
    cases, rounds = ([('400x64', 'lion', 32)], 3) if a.quick else (CASES, a.rounds)
    import torch
    results = []
    for case in cases:
        with tempfile.TemporaryDirectory() as cache:
            cold = run_one(case, cache, rounds, a.threads)
            warm = run_one(case, cache, rounds, a.threads)
        results.append(dict(set=case[0], method=case[1], chunk=case[2], cold=cold, warm=warm))
        print(f"{case}: cold {cold['first_step_s']:.1f} s, warm {warm['first_step_s']:.1f} s, {warm['ms']}", flush=True)
    print(f"torch {torch.__version__}, {a.threads} threads, {rounds} rounds; step times from the warm process\n")
    print(table(results))
    if a.json:
        Path(a.json).write_text(json.dumps(dict(torch=torch.__version__, threads=a.threads, rounds=rounds,
                                                machine=platform.machine(), results=results), indent=1))

if __name__ == '__main__': main()
