"Smoke test of bench/bench_step.py: `--quick` runs every optimizer the registry marks `bench=True` on every path it has, prints the table in its format, and every path agrees numerically (no timing thresholds: CI is too noisy for them)"
import json, re, subprocess, sys
from pathlib import Path
import optlib.all
from optlib.registry import registered

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'bench'))
from bench_step import methods

def test_bench_quick(tmp_path):
    out = tmp_path/'res.json'
    r = subprocess.run([sys.executable, str(ROOT/'bench'/'bench_step.py'), '--quick', '--json', str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith('torch ') and 'threads' in lines[0]
    assert '| param set | method | path | ms / step | vs reference | vs torch fused | state MiB | max abs diff |' in lines
    rows = [l.split('|')[1:-1] for l in lines if l.startswith('| ') and not l.startswith('| param set')]
    expected = {name: len(paths) for name, paths in methods(compiled=False).items()}   # --quick compiles nothing
    assert set(expected) == {s.name for s in registered() if s.bench} and len(expected) >= 5
    assert len({c[0].strip() for c in rows}) == 2 and len(rows) == 2 * sum(expected.values())
    for c in rows:
        assert len(c) == 8
        float(c[3])                                            # ms / step
        assert c[4].strip() == '(reference)' or re.fullmatch(r'\d+\.\d\dx .+', c[4].strip())
        assert float(c[7]) <= 1e-5, c                          # every path agrees with its reference
    assert lines[-1] == 'paths agree: yes'
    res = json.loads(out.read_text())
    for sres in res['sets'].values():
        assert {m: len(p) for m, p in sres.items()} == expected
        for m, paths in sres.items():
            if 'torch foreach' in paths:    # a torch.optim reference: optlib keeps the same state as torch
                assert paths['torch foreach']['ref'] == 'torch foreach'
                assert abs(paths['optlib default']['state_mb'] - paths['torch foreach']['state_mb']) < 0.01
            if 'optlib fused' in paths and 'torch fused' in paths: assert 'ratio_fused' in paths['optlib fused']

def test_unknown_method():
    r = subprocess.run([sys.executable, str(ROOT/'bench'/'bench_step.py'), '--quick', '--methods', 'adamm'], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode != 0 and "no optimizer 'adamm' is registered" in r.stderr
