"Smoke test of bench/bench_step.py: `--quick` runs, prints the table in its format, and every path agrees numerically (no timing thresholds: CI is too noisy for them)"
import re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = {'sgd': 6, 'momentum': 6, 'adam': 6, 'lamb': 2, 'lion': 2}

def test_bench_quick(tmp_path):
    out = tmp_path/'res.json'
    r = subprocess.run([sys.executable, str(ROOT/'bench'/'bench_step.py'), '--quick', '--json', str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith('torch ') and 'threads' in lines[0]
    assert '| param set | method | path | ms / step | vs reference | vs torch fused | state MiB | max abs diff |' in lines
    rows = [l.split('|')[1:-1] for l in lines if l.startswith('| ') and not l.startswith('| param set')]
    sets = {c[0].strip() for c in rows}
    assert len(sets) == 2
    assert len(rows) == 2 * sum(PATHS.values())
    for c in rows:
        assert len(c) == 8
        float(c[3])                                            # ms / step
        assert c[4].strip() == '(reference)' or re.fullmatch(r'\d+\.\d\dx .+', c[4].strip())
        assert float(c[7]) <= 1e-5, c                          # every path agrees with its reference
    assert lines[-1] == 'paths agree: yes'
    import json
    res = json.loads(out.read_text())
    for sres in res['sets'].values():
        assert {m: len(p) for m, p in sres.items()} == PATHS
        for m in ('sgd', 'momentum', 'adam'):
            assert sres[m]['torch foreach']['ref'] == 'torch foreach' and 'ratio_fused' in sres[m]['optlib fused']
            # the same method keeps the same amount of state in both libraries
            assert abs(sres[m]['optlib default']['state_mb'] - sres[m]['torch foreach']['state_mb']) < 0.01
