"Folders read lazily (issue 22): every technique and `compare` on `ImageFiles`, files that change or break mid-run, DataFrames, n_val."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
import torch.nn.functional as F
from PIL import Image
from transfer_nb.data import ImageFiles, images_dl
from transfer_nb.folders import folder_domain, df_domain, files_domain
from transfer_nb.pairs import folder_pair, domain_pair
from transfer_nb.validators import snd_score
from transfer_nb.experiment import compare
from transfer_nb.cli import main
from folders import write_folder

EVERY = ['linear_probe', 'fine_tune', 'full+l2sp', 'source_only', 'adabn', 'dann', 'cdan+mcc', 'mmd', 'fixmatch', 'shot', 'tent']


@pytest.fixture
def folders(tmp_path):
    write_folder(tmp_path/'src', 'syn:1,7', 40, rgb=False); write_folder(tmp_path/'tgt', 'mnist:1,7', 40)
    return tmp_path/'src', tmp_path/'tgt'


def test_a_folder_domain_holds_paths_not_pixels(folders):
    d = folder_domain(folders[1], size=28)
    assert isinstance(d.x, ImageFiles) and d.x.shape == (80, 3, 28, 28)
    assert not any(torch.is_tensor(v) and v.ndim == 4 for v in vars(d.x).values())  # nothing decoded is kept
    p = folder_pair(*folders, size=28, workers=0)
    for dl in p.loaders(): assert isinstance(dl.dataset.files, ImageFiles)


def test_every_technique_runs_through_compare_on_lazy_folders(folders):
    "Each technique's run ends ok (or collapsed, at this tiny budget), never failed; workers decode the images."
    p = folder_pair(*folders, size=28, workers=1)
    df = compare(p, EVERY, seeds=(0,), shots=(5,), steps=8, source_steps=16, n_val=30)
    bad = df[df.status == 'failed']
    assert bad.empty, bad[['technique', 'error']].to_string()
    assert set(df.technique) == set(EVERY) and df.target_acc.between(0, 1).all()
    assert df.attrs['config']['n_val'] == 30


def test_a_file_changed_or_removed_during_a_sweep_fails_its_runs_naming_it(folders):
    p = folder_pair(*folders, size=28, workers=0)
    f = p.tgt.x.files[int(p.idx['test'][0])]
    f.write_bytes(f.read_bytes())  # rewritten: a new modification time
    os.utime(f, ns=(0, 10**9))
    df = compare(p, ['fine_tune'], seeds=(0,), shots=(5,), steps=4, source_steps=4)
    assert (df.status == 'failed').all() and df.error.str.contains(f"image '{f}' changed after its folder was read").all(), df.error.tolist()
    f.unlink()
    df = compare(p, ['linear_probe'], seeds=(0,), shots=(5,), steps=4, source_steps=4)
    assert df.error.str.contains(f"image '{f}' was removed after its folder was read").all(), df.error.tolist()


def test_an_image_broken_inside_is_named_by_the_worker_that_meets_it(folders, tmp_path):
    "A JPEG whose header reads but whose pixels do not: the domain is made (headers only), the run fails naming the file, the report is written."
    f = folders[1]/'7'/'broken.jpg'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(f, quality=95)
    f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2])  # the header survives, the scan is cut
    p = folder_pair(None, folders[1], size=28, workers=1)
    df = compare(p, ['fine_tune'], seeds=(0,), shots=(5,), steps=4, model=_tiny(), out=tmp_path/'out')
    assert (df.status == 'failed').all() and df.error.str.contains(f"cannot read image '{f}'").all(), df.error.tolist()
    rec = [json.loads(l) for l in (tmp_path/'out'/'runs.jsonl').read_text().splitlines()]
    assert [r['status'] for r in rec] == ['failed'] and 'broken.jpg' in rec[0]['error']  # stored as failed: a rerun retries it


def _tiny():
    from transfer_nb.core import DigitCNN
    m = DigitCNN(3, 2, width=4); m.classes = ['1', '7']
    return m


