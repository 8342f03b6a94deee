#!/usr/bin/env python
"""Execute notebooks and store their outputs, as `nbdev_test` runs them (cwd `nbs/`, nbdev's directives), for committing.

    python tools/run_nb.py nbs/01_data.ipynb [more.ipynb ...]   # default cells; `#| slow` cells keep their committed outputs
    python tools/run_nb.py --slow nbs/10_results.ipynb          # every cell, slow ones included

Cells marked `#| eval: false` are never run (as in `nbdev_test`); their outputs are cleared.
Each notebook runs in a fresh IPython shell (execnb's `CaptureShell`, the one nbdev uses); the first exception stops it,
prints the cell and the traceback, and leaves the notebook file untouched. Afterwards run `nbdev_clean`.
"""
import argparse, os, sys, time, warnings
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from nbdev.process import NBProcessor
from nbdev.frontmatter import FrontmatterProc


def run(path:Path, slow:bool=False, report:float=20) -> float:
    nb = read_nb(path)
    proc = NBProcessor(path, procs=FrontmatterProc, process=True).nb  # parses the `#| ` directives of every cell
    def skipped(c):
        d = getattr(c, 'directives_', {}) or {}
        return d.get('eval:', [''])[0].lower() == 'false' or (not slow and 'slow' in d)
    skip = {i for i, c in enumerate(proc.cells) if c.cell_type == 'code' and skipped(c)}
    t0, shell = time.time(), CaptureShell(path)
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != 'code': continue
            if i in skip:
                if 'eval: false' in cell.source: cell.outputs = []
                continue
            t = time.time()
            cell.outputs = []  # execnb keeps a cell's old outputs when it now prints nothing
            shell.cell(cell)
            if shell.exc:
                sys.stderr.write(shell.prettytb(fname=path) + '\n')
                raise SystemExit(f'{path}: cell {i} failed; the notebook was not written')
            if time.time() - t > report: print(f'  cell {i} ({cell.id}): {time.time() - t:.0f} s', flush=True)
    finally: os.chdir(cwd)
    write_nb(nb, path)
    return time.time() - t0


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--slow', action='store_true', help='run the `#| slow` cells too')
    ap.add_argument('--report', type=float, default=20, help='print the cells that take longer than this many seconds')
    a = ap.parse_args()
    os.environ.setdefault('IN_TEST', '1')
    for p in a.notebooks:
        print(f'{p}: {run(p.resolve(), a.slow, a.report):.0f} s', flush=True)
