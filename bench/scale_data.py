"""Real-size photo folders through `transfer_nb compare`: peak memory, loading and training speed per folder size; writes bench/scale_data.json.

For each N (default 2,000 / 8,000 / 20,000) a folder of N JPEGs is generated once (256-px random crops of the photos that
scikit-learn, scikit-image and matplotlib ship, one class per photo) and
`transfer_nb compare --target-dir DIR --model efficientnet-lite0 --strategies linear_probe,fine_tune` runs on it in a
subprocess whose process tree is sampled for its resident memory. At `--speed-n`, the same network trains for the same
number of batches on transfer_nb's loaders and on fastai's own `ImageDataLoaders.from_folder` (the anchor), and a DANN
run goes through a source/target pair of such folders (the target in grey, blurred).

    python bench/scale_data.py                      # ~40 CPU-minutes on a 2-core CPU; run it on an otherwise idle machine
    python bench/scale_data.py --sizes 2000 --steps 10   # a quick look
    python bench/scale_data.py --snd-only                # SND's memory at a 16,000-image pool, blocks against one N×N matrix
"""
import argparse, json, os, platform, subprocess, sys, tempfile, threading, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def photos() -> dict:
    "name → H×W×3 uint8 photo, from what installed packages ship."
    from sklearn.datasets import load_sample_images
    import skimage.data, matplotlib
    from PIL import Image
    out = dict(zip(('china', 'flower'), load_sample_images().images))
    for n in ('astronaut', 'coffee', 'chelsea'): out[n] = getattr(skimage.data, n)()
    out['grace_hopper'] = np.asarray(Image.open(Path(matplotlib.get_data_path())/'sample_data'/'grace_hopper.jpg').convert('RGB'))
    return out


def make_folder(root:Path, n:int, seed:int=0, style:str='colour') -> Path:
    "n JPEGs of 256×256 in one sub-folder per photo: random crops (30–100% of the shorter side), flips; 'grey' also blurs and greys them."
    from PIL import Image, ImageFilter
    done = root/'.complete'
    if done.exists(): return root
    ph, rng = photos(), np.random.default_rng(seed)
    names = sorted(ph)
    for k in range(n):
        c = names[k % len(names)]; im = ph[c]; h, w = im.shape[:2]
        s = int(rng.uniform(0.3, 1.0) * min(h, w)); t, l = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        p = Image.fromarray(im[t:t+s, l:l+s]).resize((256, 256), Image.BILINEAR)
        if rng.random() < 0.5: p = p.transpose(Image.FLIP_LEFT_RIGHT)
        if style == 'grey': p = p.convert('L').filter(ImageFilter.GaussianBlur(2)).convert('RGB')
        (root/c).mkdir(parents=True, exist_ok=True); p.save(root/c/f'{k:06d}.jpg', quality=85)
    done.write_text('ok')
    return root


def run_sampled(cmd:list, env=None) -> dict:
    "Run `cmd`, sampling the resident memory of its process (and of its whole tree, loader workers included) every 0.2 s."
    import psutil
    t0 = time.time(); proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = dict(main=0, tree=0); ps = psutil.Process(proc.pid)
    def watch():
        while proc.poll() is None:
            try:
                main = ps.memory_info().rss
                tree = main + sum(c.memory_info().rss for c in ps.children(recursive=True))
                peak['main'], peak['tree'] = max(peak['main'], main), max(peak['tree'], tree)
            except psutil.Error: pass
            time.sleep(0.2)
    th = threading.Thread(target=watch); th.start()
    out, err = proc.communicate(); th.join()
    return dict(rc=proc.returncode, wall_s=time.time() - t0, peak_rss_gb=peak['main'] / 2**30, peak_tree_rss_gb=peak['tree'] / 2**30, stderr_tail=err[-600:])


def compare_run(folder:Path, out:Path, steps:int, n_val:int, bs:int, source=None, strategies='linear_probe,fine_tune') -> dict:
    cmd = [str(BIN/'transfer_nb'), 'compare', '--target-dir', str(folder), '--model', 'efficientnet-lite0', '--strategies', strategies,
           '--seeds', '1', '--shots', '5', '--steps', str(steps), '--source-steps', str(steps), '--n-val', str(n_val), '--bs', str(bs), '--out', str(out), '--quiet', '--overwrite']
    if source: cmd[4:4] = ['--source-dir', str(source)]
    r = run_sampled(cmd)
    recs = [json.loads(l) for l in (out/'runs.jsonl').read_text().splitlines()] if (out/'runs.jsonl').exists() else []
    r['runs'] = [{k: x.get(k) for k in ('technique', 'status', 'target_acc', 'seconds', 'error')} for x in recs]
    return r