def test_lazy_loaders_decode_what_eager_decoding_gives(folders):
    d = folder_domain(folders[1], size=(20, 24))
    eager = torch.stack([d.x[i] for i in range(len(d))])
    for w in (0, 2): assert torch.equal(torch.cat([b[0] for b in images_dl(d.x, bs=13, workers=w)]), eager)
    one = Image.open(d.x.files[0]).convert('RGB')
    want = F.interpolate(torch.from_numpy(np.asarray(one, np.float32) / 255).permute(2, 0, 1)[None], size=(20, 24), mode='bilinear', antialias=True, align_corners=False)[0]
    assert torch.allclose(eager[0], want.clamp(0, 1))


def test_a_dataframe_domain_and_its_bad_rows(folders):
    files = sorted(folders[1].rglob('*.png'))
    df = pd.DataFrame(dict(file=[f.name for f in files], cls=[f.parent.name for f in files], folder=[str(f.parent) for f in files]))
    d = df_domain(df.assign(file=[str(Path(a)/b) for a, b in zip(df.folder, df.file)]), path_col='file', label_col='cls', name='listed')
    assert d.classes == ['1', '7'] and d.counts == [40, 40] and d.fingerprint == folder_domain(folders[1]).fingerprint
    with pytest.raises(ValueError, match=r"2 rows of the DataFrame have no file or no cls \(rows 3, 5\)"):
        df_domain(df.assign(cls=[None if i in (3, 5) else c for i, c in enumerate(df.cls)]), path_col='file', label_col='cls')
    with pytest.raises(FileNotFoundError, match="80 of 80 image files are not there"): df_domain(df, path_col='file', label_col='cls', root=folders[0]/'none')
    with pytest.raises(ValueError, match=r"labels \['9'\] are not among classes \['1', '7'\]"): files_domain(files[:2], ['1', '9'], classes=['1', '7'])


def test_the_fingerprint_of_a_lazy_folder_sees_a_new_file(folders):
    src, tgt = folders
    p = folder_pair(None, tgt, size=28, workers=0)
    fp = p.tgt.fingerprint
    Image.new('RGB', (28, 28)).save(tgt/'1'/'new.png')
    assert folder_pair(None, tgt, size=28, workers=0).tgt.fingerprint != fp


def test_snd_in_blocks_is_the_dense_value_and_needs_no_n_by_n_matrix():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(1500, 32, generator=g)
    fn = F.normalize(f, dim=1); s = fn @ fn.T; s.fill_diagonal_(float('-inf'))
    dense = (-(s / 0.05).softmax(1) * (s / 0.05).log_softmax(1).nan_to_num(0.)).sum(1).mean().item()
    assert abs(snd_score(None, f) - dense) < 1e-6 and abs(snd_score(None, f, block=7) - dense) < 1e-6
    code = ("import resource, torch\nfrom transfer_nb.validators import snd_score\n"
            "big = torch.randn(6000, 16, generator=torch.Generator().manual_seed(0))\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\nsnd_score(None, big, block=256)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)  # a fresh process: its peak RSS is this computation's
    assert r.returncode == 0, r.stderr
    grown_mb = float(r.stdout.split()[-1])
    assert grown_mb < 6000 * 6000 * 4 / 2**20, f"SND grew the peak RSS by {grown_mb:.0f} MB: as much as one dense 6000×6000 matrix"


def test_the_command_takes_n_val_and_the_report_says_so(folders, tmp_path, capsys):
    out = tmp_path/'r'
    code = main(['compare', '--source', 'syn:1,7', '--target', 'mnist:1,7', '--strategies', 'dann', '--seeds', '1', '--source-steps', '4',
                 '--n-val', '12', '--out', str(out), '--quiet'])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out/'config.json').read_text())['n_val'] == 12
    assert 'label-free scores on a seeded stratified sample of 12 unlabeled pool images' in (out/'report.md').read_text()
    with pytest.raises(SystemExit) as e: main(['compare', '--n-val', '1', '--out', str(tmp_path/'x')])
    assert e.value.code == 2
    assert '--n-val' in capsys.readouterr().err


