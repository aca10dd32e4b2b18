#!/usr/bin/env python
"""Time one optimizer step: optlib's SGD, SGD with momentum, Adam, Lamb and Lion against torch.optim.

Two parameter sets: the shapes of a ResNet-18 (62 tensors, 11.7M parameters: large tensors, memory bound) and 400
tensors of 64 values (small tensors: the per-tensor overhead is all there is). Every optimizer gets its own copy of
the same parameters and the same gradients. The implementations of a method are timed interleaved, in pairs: in
each round every path runs right before or right after its reference (one step on the large set, three on the small
one; the order of the pairs rotates and which side goes first alternates), so a noisy neighbour slows both sides of a
pair alike. The table gives the median time per step and the median ratio over the pairs.

Paths: torch `foreach=False` (a Python loop over tensors), `foreach=True` (multi-tensor kernels), `fused=True` (one
fused kernel); optlib `foreach=False` (steppers called per tensor), the default (`foreach=None`: steppers called once
per bucket of tensors, on a `TensorList`), `fused=True` and `compile=True` (chapter 10a: the chain as compiled graphs;
its first step, which compiles, is timed apart and shown in the summary, cold or from inductor's on-disk cache). Before timing, every path of a method is run for a few
steps from the same start, with a parameter that has no gradient on one step, and compared with the reference path
(torch foreach where torch has the method, else optlib per tensor): the `max |diff|` column.

    python bench/bench_step.py            # the full table (a few minutes on 2 cores)
    python bench/bench_step.py --quick    # small sets, 2 rounds, 1 thread: a smoke test of a few seconds
    python bench/bench_step.py --json bench/results.json   # also save the numbers (the chapter plots them)
"""
import argparse, gc, inspect, json, platform, statistics, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
import optlib.all   # every chapter's optimizers, registered
from optlib.registry import OPTIMIZERS, registered, get_spec, values

DEFAULT_THREADS = torch.get_num_threads()

def resnet18_shapes():
    "The parameter shapes of torchvision's ResNet-18: 62 tensors, 11,689,512 values"
    shapes, cin = [(64, 3, 7, 7), (64,), (64,)], 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for block in range(2):
            c = cin if block == 0 else cout
            shapes += [(cout, c, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,), (cout,)]
            if block == 0 and (stride != 1 or c != cout): shapes += [(cout, c, 1, 1), (cout,), (cout,)]
        cin = cout
    return shapes + [(1000, 512), (1000,)]

def param_sets(quick=False):
    "name -> list of shapes"
    if quick: return {'small convnet (9 tensors)': [(16, 3, 3, 3), (16,), (32, 16, 3, 3), (32,), (32,), (64, 32, 3, 3), (64,), (10, 64), (10,)],
                      '40 tensors of 64': [(64,)] * 40}
    return {'ResNet-18 shapes (62 tensors, 11.7M params)': resnet18_shapes(), '400 tensors of 64': [(64,)] * 400}

def paths_of(spec, compiled=True):
    """The paths of one registered optimizer: optlib's per-tensor, default and (where its entry lists them) fused paths,
    and its reference: torch's loop, foreach and fused implementations for a torch.optim reference, the package's for another"""
    def optlib(**kw): return lambda ps: spec.build(ps, **kw)
    paths = {'optlib per-tensor': optlib(foreach=False), 'optlib default': optlib()}
    if 'fused' in spec.paths: paths['optlib fused'] = optlib(fused=True)
    if compiled and 'compile' in spec.paths: paths['optlib compiled'] = optlib(compile=True)
    if spec.reference is None: return paths
    def ref(**flags):
        def make(ps):
            vals = values(spec, spec.build([torch.zeros(1, requires_grad=True)]))
            return spec.reference(ps, **vals, **({'torch_flags': flags} if flags else {}))
        return make
    cls = getattr(spec.reference, 'torch_class', None)
    if cls is None: return {'reference': ref(), **paths}
    out = {'torch loop': ref(foreach=False), 'torch foreach': ref(foreach=True)}
    if 'fused' in inspect.signature(cls).parameters: out['torch fused'] = ref(fused=True)
    return {**out, **paths}

