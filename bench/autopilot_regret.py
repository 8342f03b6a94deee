"""The autopilot's regret: its pick against the best technique in hindsight (the oracle) on the same splits and budgets.

For each case and seed, `compare` trains every technique the autopilot can choose from (`candidate_techniques`) with the
autopilot's defaults (50 steps a run, 600 source steps, batch 16, lr 3e-3), the same seed (so the same split) and each
candidate backbone, and reads each one's test accuracy: the oracle, stored in results/autopilot/CASE/oracle-BACKBONE/.
Then `autopilot` runs as a user would run it, into results/autopilot/CASE/seedS/. Regret = the oracle's best test accuracy − the oracle's accuracy of the pick
(the autopilot's own final run is that same run: same seed, split and budget). `nbs/10_results.ipynb` renders the table.

    python bench/autopilot_regret.py                          # every case, seeds 0–2 (hours on a 2-core CPU)
    python bench/autopilot_regret.py --cases syn-mnist-10 --seeds 0
"""
import argparse, json, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# case → (source, target, labels per class (0: label-free), candidate backbones: None = a DigitCNN trained on the source)
CASES = {'syn-mnist-10': ('syn', 'mnist', 10, None), 'uci-mnist-10': ('uci', 'mnist', 10, None),
         'mnist-mnistm-10': ('mnist', 'mnistm', 10, None), 'mnist-fashion-10': ('mnist', 'fashion', 10, None),
         'mnist-fashion-100': ('mnist', 'fashion', 100, None),
         'syn-mnist-0': ('syn', 'mnist', 0, None), 'uci-mnist-0': ('uci', 'mnist', 0, None), 'mnist-mnistm-0': ('mnist', 'mnistm', 0, None),
         'faces-5': (None, 'faces', 5, ['efficientnet-lite0', 'efficientnet-lite1'])}


def faces_folder() -> Path:
    "The tutorial's faces folder: scikit-image's lfw_subset (100 faces, 100 other patches) as PNGs in face/ and not_face/."
    import numpy as np, skimage.data
    from PIL import Image
    root = Path(tempfile.gettempdir())/'transfer_nb-faces'
    if (root/'.complete').exists(): return root
    for i, im in enumerate(skimage.data.lfw_subset()):
        d = root/('face' if i < 100 else 'not_face'); d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((im * 255).round().astype(np.uint8)).save(d/f'{i:03d}.png')
    (root/'.complete').touch()
    return root


def run_case(case:str, seeds, out:Path, threads:int, parts=('oracle', 'autopilot'), folds:int=1):
    import torch
    torch.set_num_threads(threads)
    from transfer_nb.autopilot import autopilot, candidate_techniques, _domain
    from transfer_nb.experiment import compare
    from transfer_nb.pairs import domain_pair
    from transfer_nb.finetune import pretrained
    src, tgt, shots, backbones = CASES[case]
    target = faces_folder() if tgt == 'faces' else tgt
    for s in seeds:
        if 'oracle' in parts:
            for b in (backbones or [None]):
                net = pretrained(b) if b else None
                p = domain_pair(_domain(src, 'source'), _domain(target, 'target', model=net), shots=shots or None, seed=s, bs=16, model=net)
                tried = candidate_techniques(p, net, labels=shots != 0)[0]  # what the autopilot chooses from
                t0 = time.time()
                compare(p, tried, seeds=[s], shots=[shots or 'all'], model=b, steps=50, source_steps=600, bs=16, lr=3e-3,
                        out=out/case/f"oracle-{b or 'digitcnn'}", verbose=True,
                        command=f"python bench/autopilot_regret.py --cases {case} --seeds {s} --parts oracle")
                print(f"{case} seed {s}: oracle on {b or 'DigitCNN'} ({', '.join(tried)}) {time.time() - t0:.0f} s", flush=True)
        if 'autopilot' in parts:
            d = out/case/f'seed{s}'
            if (d/'autopilot.md').exists(): print(f"{case} seed {s}: autopilot done already", flush=True); continue
            t0 = time.time()
            ap = autopilot(target, shots=shots, source=src, backbones=backbones, seed=s, folds=folds, out=d, verbose=True,
                           command=f"python bench/autopilot_regret.py --cases {case} --seeds {s} --parts autopilot --folds {folds}")
            (d/'seconds.json').write_text(json.dumps({'seconds': round(time.time() - t0, 1), 'threads': threads, 'folds': folds}))
            for f in d.glob('**/*.pkl'): f.unlink()  # the exported networks are not kept in the repository
            print(f"{case} seed {s}: picked {ap.pick['technique']} on {ap.backbone}, test {ap.test_acc:.3f}, {time.time() - t0:.0f} s", flush=True)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cases', default=','.join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    ap.add_argument('--seeds', default='0,1,2')
    ap.add_argument('--threads', type=int, default=1, help="torch threads (run two cases side by side on two cores)")
    ap.add_argument('--out', default=str(ROOT/'results'/'autopilot'))
    ap.add_argument('--parts', default='oracle,autopilot', help="oracle, autopilot or both (comma-separated)")
    ap.add_argument('--folds', type=int, default=1, help="the autopilot's folds (1: one held-out fifth of the labels)")
    a = ap.parse_args()
    bad = [c for c in a.cases.split(',') if c not in CASES]
    if bad: sys.exit(f"unknown case(s) {', '.join(bad)}; valid: {', '.join(CASES)}")
    for c in a.cases.split(','): run_case(c, [int(s) for s in a.seeds.split(',')], Path(a.out), a.threads, a.parts.split(','), a.folds)
