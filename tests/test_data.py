"Tests of `transfer_nb.data` as installed: determinism, leak-free and seeded splits, samples that keep the classes, image decoding, bad inputs."
import hashlib, os, random, subprocess, sys, warnings
import numpy as np, pytest, torch
from PIL import Image
from fastai.data.load import DataLoader
from transfer_nb.core import seed_everything, DigitCNN, Normalized
from transfer_nb.domains import DOMAINS, FASHION_CLASSES, load_domain, load_syn, render_digits, digit_fonts, Augment, cache_dir, _cached
from transfer_nb.data import Domain, convert_domain, stratified_sample, Tensors, TensorDL
from transfer_nb.pairs import domain_pair, folder_pair, shift_regression
from transfer_nb.folders import folder_domain
from folders import loader_images, decoded
from transfer_nb.adapt import adapt_learner
from transfer_nb.validators import IM, TargetAccuracy

PAIRS = [('syn', 'mnist'), ('mnist', 'uci'), ('mnist', 'mnistm'), ('uci', 'mnist'), ('mnist:0-4', 'mnist:5-9')]
HAVE_FASHION = os.path.isdir('/usr/share/datasets/fashion-mnist') or bool(os.environ.get('FASHION_MNIST_DIR'))


def rows(x):
    "A set of hashes, one per image, to compare splits by content."
    return {hashlib.sha1(r.numpy().tobytes()).hexdigest() for r in decoded(x).cpu()}


@pytest.mark.parametrize('name', [n for n in DOMAINS if n != 'fashion' or HAVE_FASHION])
def test_domain_shapes_and_labels(name):
    d = load_domain(name)
    assert d.x.dtype == torch.float32 and d.x.ndim == 4 and d.shape[1:] == (28, 28)
    assert d.shape[0] == (3 if name == 'mnistm' else 1)
    assert 0 <= d.x.min() and d.x.max() <= 1
    assert d.y.dtype == torch.long and set(d.y.unique().tolist()) == set(range(10))
    assert d.classes == (FASHION_CLASSES if name == 'fashion' else [str(i) for i in range(10)])
    assert min(d.counts) > 0 and d.about and len(d.fingerprint) == 16


def test_fashion_missing_names_the_package(monkeypatch, tmp_path):
    from transfer_nb import domains as data
    monkeypatch.setenv('FASHION_MNIST_DIR', str(tmp_path))
    with pytest.raises(FileNotFoundError, match="install Debian's dataset-fashion-mnist package"): data.load_fashion()