def speed(folder:Path, batches:int, bs:int, workers:int) -> dict:
    "Images/s of loading alone, and of training the same network for `batches` batches on transfer_nb's loader and on fastai's own."
    import torch, transfer_nb  # noqa: F401
    from fastai.learner import Learner
    from fastai.callback.core import Callback, CancelFitException
    from fastai.losses import CrossEntropyLossFlat
    from fastai.vision.data import ImageDataLoaders
    from fastai.vision.augment import Resize
    from transfer_nb.pairs import folder_pair
    from transfer_nb.finetune import pretrained
    from transfer_nb.core import find_head, get_module, set_module, data_config
    from transfer_nb.data import images_dl
    from fastai.data.core import DataLoaders
    torch.manual_seed(0)

    class Stop(Callback):
        "Time `batches` training batches after `skip` warm-up ones, then stop."
        def __init__(self, n, skip=2): self.n, self.skip, self.i, self.t0 = n, skip, 0, None
        def before_batch(self):
            if self.i == self.skip: self.t0 = time.time()
        def after_batch(self):
            self.i += 1
            if self.i == self.skip + self.n: self.secs = time.time() - self.t0; raise CancelFitException()

    def train(dls):
        net = pretrained('efficientnet-lite0'); h = find_head(net)
        set_module(net, h, torch.nn.Linear(get_module(net, h).in_features, dls.c))
        stop = Stop(batches)
        learn = Learner(dls, net, loss_func=CrossEntropyLossFlat(), cbs=stop)
        with learn.no_bar(), learn.no_logging(): learn.fit(100, 1e-3)
        return batches * bs / stop.secs

    m = pretrained('efficientnet-lite0')
    t = time.time(); p = folder_pair(None, folder, model=m, bs=bs, workers=workers); pair_s = time.time() - t
    dl = p.unlabeled
    it, n, t0 = iter(dl), 0, None
    for i, (xb,) in enumerate(it):
        if i == 2: t0 = time.time()
        elif i > 2: n += len(xb)
        if i == batches + 2: break
    load = n / (time.time() - t0)
    pool = p.idx['unlabeled']  # the labeled pool, as one big training set
    ours = train(DataLoaders(images_dl(p.tgt.x[pool], p.tgt.y[pool], p.tgt.classes, bs=bs, shuffle=True, workers=workers), p.test))
    size = data_config(m)['size']
    fdls = ImageDataLoaders.from_folder(folder, valid_pct=0.1, seed=0, item_tfms=Resize(size, method='squish'), bs=bs, num_workers=workers)
    fastai_ips = train(fdls)
    return dict(batches=batches, bs=bs, workers=workers, pair_seconds=pair_s, loading_images_per_s=load, train_images_per_s=ours,
                fastai_train_images_per_s=fastai_ips, ratio_to_fastai=ours / fastai_ips)