def test_a_users_fastai_dataloaders_run_every_kind_of_technique(folders):
    "DataLoaders a user built with fastai (source and target) go through compare: fine-tuning, two-domain adaptation, FixMatch, SHOT, TENT."
    from fastai.vision.data import ImageDataLoaders
    from fastai.vision.augment import Resize
    src, tgt = (ImageDataLoaders.from_folder(f, valid_pct=0.2, seed=0, item_tfms=Resize(28), bs=16, num_workers=0) for f in folders)
    p = domain_pair(src, tgt, workers=0)
    assert p.tgt.x.shape[1:] == (3, 28, 28) and p.tgt.classes == ['1', '7'] and len(p.tgt) == 80
    df = compare((src, tgt), ['fine_tune', 'dann', 'fixmatch', 'shot', 'tent'], seeds=(0,), shots=(5,), steps=6, source_steps=12)
    assert (df.status != 'failed').all(), df.filter(['technique', 'error']).to_string()


def test_dataloaders_without_labels_or_files_are_refused(folders):
    from fastai.data.block import DataBlock
    from fastai.vision.data import ImageBlock
    from fastai.data.transforms import get_image_files
    from fastai.data.core import DataLoaders, TfmdDL, Datasets
    unlabeled = DataBlock(blocks=ImageBlock, get_items=get_image_files).dataloaders(folders[1], bs=4, num_workers=0)
    with pytest.raises(ValueError, match=r"have no labels \(1 pipeline: inputs only\): a domain needs a class per image"): domain_pair(None, unlabeled)
    ds = Datasets(list(range(10)), tfms=[[lambda i: torch.zeros(3, 8, 8)], [lambda i: i % 2]], splits=[list(range(8)), [8, 9]])
    with pytest.raises(ValueError, match="have no class vocabulary"): domain_pair(None, DataLoaders(TfmdDL(ds.train), TfmdDL(ds.valid)))


def test_what_a_ray_task_receives_is_paths_not_pixels(folders):
    import pickle
    p = folder_pair(*folders, size=64, workers=0)
    pixels = sum(len(d) for d in (p.src, p.tgt)) * 3 * 64 * 64 * 4
    size = len(pickle.dumps(p))
    assert size < pixels / 10, f"a pickled folder pair takes {size:,} bytes, {size / pixels:.0%} of its decoded images"
    q = pickle.loads(pickle.dumps(p))
    assert torch.equal(q.tgt.x[3], p.tgt.x[3]) and q.tgt.fingerprint == p.tgt.fingerprint


def test_a_file_added_to_the_folder_makes_a_resumed_sweep_another_configuration(folders, tmp_path):
    run = lambda: compare(folder_pair(None, folders[1], size=28, workers=0), ['linear_probe'], seeds=(0,), shots=(5,), steps=2, model=_tiny(), out=tmp_path/'o')
    run()
    Image.new('RGB', (28, 28)).save(folders[1]/'1'/'new.png')
    with pytest.raises(ValueError, match=r"holds results of a different configuration .*fingerprints"): run()


def test_five_images_per_class_leave_an_empty_valid_split_and_still_train(tmp_path):
    "Five images per class split into 1 test, 0 valid, 4 pool: the empty validation loader is a loader, not a crash (the autopilot's held-out splits are this small)."
    from transfer_nb.core import DigitCNN
    write_folder(tmp_path/'five', 'mnist:1,7', 5)
    p = folder_pair(None, tmp_path/'five', size=28, workers=0)
    assert len(p.idx['target_valid']) == 0 and len(p.target.valid.dataset) == 0
    df = compare(p, ['full'], seeds=[0], shots=['all'], model=DigitCNN(3, 2, 8), steps=3)
    assert df.status.iloc[0] in ('ok', 'collapsed') and 0 <= df.target_acc.iloc[0] <= 1, df.get('error')  # 3 steps may predict one class: it trained
