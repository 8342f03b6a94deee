#!/usr/bin/env python
"""Check the committed outputs of every notebook in nbs/ as a reader of the docs would see them.

Fails on: stderr output, warnings, absolute machine or temp paths, fastai progress bars or empty training tables,
"± nan", 16-digit floats, tracebacks. Exits 1 listing every problem (notebook, cell number, what, an excerpt).

    python tools/check_outputs.py [nbs]
"""
import json, re, sys
from pathlib import Path

RULES = [
    ('stderr output', lambda o, t: o.get('output_type') == 'stream' and o.get('name') == 'stderr'),
    ('a warning', lambda o, t: re.search(r'\b\w*Warning\b:', t)),
    ('an absolute path', lambda o, t: re.search(r'(?<![\w.])(/tmp/|/work/|/root/|/home/|/Users/|[A-Z]:\\\\)', t)),
    ('a progress bar or empty training table', lambda o, t: re.search(r'<progress|epoch\s+train_loss\s+valid_loss\s+time\s*$', t)),
    ('"± nan"', lambda o, t: '± nan' in t),
    ('a 16-digit float', lambda o, t: re.search(r'\d\.\d{12,}', t) and o.get('output_type') != 'display_data'),
    ('a traceback', lambda o, t: o.get('output_type') == 'error' or 'Traceback (most recent call last)' in t),
]


def text_of(o) -> str:
    if 'text' in o: return ''.join(o['text'])
    d = o.get('data', {})
    return ''.join(d.get('text/plain', '')) + ''.join(d.get('text/html', '')) + ''.join(d.get('text/markdown', ''))


def check(nbs='nbs') -> list:
    problems = []
    for f in sorted(Path(nbs).glob('*.ipynb')):
        for i, c in enumerate(json.loads(f.read_text())['cells']):
            for o in c.get('outputs', []):
                t = text_of(o)
                for what, rule in RULES:
                    if rule(o, t):
                        m = re.search(r'.{0,60}(Warning|/tmp/|/work/|/root/|± nan|<progress|Traceback|\d\.\d{12,}).{0,40}', t)
                        problems.append(f"{f.name} cell {i}: {what}: {(m[0] if m else t[:100])!r}")
    return problems


if __name__ == '__main__':
    p = check(*sys.argv[1:])
    print('\n'.join(p) or 'notebook outputs: clean')
    sys.exit(1 if p else 0)