def test_syn_is_deterministic_per_seed_and_uses_bundled_fonts(tmp_path, monkeypatch):
    monkeypatch.setenv('TRANSFER_NB_CACHE', str(tmp_path))
    a, b, c = load_syn(seed=3, n_per_class=4), load_syn(seed=3, n_per_class=4), load_syn(seed=4, n_per_class=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and not torch.equal(a.x, c.x)
    fonts = digit_fonts()
    assert torch.equal(render_digits(3, fonts, seed=5)[0], render_digits(3, fonts, seed=5)[0])  # rendering itself, uncached
    assert len(list(tmp_path.glob('syn-*.pt'))) == 2 and not list(tmp_path.glob('*.tmp'))  # one cache entry per seed, no temporary files
    import matplotlib
    assert all(str(f).startswith(matplotlib.get_data_path()) for f in fonts)  # the same files on every installation (F5)
    assert all(f.name in a.about for f in fonts)  # the domain says which fonts made it


@pytest.mark.parametrize('source,target', PAIRS)
def test_same_seed_same_pair(source, target):
    a, b = domain_pair(source, target, shots=5, seed=7), domain_pair(source, target, shots=5, seed=7)
    for k in a.idx: assert torch.equal(a.idx[k], b.idx[k]), k
    assert torch.equal(loader_images(a.target.train), loader_images(b.target.train))
    assert not torch.equal(a.idx['test'], domain_pair(source, target, shots=5, seed=8).idx['test'])


def test_loaders_are_seeded_by_the_pair_not_by_the_global_generator():
    random.seed(1); a = domain_pair('uci', 'mnist', shots=3, seed=4)
    random.seed(2); b = domain_pair('uci', 'mnist', shots=3, seed=4)
    for da, db in zip(a.loaders(), b.loaders()):
        assert all(torch.equal(x[0], y[0]) for x, y in zip(da, db))


@pytest.mark.parametrize('source,target', PAIRS)
@pytest.mark.parametrize('shots', [1, 10, None])
def test_target_test_never_in_training_splits(source, target, shots):
    p = domain_pair(source, target, shots=shots, seed=1)
    test = set(p.idx['test'].tolist())
    for k in ('target_train', 'target_valid', 'unlabeled'): assert not test & set(p.idx[k].tolist()), k
    assert not set(p.idx['target_valid'].tolist()) & set(p.idx['unlabeled'].tolist())
    assert set(p.idx['target_train'].tolist()) <= set(p.idx['unlabeled'].tolist())
    assert not set(p.idx['source_train'].tolist()) & set(p.idx['source_valid'].tolist())
    test_imgs = rows(loader_images(p.test))  # by content too: no test image in a loader that training or selection may use
    for dl in (p.target.train, p.target.valid, p.unlabeled): assert not test_imgs & rows(loader_images(dl))
    assert len(p.idx['test']) + len(p.idx['target_valid']) + len(p.idx['unlabeled']) == len(p.tgt)


@pytest.mark.parametrize('source,target', PAIRS)
def test_no_split_is_stored_class_by_class(source, target):
    p = domain_pair(source, target, shots=10, seed=0)
    for k, idx in p.idx.items():
        y = (p.src if k.startswith('source') else p.tgt).y[idx]
        n = min(len(y), 200)
        assert len(set(y[:n].tolist())) == p.n_classes or len(set(y.tolist())) < p.n_classes, f"the first {n} of {k} hold {sorted(set(y[:n].tolist()))}"


def _folder_pair(tmp_path):
    m = load_domain('mnist')
    for role in ('src', 'tgt'):
        for c in range(3):
            (tmp_path/role/str(c)).mkdir(parents=True)
            for i in torch.where(m.y == c)[0][(0 if role == 'src' else 60):][:60].tolist():
                Image.fromarray((m.x[i, 0].numpy() * 255).astype(np.uint8)).save(tmp_path/role/str(c)/f'{i}.png')
    return folder_pair(tmp_path/'src', tmp_path/'tgt')


@pytest.mark.parametrize('source,target', PAIRS + [('folder', 'folder')])
@pytest.mark.parametrize('n_val', [None, 333])
def test_validators_see_every_class_in_proportion_and_the_oracle_the_whole_test_set(source, target, n_val, tmp_path):
    p = _folder_pair(tmp_path) if source == 'folder' else domain_pair(source, target, seed=0)
    warnings.simplefilter('ignore')  # n_val above the folder pair's pool says so once; its test is elsewhere
    pool_y = p.tgt.y[p.idx['unlabeled']]
    x = p.pool_sample(n_val)
    scored_y = pool_y[[i for i in range(len(pool_y))] if n_val is None else stratified_sample(pool_y, n_val, 0)]
    assert rows(x) == rows(loader_images(p.unlabeled)[stratified_sample(pool_y, n_val, 0)])
    n = len(x)
    share = torch.bincount(pool_y, minlength=p.n_classes).float() / len(pool_y)
    got = torch.bincount(scored_y, minlength=p.n_classes).float()
    assert (got - share * n).abs().max() <= 1, (got.tolist(), (share * n).tolist())  # every class, within one image of its share
    learn = adapt_learner(DigitCNN(p.tgt.shape[0], n_out=p.n_classes, width=4), p, 'source_only', validators=('IM',), oracle=True, n_val=n_val)
    im = next(m for m in learn.metrics if isinstance(m, IM))
    assert im.outputs.x.shape[0] == (len(pool_y) if n_val is None else min(n_val, len(pool_y)))
    oracle = next(m for m in learn.metrics if isinstance(m, TargetAccuracy))
    assert oracle.test is p.test and len(oracle.test.dataset) == len(p.idx['test'])  # the oracle scores every test image


def test_stratified_sample_bad_and_large_n():
    y = torch.tensor([0] * 10 + [1] * 10)
    assert sorted(stratified_sample(y, 100).tolist()) == list(range(20))
    with pytest.raises(ValueError, match="n must be an int ≥ 1, got 0"): stratified_sample(y, 0)
    p = domain_pair('uci', 'mnist')
    with pytest.warns(UserWarning, match="scoring the whole pool"): assert len(p.pool_sample(10**6)) == len(p.unlabeled.dataset)


@pytest.mark.parametrize('source,target', PAIRS)
def test_pair_shapes_and_label_ranges(source, target):
    p = domain_pair(source, target, shots=3, bs=16)
    c = p.tgt.shape[0]
    for dl in (p.source.train, p.source.valid, p.target.train, p.target.valid, p.test):
        x, y = dl.one_batch()
        assert x.shape[1:] == (c, 28, 28) and y.dtype == torch.long and 0 <= y.min() and y.max() < len(dl.dataset.vocab)
    assert len(p.unlabeled.one_batch()) == 1
    assert torch.bincount(p.target.train.dataset.ts[1]).tolist() == [3] * p.n_classes
    assert 'DomainPair' in repr(p) and 'held out' in repr(p)


def test_no_target_test_original_in_source_training():
    p = domain_pair("mnist", "mnistm", seed=2)
    test_ids = set(p.tgt.ids[p.idx["test"]].tolist())
    for k in ("source_train", "source_valid"): assert not test_ids & set(p.src.ids[p.idx[k]].tolist())
    assert "their originals are in the target test set" in repr(p)


def test_target_only_pair():
    p = domain_pair(None, 'uci', shots=4, seed=1)
    assert not p.has_source and p.fingerprint()['source'] is None and 'target only' in repr(p)
    with pytest.raises(ValueError, match="this pair is target-only .* the source data is not applicable"): p.source
    assert torch.equal(p.idx['test'], domain_pair('mnist', 'uci', shots=4, seed=1).idx['test'])  # the same target split


def test_bad_inputs_fail_before_anything_is_built():
    with pytest.raises(ValueError, match="shots=400 but target class '0' has only 350 images"): domain_pair('syn', 'mnist', shots=400)
    with pytest.raises(ValueError, match="shots must be an int ≥ 1 or None, got 0"): domain_pair('syn', 'mnist', shots=0)
    with pytest.raises(ValueError, match="seed must be an int ≥ 0, got -1"): domain_pair('syn', 'mnist', seed=-1)
    with pytest.raises(ValueError, match="unknown domain 'svhn'"): domain_pair('syn', 'svhn')
    with pytest.raises(TypeError, match="target must be a domain name, a `Domain` or fastai DataLoaders, got NoneType"): domain_pair("syn", None)
    with pytest.raises(ValueError, match="images must hold values in \\[0, 1\\]"): Domain('x', torch.full((2, 1, 4, 4), 2.), torch.zeros(2, dtype=torch.long), ['a'])


def test_model_gives_channels_and_size():
    net = Normalized(DigitCNN(n_in=3), [0.5] * 3, [0.25] * 3, size=32)
    p = domain_pair('uci', 'mnist', shots=2, model=net)
    assert p.tgt.shape == (3, 32, 32) and p.src.shape == (3, 32, 32)


def _write(path, arr, mode=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(path, **kw)


RAMP = np.arange(64, dtype=np.float64).reshape(8, 8) / 63


@pytest.mark.parametrize('kind', ['L8', 'L16', 'I32', 'F', '1bit', 'P', 'RGBA', 'LA', 'CMYK', 'RGB16'])
def test_each_image_format_decodes_to_its_values(tmp_path, kind):
    "16-bit, float, palette, alpha and CMYK images give the values they store (F4)."
    root, f = tmp_path/'imgs', tmp_path/'imgs'/'a'/'x'
    _write(root/'b'/'ref.png', (RAMP * 255).astype(np.uint8))  # a second class
    f.parent.mkdir(parents=True, exist_ok=True)
    if kind == 'L8': _write(f.with_suffix('.png'), (RAMP * 255).round().astype(np.uint8)); want, eps = RAMP, 1 / 255
    elif kind == 'L16': _write(f.with_suffix('.png'), (RAMP * 65535).round().astype(np.uint16)); want, eps = RAMP, 1e-4
    elif kind == 'I32': _write(f.with_suffix('.tif'), (RAMP * 65535).round().astype(np.int32)); want, eps = RAMP, 1e-4
    elif kind == 'F': _write(f.with_suffix('.tif'), RAMP.astype(np.float32)); want, eps = RAMP, 1e-6
    elif kind == '1bit': _write(f.with_suffix('.png'), RAMP > 0.5); want, eps = (RAMP > 0.5).astype(float), 0
    elif kind == 'P':
        Image.fromarray((RAMP * 255).astype(np.uint8)).convert('RGB').convert('P', palette=Image.ADAPTIVE, colors=256).save(f.with_suffix('.png'))
        want, eps = RAMP, 1.5 / 255
    elif kind == 'RGBA':
        a = np.zeros((8, 8, 4), np.uint8); a[..., 0] = 200; a[..., 3] = 255; a[:4, :, 3] = 0  # top half transparent
        _write(f.with_suffix('.png'), a, 'RGBA'); want, eps = None, 1 / 255
    elif kind == 'LA':
        a = np.zeros((8, 8, 2), np.uint8); a[..., 0] = 255; a[..., 1] = 128
        _write(f.with_suffix('.png'), a, 'LA'); want, eps = np.full((8, 8), 128 / 255), 1 / 255
    elif kind == 'CMYK':
        Image.new('CMYK', (8, 8), (0, 255, 255, 0)).save(f.with_suffix('.tif')); want, eps = None, 1 / 255  # pure red
    elif kind == 'RGB16':  # 16-bit RGB PNGs open as 8-bit RGB in Pillow: still the right values
        Image.fromarray((RAMP * 255).astype(np.uint8)).convert('RGB').save(f.with_suffix('.png')); want, eps = RAMP, 1 / 255
    d = folder_domain(root, size=8, channels=3 if kind in ('RGBA', 'CMYK') else 1)
    x = d.x[d.y == 0][0]
    if kind == 'RGBA':
        assert torch.allclose(x[0, 4:], torch.full((4, 8), 200 / 255), atol=eps) and torch.all(x[:, :4] == 0)  # alpha composited over black
    elif kind == 'CMYK': assert torch.allclose(x[:, 0, 0], torch.tensor([1., 0., 0.]), atol=eps)
    else: assert torch.allclose(x[0], torch.as_tensor(want, dtype=torch.float32), atol=eps + 1e-6), kind


def test_float_images_out_of_range_are_refused(tmp_path):
    _write(tmp_path/'a'/'x.tif', (RAMP * 255).astype(np.float32)); _write(tmp_path/'b'/'y.png', (RAMP * 255).astype(np.uint8))
    d = folder_domain(tmp_path)  # files are read when a loader asks: the bad one is named then
    with pytest.raises(ValueError, match="x.tif'?: a float image with values in \\[0, 255\\]; float images must hold values in \\[0, 1\\]"): d.x.load()


def test_cache_that_cannot_be_written(tmp_path, monkeypatch):
    "A full disk costs a warning: the data is returned and no temporary file is left (F8)."
    monkeypatch.setenv('TRANSFER_NB_CACHE', str(tmp_path))
    def full(obj, f): open(f, 'wb').write(b'partial'); raise OSError(28, 'No space left on device')
    monkeypatch.setattr(torch, 'save', full)
    with pytest.warns(UserWarning, match='could not cache'):
        x, y = load_syn(seed=9, n_per_class=2).x, None
    assert x.shape == (20, 1, 28, 28) and list(tmp_path.iterdir()) == []


def test_tensordl_test_dl_and_decode():
    dl = TensorDL(Tensors(torch.rand(10, 1, 4, 4), torch.arange(10) % 2, vocab=['a', 'b']), bs=4)
    from fastai.data.core import DataLoaders
    dls = DataLoaders(dl, dl)
    assert len(dls.test_dl(torch.rand(3, 1, 4, 4)).dataset) == 3 and len(dls.test_dl([torch.rand(1, 4, 4)]).dataset) == 1
    assert dl.decode_batch((torch.rand(2, 1, 4, 4), torch.tensor([1, 0])))[0][1] == 'b'
    with pytest.raises(TypeError, match="TensorDL needs `Tensors`"): TensorDL('images')


def test_augment_runs_on_the_batch_and_keeps_labels():
    x, y = torch.rand(8, 3, 16, 16), torch.arange(8)
    for aug in (Augment('digits'), Augment('photos', strong=True)):
        ax, ay = aug((x, y))
        assert ax.shape == x.shape and torch.equal(ay, y) and not torch.equal(ax, x) and ax.min() >= 0 and ax.max() <= 1
    p = domain_pair('uci', 'mnist', shots=2, augment='digits')
    assert isinstance(p.target.train.after_batch, Augment) and not isinstance(p.test.after_batch, Augment)


def test_folder_domain_reads_only(tmp_path):
    p = _folder_pair(tmp_path)
    before = sorted(tmp_path.rglob('*'))
    assert p.tgt.classes == ['0', '1', '2'] and p.tgt.shape == (1, 28, 28)
    folder_domain(tmp_path/'tgt'); assert sorted(tmp_path.rglob('*')) == before
    (tmp_path/'bad'/'a').mkdir(parents=True); (tmp_path/'bad'/'b').mkdir(parents=True)
    (tmp_path/'bad'/'a'/'x.png').write_bytes(b'not a png'); Image.new('L', (4, 4)).save(tmp_path/'bad'/'b'/'y.png')
    with pytest.raises(ValueError, match="cannot read image"): folder_domain(tmp_path/'bad')


def test_regression_toy_is_seeded():
    a, b = shift_regression(seed=3), shift_regression(seed=3)
    assert torch.equal(a.test.dataset.ts[1], b.test.dataset.ts[1])
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a.target.train, b.target.train))
