"""The console script `optlib-compare` as a user runs it: bad flags are refused with the valid names, and a small
race writes the table and the files the README promises."""
import csv, json, shutil, subprocess, sys
from pathlib import Path
import pytest

def _cli():
    "The installed console script, else the same entry point through python"
    exe = shutil.which('optlib-compare')
    return [exe] if exe else [sys.executable, '-c', 'from optlib.compare import main; main()']

def _run(*args, timeout=600):
    return subprocess.run(_cli() + list(args), capture_output=True, text=True, timeout=timeout)

@pytest.mark.parametrize('args, says', [
    (['--optimizers', 'adam,adamx'], "unknown optimizer(s) ['adamx']"),
    (['--data', 'cifar'], "invalid choice: 'cifar'"),
    (['--seeds', '0'], 'must be at least 1'),
    (['--epoch', '3', '--nope'], 'unrecognized arguments'),
])
def test_bad_flags_are_refused(args, says):
    r = _run(*args)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and 'usage: optlib-compare' in r.stderr
    if 'optimizer' in says:   # the message lists what is valid
        for name in ('momentum', 'adam', 'adamw', 'lamb', 'lion', 'radam'): assert name in r.stderr

def test_a_small_race_writes_its_files(tmp_path):
    r = _run('--optimizers', 'adam,lion', '--seeds', '2', '--epochs', '1', '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert 'test acc (mean ± 95% CI, 2 seeds)' in r.stdout and 'wall time' in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ['curves.png', 'results.csv', 'results.json']
    rows = list(csv.DictReader(open(tmp_path/'results.csv')))
    assert len(rows) == 4 and {r['optimizer'] for r in rows} == {'adam', 'lion'}
    assert {'optimizer', 'seed', 'lr', 'wd', 'valid_acc', 'test_acc', 'seconds'} <= set(rows[0])
    assert all(0 <= float(r['test_acc']) <= 1 for r in rows)
    doc = json.loads((tmp_path/'results.json').read_text())
    assert len(doc['rows']) == 4 and doc['config']['epochs'] == 1