def methods(only=None, compiled=True):
    "method -> {path: factory(params) -> optimizer}, for the registered optimizers with `bench=True` (or those named in `only`); `compiled`: with their compiled path"
    names = only or [s.name for s in registered() if s.bench]
    return {n: paths_of(get_spec(n), compiled) for n in names}

def reference(paths):
    for r in ('torch foreach', 'reference', 'optlib per-tensor'):
        if r in paths: return r

def make_params(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) * 0.1 for s in shapes]

def make_grads(shapes, seed):
    g = torch.Generator().manual_seed(1000 + seed)
    return [torch.randn(s, generator=g) * 0.01 for s in shapes]

def copy_params(ps, grads):
    out = [p.clone().requires_grad_() for p in ps]
    for p, g in zip(out, grads): p.grad = g   # the gradients are shared: no path changes them (no L2 term here)
    return out

def state_bytes(opt):
    return sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values() if torch.is_tensor(v))

def check_agreement(shapes, paths, steps=4):
    "Run every path `steps` steps from the same start (param 0 has no gradient at step 2): max |diff| to the reference"
    base, res = make_params(shapes), {}
    for name, make in paths.items():
        ps = [p.clone().requires_grad_() for p in base]
        opt = make(ps)
        for k in range(steps):
            gs = make_grads(shapes, k)
            for i, (p, g) in enumerate(zip(ps, gs)): p.grad = None if (k == 2 and i == 0) else g
            opt.step()
        res[name] = [p.detach() for p in ps]
    ref = res[reference(paths)]
    return {name: max((a - b).abs().max().item() for a, b in zip(ps, ref)) for name, ps in res.items()}

def time_paths(shapes, paths, rounds, steps):
    """Per path: median seconds per step, median ratio to the reference and (optlib paths) to torch fused, state bytes.

    Each ratio is taken over pairs of measurements made one right after the other (which one runs first alternates),
    in every round, the pairs in a rotating order; a noisy neighbour then slows both sides of most pairs alike."""
    base, grads = make_params(shapes), make_grads(shapes, 0)
    opts, first = {}, {}
    for name, make in paths.items():
        opt = make(copy_params(base, grads))
        t0 = time.perf_counter(); opt.step(); first[name] = time.perf_counter() - t0   # the compiled path compiles here
        opt.step()                             # create the state, warm up
        opts[name] = opt
    ref, names = reference(paths), list(opts)
    pairs = [(n, ref, 'ratio') for n in names if n != ref]
    if 'torch fused' in opts: pairs += [(n, 'torch fused', 'ratio_fused') for n in names if n.startswith('optlib')]
    if 'optlib compiled' in opts: pairs += [('optlib compiled', 'optlib default', 'ratio_default')]
    times, ratios = {n: [] for n in names}, {(n, key): [] for n, _, key in pairs}
    def timed(n):
        opt = opts[n]; t0 = time.perf_counter()
        for _ in range(steps): opt.step()
        dt = (time.perf_counter() - t0) / steps
        times[n].append(dt); return dt
    gc.collect(); gc.disable()
    try:
        for r in range(rounds):
            k = r % len(pairs)
            for n, other, key in pairs[k:] + pairs[:k]:
                if r % 2: t_other, t_n = timed(other), timed(n)
                else: t_n, t_other = timed(n), timed(other)
                ratios[(n, key)].append(t_n / t_other)
    finally: gc.enable()
    out = {}
    for n in names:
        o = {'ms': 1e3 * statistics.median(times[n]), 'ratio': statistics.median(ratios[(n, 'ratio')]) if n != ref else 1.,
             'state_mb': state_bytes(opts[n]) / 2**20}
        if (n, 'ratio_fused') in ratios: o['ratio_fused'] = statistics.median(ratios[(n, 'ratio_fused')])
        if (n, 'ratio_default') in ratios: o['ratio_default'], o['first_step_s'] = statistics.median(ratios[(n, 'ratio_default')]), first[n]
        out[n] = o
    return out

