#!/usr/bin/env python
"""Print the README's opening commands: `main` (set up and run the main job) or `test` (set up and run the tests).

The README opens with exactly two fenced `sh` blocks of one command each; .ci/run runs the second as written."""
import re, sys
from pathlib import Path

def commands(text):
    return [b.strip() for b in re.findall(r'```(?:sh|bash)\n(.*?)```', text, re.S)][:2]

if __name__ == '__main__':
    main_cmd, test_cmd = commands((Path(__file__).resolve().parents[1]/'README.md').read_text())
    print({'main': main_cmd, 'test': test_cmd}[sys.argv[1]])
