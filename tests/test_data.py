"Tests of `transfer_nb.data` as installed: determinism, leak-free splits, shapes, and every bad input."
import hashlib
import numpy as np, pytest, torch
from PIL import Image
from fastai.data.load import DataLoader
from transfer_nb.core import seed_everything
from transfer_nb.data import (DOMAINS, Domain, domain_pair, load_domain, load_syn, folder_domain, folder_pair, convert_domain,
                              render_digits, digit_fonts, shift_regression, Tensors, TensorDL)

PAIRS = [('syn', 'mnist'), ('mnist', 'uci'), ('mnist', 'mnistm'), ('uci', 'mnist'), ('mnist:0-4', 'mnist:5-9')]


def rows(x):
    "A set of hashes, one per image, to compare splits by content."
    return {hashlib.sha1(r.numpy().tobytes()).hexdigest() for r in x.cpu()}


@pytest.mark.parametrize('name', list(DOMAINS))
def test_domain_shapes_and_labels(name):
    d = load_domain(name)
    assert d.x.dtype == torch.float32 and d.x.ndim == 4 and d.shape[1:] == (28, 28)
    assert d.shape[0] == (3 if name == 'mnistm' else 1)
    assert 0 <= d.x.min() and d.x.max() <= 1
    assert d.y.dtype == torch.long and set(d.y.unique().tolist()) == set(range(10)) and d.classes == [str(i) for i in range(10)]
    assert min(d.counts) > 0


def test_syn_is_deterministic_per_seed(tmp_path, monkeypatch):
    monkeypatch.setenv('TRANSFER_NB_CACHE', str(tmp_path))
    a, b, c = load_syn(seed=3, n_per_class=4), load_syn(seed=3, n_per_class=4), load_syn(seed=4, n_per_class=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and not torch.equal(a.x, c.x)
    fonts = digit_fonts(system=False)
    assert torch.equal(render_digits(3, fonts, seed=5)[0], render_digits(3, fonts, seed=5)[0])  # rendering itself, uncached
    assert len(list(tmp_path.glob('syn-*.pt'))) == 2  # one cache entry per seed, no temporary files left


@pytest.mark.parametrize('source,target', PAIRS)
def test_same_seed_same_pair(source, target):
    a, b = domain_pair(source, target, shots=5, seed=7), domain_pair(source, target, shots=5, seed=7)
    for k in a.idx: assert torch.equal(a.idx[k], b.idx[k]), k
    assert torch.equal(a.target.train.dataset.ts[0], b.target.train.dataset.ts[0])
    c = domain_pair(source, target, shots=5, seed=8)
    assert not torch.equal(a.idx['test'], c.idx['test'])


@pytest.mark.parametrize('source,target', PAIRS)
@pytest.mark.parametrize('shots', [1, 10, None])
def test_target_test_never_in_training_splits(source, target, shots):
    p = domain_pair(source, target, shots=shots, seed=1)
    test = set(p.idx['test'].tolist())
    for k in ('target_train', 'target_valid', 'unlabeled'): assert not test & set(p.idx[k].tolist()), k
    assert not set(p.idx['target_valid'].tolist()) & set(p.idx['unlabeled'].tolist())
    assert set(p.idx['target_train'].tolist()) <= set(p.idx['unlabeled'].tolist())
    assert not set(p.idx['source_train'].tolist()) & set(p.idx['source_valid'].tolist())
    # by content too: no test image appears in a loader that training or selection may use
    test_imgs = rows(p.test.dataset.ts[0])
    for dl in (p.target.train, p.target.valid, p.unlabeled): assert not test_imgs & rows(dl.dataset.ts[0])
    n = len(p.tgt)
    assert len(p.idx['test']) + len(p.idx['target_valid']) + len(p.idx['unlabeled']) == n


@pytest.mark.parametrize('source,target', PAIRS)
def test_pair_shapes_and_label_ranges(source, target):
    p = domain_pair(source, target, shots=3, bs=16)
    c = p.tgt.shape[0]
    for dl in (p.source.train, p.source.valid, p.target.train, p.target.valid, p.test):
        x, y = dl.one_batch()
        assert x.shape[1:] == (c, 28, 28) and y.dtype == torch.long and 0 <= y.min() and y.max() < len(dl.dataset.ts[1].unique())
    assert len(p.unlabeled.one_batch()) == 1
    assert torch.bincount(p.target.train.dataset.ts[1]).tolist() == [3] * p.n_classes
    assert 'DomainPair' in repr(p) and 'held out' in repr(p)


def test_no_target_test_original_in_source_training():
    p = domain_pair("mnist", "mnistm", seed=2)
    test_ids = set(p.tgt.ids[p.idx["test"]].tolist())
    for k in ("source_train", "source_valid"): assert not test_ids & set(p.src.ids[p.idx[k]].tolist())
    assert "their originals are in the target test set" in repr(p)
    assert domain_pair("syn", "mnist").src.origin == "syn"


def test_task_split_relabels():
    lo, hi = load_domain('mnist:0-4'), load_domain('mnist:5-9')
    assert lo.classes == list('01234') and hi.classes == list('56789')
    assert set(hi.y.tolist()) == set(range(5))


def test_tensor_loader_matches_fastai_loader():
    x, y = torch.randn(203, 3), torch.arange(203)
    def epochs(cls):
        seed_everything(3)
        dl = cls(Tensors(x, y), bs=32, shuffle=True)
        return [[b[1] for b in dl] for _ in range(3)]
    fast, ref = epochs(TensorDL), epochs(DataLoader)
    for ef, er in zip(fast, ref):
        assert [t.tolist() for t in ef] == [t.tolist() for t in er]
        assert sorted(torch.cat(ef).tolist()) == list(range(203))
    assert fast[0][0].tolist() != fast[1][0].tolist()  # a new order each epoch


# ---- bad inputs -------------------------------------------------------------------------------------------------

def test_unknown_domain_lists_valid_names():
    with pytest.raises(ValueError, match="unknown domain 'mnsit' \\(did you mean 'mnist'.*valid names: syn, mnist, uci, mnistm"): load_domain('mnsit')
    with pytest.raises(ValueError, match="unknown domain 'svhn'"): domain_pair('svhn', 'mnist')
    with pytest.raises(ValueError, match="bad class selection"): load_domain('mnist:x')


def test_too_many_shots_names_class_and_count():
    with pytest.raises(ValueError, match="shots=200 but target class '0' has only 124 images"): domain_pair('mnist', 'uci', shots=200)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="shots must be a positive int or None"): domain_pair('mnist', 'uci', shots=bad)