SND_CODE = """
import resource, sys, torch, torch.nn.functional as F
from transfer_nb.validators import snd_score
from transfer_nb.twodomain import _entropy
n, d, how = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
f = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if how == 'blocks': v = snd_score(None, f)
else:  # the whole N x N matrix at once, as snd_score computed it before
    g = F.normalize(f, dim=1); s = g @ g.T; s.fill_diagonal_(float('-inf')); v = _entropy((s / 0.05).softmax(1)).mean().item()
print(v, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""

def snd(n:int=16000, d:int=1280) -> dict:
    "Extra peak memory (MB) and value of SND on n random d-dimensional features: in blocks, and as one N×N matrix."
    out = {}
    for how in ('blocks', 'dense'):
        v, mb = subprocess.run([sys.executable, '-c', SND_CODE, str(n), str(d), how], capture_output=True, text=True, check=True).stdout.split()
        out[how] = dict(value=float(v), extra_peak_mb=float(mb))
    return dict(pool=n, features=d, **out, abs_diff=abs(out['blocks']['value'] - out['dense']['value']))


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--sizes', default='2000,8000,20000'); ap.add_argument('--steps', type=int, default=25)
    ap.add_argument('--n-val', type=int, default=500); ap.add_argument('--speed-n', type=int, default=8000)
    ap.add_argument('--batches', type=int, default=20); ap.add_argument('--bs', type=int, default=32)
    ap.add_argument('--data', default=str(Path(tempfile.gettempdir())/'transfer_nb_scale'))
    ap.add_argument('--out', default=str(ROOT/'bench'/'scale_data.json'))
    ap.add_argument('--snd-only', action='store_true', help='only (re)measure SND, into the existing JSON')
    ap.add_argument('--batch-only', default='', help='only measure the smallest folder at these batch sizes (e.g. 16,64), into the existing JSON')
    a = ap.parse_args()
    if a.batch_only:
        res = json.loads(Path(a.out).read_text()); n = int(a.sizes.split(',')[0]); folder = make_folder(Path(a.data)/f'photos-{n}', n)
        new = [dict(n=n, bs=int(b), **compare_run(folder, Path(a.data)/f'out-{n}-bs{b}', a.steps, a.n_val, int(b))) for b in a.batch_only.split(',')]
        res['batch_sizes'] = sorted([r for r in res.get('batch_sizes', []) if (r['n'], r['bs']) not in {(x['n'], x['bs']) for x in new}] + new, key=lambda r: (r['bs'], r['n']))
        Path(a.out).write_text(json.dumps(res, indent=1) + '\n'); print([(r['bs'], r['rc'], round(r['peak_rss_gb'], 2)) for r in res['batch_sizes']]); sys.exit()
    if a.snd_only:
        res = json.loads(Path(a.out).read_text()); res['snd'] = snd(); Path(a.out).write_text(json.dumps(res, indent=1) + '\n'); print(res['snd']); sys.exit()
    sizes, data = [int(s) for s in a.sizes.split(',')], Path(a.data)
    res = dict(machine=dict(date=time.strftime('%Y-%m-%d'), cpus=os.cpu_count(), platform=platform.platform(), python=platform.python_version(),
                            processor=platform.processor() or platform.machine()),
               settings=dict(steps=a.steps, n_val=a.n_val, bs=a.bs, image_px=256, model='efficientnet-lite0'), sizes=[])
    for n in sizes:
        t = time.time(); folder = make_folder(data/f'photos-{n}', n); gen = time.time() - t
        mb = sum(f.stat().st_size for f in folder.rglob('*.jpg')) / 2**20
        print(f"N={n}: folder of {mb:.0f} MB ({gen:.0f} s to make); compare …", file=sys.stderr, flush=True)
        r = compare_run(folder, data/f'out-{n}', a.steps, a.n_val, a.bs)
        res['sizes'].append(dict(n=n, folder_mb=mb, **r))
        print(f"  rc {r['rc']}, {r['wall_s']:.0f} s, peak RSS {r['peak_rss_gb']:.2f} GB (tree {r['peak_tree_rss_gb']:.2f} GB)", file=sys.stderr, flush=True)
        Path(a.out).write_text(json.dumps(res, indent=1) + '\n')
    if a.speed_n:
        folder = make_folder(data/f'photos-{a.speed_n}', a.speed_n)
        print(f"speed at N={a.speed_n} …", file=sys.stderr, flush=True)
        res['speed'] = dict(n=a.speed_n, **speed(folder, a.batches, a.bs, min(8, os.cpu_count() or 1)))
        Path(a.out).write_text(json.dumps(res, indent=1) + '\n')
        src = make_folder(data/'photos-2000', 2000); tgt = make_folder(data/'photos-2000-grey', 2000, seed=1, style='grey')
        print("dann on photos-2000 → photos-2000-grey …", file=sys.stderr, flush=True)
        res['dann'] = dict(n_source=2000, n_target=2000, **compare_run(tgt, data/'out-dann', a.steps, a.n_val, a.bs, source=src, strategies='dann'))
        Path(a.out).write_text(json.dumps(res, indent=1) + '\n')
    res['snd'] = snd(); Path(a.out).write_text(json.dumps(res, indent=1) + '\n')
    print(json.dumps(res, indent=1))