def run(quick=False, rounds=None, only=None):
    rounds = rounds or (2 if quick else 15)
    results = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'default_threads': DEFAULT_THREADS, 'machine': platform.processor() or platform.machine(),
               'rounds': rounds, 'sets': {}}
    for set_name, shapes in param_sets(quick).items():
        n = sum(torch.Size(s).numel() for s in shapes)
        steps = 1 if (quick or n > 1e6) else 3
        sres = results['sets'][set_name] = {}
        for meth, paths in methods(only, compiled=not quick).items():   # --quick: no compiling (tens of seconds)
            diffs = check_agreement(shapes, paths)
            timing = time_paths(shapes, paths, rounds, steps)
            sres[meth] = {p: {**timing[p], 'max_diff': diffs[p], 'ref': reference(paths)} for p in paths}
    return results

def table(results):
    "The results as a markdown table"
    default = " (torch's default)" if results['threads'] == results.get('default_threads') else f" (torch's default: {results.get('default_threads')})"
    lines = [f"torch {results['torch']}, {results['threads']} threads{default}, {results['rounds']} rounds; "
             "ratios are medians over pairs of adjacent measurements (< 1: faster)", '',
             '| param set | method | path | ms / step | vs reference | vs torch fused | state MiB | max abs diff |',
             '|---|---|---|---:|---:|---:|---:|---:|']
    for set_name, sres in results['sets'].items():
        for meth, paths in sres.items():
            for path, r in paths.items():
                ref = '(reference)' if path == r['ref'] else f"{r['ratio']:.2f}x {r['ref'].replace('optlib ', '')}"
                fused = f"{r['ratio_fused']:.2f}x" if 'ratio_fused' in r else ''
                lines.append(f"| {set_name} | {meth} | {path} | {r['ms']:.2f} | {ref} | {fused} | {r['state_mb']:.1f} | {r['max_diff']:.1e} |")
    return '\n'.join(lines)

def summary(results):
    "The ratios the targets are about, one line per parameter set"
    out = []
    for set_name, sres in results['sets'].items():
        parts = [f"{m} {sres[m]['optlib default']['ratio']:.2f}x" for m in ('sgd', 'momentum', 'adamw') if m in sres]
        fused = [f"{m} {sres[m]['optlib fused']['ratio_fused']:.2f}x" for m in ('sgd', 'momentum', 'adamw') if m in sres]
        own = [f"{m} {1/sres[m]['optlib default']['ratio']:.1f}x" for m in ('lamb', 'lion') if m in sres]
        line = (f"{set_name}: optlib default / torch foreach: {', '.join(parts)}; optlib fused / torch fused: "
                f"{', '.join(fused)}; default speed-up over optlib per-tensor: {', '.join(own)}")
        comp = {m: r['optlib compiled'] for m, r in sres.items() if 'optlib compiled' in r}
        if comp:
            line += ("; optlib compiled / torch fused: " + ', '.join(f"{m} {c['ratio_fused']:.2f}x" for m, c in comp.items() if 'ratio_fused' in c) +
                     "; compiled / optlib default: " + ', '.join(f"{m} {c['ratio_default']:.2f}x" for m, c in comp.items()) +
                     "; first compiled step (compile included): " + ', '.join(f"{m} {c['first_step_s']:.1f} s" for m, c in comp.items()))
        out.append(line)
    return '\n'.join(out)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='small parameter sets and 2 rounds: a smoke test of a few seconds')
    ap.add_argument('--rounds', type=int, help='timing rounds (default 15, quick 2)')
    ap.add_argument('--methods', nargs='*', help='registered optimizer names (default: those registered with bench=True)')
    ap.add_argument('--json', help='also write the results to this file')
    ap.add_argument('--threads', type=int, help="torch.set_num_threads (default: torch's own; --quick: 1, as a smoke test "
                    "should not wait on a busy machine's OpenMP barriers)")
    a = ap.parse_args(argv)
    if a.threads or a.quick: torch.set_num_threads(a.threads or 1)
    res = run(a.quick, a.rounds, a.methods)
    print(table(res)); print(); print(summary(res))
    bad = [(s, m, p, r['max_diff']) for s, sr in res['sets'].items() for m, pr in sr.items() for p, r in pr.items() if not r['max_diff'] <= 1e-5]
    print('paths agree: ' + ('yes' if not bad else f'NO: {bad}'))
    if a.json: Path(a.json).write_text(json.dumps(res, indent=1))
    return 1 if bad else 0

if __name__ == '__main__': sys.exit(main())