def test_unconvertible_domains_say_what_differs():
    two = Domain('two', torch.rand(10, 2, 28, 28), torch.arange(10) % 2, ['a', 'b'])
    with pytest.raises(ValueError, match="source 'two' has 2 channels and target 'mnistm' has 3"): domain_pair(two, 'mnistm')
    big = convert_domain(load_domain('uci'), size=32)
    with pytest.raises(ValueError, match="source 'mnist' images are 28×28 and target 'uci' images are 32×32"): domain_pair('mnist', big)
    with pytest.raises(ValueError, match="cannot convert 'two' from 2 to 3 channels"): convert_domain(two, channels=3)


def _folder(root, classes, n=4, mode='L'):
    for c in classes:
        (root/c).mkdir(parents=True)
        for i in range(n): Image.new(mode, (20, 24), color=(i * 40) if mode == 'L' else (i * 40, 0, 0)).save(root/c/f'{i}.png')
    return root


def test_image_folders(tmp_path):
    d = folder_domain(_folder(tmp_path/'rgb', ['cat', 'dog'], mode='RGB'))
    assert d.shape == (3, 28, 28) and d.classes == ['cat', 'dog'] and d.counts == [4, 4]
    p = folder_pair(_folder(tmp_path/'a', ['x', 'y']), _folder(tmp_path/'b', ['x', 'y'], n=20), shots=2)
    assert p.tgt.shape == (1, 28, 28) and len(p.target.train.dataset) == 4


def test_bad_image_folders_fail_and_write_nothing(tmp_path):
    (tmp_path/'empty'/'a').mkdir(parents=True); (tmp_path/'empty'/'b').mkdir()
    (tmp_path/'empty'/'b'/'notes.txt').write_text('not an image')
    _folder(tmp_path/'one', ['only'])
    before = sorted(p for p in tmp_path.rglob('*'))
    with pytest.raises(ValueError, match="no images found in the class sub-folders of .*empty"): folder_domain(tmp_path/'empty')
    with pytest.raises(ValueError, match="found 1 class \\('only'\\).*at least 2 class folders"): folder_domain(tmp_path/'one')
    with pytest.raises(FileNotFoundError, match="is not a folder"): folder_domain(tmp_path/'missing')
    with pytest.raises(ValueError, match="found 1 class"): folder_pair(tmp_path/'one', tmp_path/'one')
    assert sorted(p for p in tmp_path.rglob('*')) == before


def test_broken_image_is_named(tmp_path):
    _folder(tmp_path/'f', ['a', 'b'])
    (tmp_path/'f'/'a'/'broken.png').write_bytes(b'not a png')
    with pytest.raises(ValueError, match="cannot read image .*broken.png"): folder_domain(tmp_path/'f')


def test_shift_regression():
    r = shift_regression(n_target=20, seed=2)
    xs, xt = r.source.train.dataset.ts[0], r.target.train.dataset.ts[0]
    assert xs.max() > 0.9 and xt.max() <= 0.5 and len(xt) == 20
    assert torch.equal(shift_regression(n_target=20, seed=2).test.dataset.ts[1], r.test.dataset.ts[1])
    with pytest.raises(ValueError, match="shift must be positive"): shift_regression(shift=-1)
