#!/usr/bin/env python
"""The repository checks of nbdev's CI, offline: the library is what the notebooks export, the notebooks are
clean and carry outputs, README.md is what index.ipynb gives. Exits 1 naming what differs."""
import json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def git_dirty(*paths):
    return subprocess.run(['git', 'status', '--porcelain', '--', *paths], cwd=ROOT, capture_output=True, text=True).stdout.strip()

def main():
    problems = []
    before = git_dirty('optlib', 'nbs')
    if before: problems.append(f'working tree not clean before the checks:\n{before}')
    subprocess.run(['nbdev_export'], cwd=ROOT, check=True)
    if d := git_dirty('optlib'): problems.append(f'optlib/ differs from what nbdev_export writes:\n{d}')
    subprocess.run(['nbdev_clean'], cwd=ROOT, check=True)
    if d := git_dirty('nbs'): problems.append(f'notebooks not clean (run nbdev_clean):\n{d}')
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        if not any(c.get('outputs') for c in cells if c['cell_type'] == 'code'):
            problems.append(f'{nb.name} is committed without outputs')
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_readme.py'), '--check'], cwd=ROOT)
    if r.returncode: problems.append('README.md is out of date')
    for p in problems: print('CHECK FAILED:', p)
    print('repository checks:', 'ok' if not problems else f'{len(problems)} problem(s)')
    sys.exit(1 if problems else 0)

if __name__ == '__main__': main()
