#!/usr/bin/env python
"""Time to accuracy of `fine_tune` (10 labels per class) and `dann` (no target label) on syn → mnist, through the public
`compare`: for each budget of optimiser steps, the wall-clock seconds of the run and its target test accuracy (seed 0).
Run on the GPU by bench/gpu.sh; on the CPU with small budgets to check that it runs. A benchmark: it asserts nothing.

    python bench/time_to_acc.py --budgets 100 400 1000 --json bench/gpu/time_to_acc.json
"""
import argparse, json, time
from pathlib import Path
import torch
from transfer_nb.core import auto_device
from transfer_nb.experiment import compare


def main(budgets=(100, 400, 1000), json_out=None):
    dev = auto_device()
    name = torch.cuda.get_device_name() if dev.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)'
    print(f"device: {name}; torch {torch.__version__}\n| technique | steps | seconds | target accuracy |\n|---|---|---|---|")
    rows = []
    for steps in budgets:
        t0 = time.time()
        df = compare(('syn', 'mnist'), ['fine_tune', 'dann'], seeds=(0,), shots=(10,), steps=steps, source_steps=steps)
        for r in df.to_dict('records'):
            rows.append(dict(technique=r['technique'], steps=steps, seconds=r['seconds'], target_acc=r.get('target_acc'), status=r['status']))
            print(f"| {r['technique']} | {steps} | {r['seconds']:.1f} | {r.get('target_acc') or float('nan'):.3f} ({r['status']}) |", flush=True)
        print(f"(budget {steps}: {time.time() - t0:.0f} s with the source model)", flush=True)
    if json_out: Path(json_out).write_text(json.dumps(dict(device=name, torch=torch.__version__, rows=rows), indent=1))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--budgets', type=int, nargs='+', default=[100, 400, 1000]); ap.add_argument('--json', dest='json_out')
    a = ap.parse_args(); main(a.budgets, a.json_out)
