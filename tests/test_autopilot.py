"The autopilot on data and networks we did not write: a folder of photos, torchvision networks, the CLI; what it must never do (read the test set before the pick)."
import numpy as np, pytest, torch, torchvision
from unittest import mock
from PIL import Image
from fastai.learner import load_learner
from transfer_nb.autopilot import autopilot, rank_backbones
from transfer_nb.store import load_runs
from transfer_nb.cli import main
from folders import write_folder


def exit_code(argv):
    try: return main(argv)
    except SystemExit as e: return e.code


def colour_folder(root, n=12, size=40):
    "Two classes a network can learn from few images: reddish and bluish noise, as RGB JPEGs (a user's photos)."
    rng = np.random.default_rng(0)
    for c, tint in (('red', (1, .3, .3)), ('blue', (.3, .3, 1))):
        (root/c).mkdir(parents=True)
        for i in range(n):
            a = (rng.random((size, size, 3)) * np.array(tint) * 255).astype(np.uint8)
            Image.fromarray(a).save(root/c/f'{i}.jpg')
    return root


@pytest.fixture(scope='module')
def photos(tmp_path_factory): return colour_folder(tmp_path_factory.mktemp('photos')/'photos')


def nets():
    "Networks we did not write, with their heads nested: torchvision's MobileNetV3 (classifier[3]) and ResNet-18 (fc), untrained."
    torch.manual_seed(0)
    return {'mobilenet_v3_small': torchvision.models.mobilenet_v3_small(num_classes=5), 'resnet18': torchvision.models.resnet18(num_classes=5)}


_TARGET_SPLITS = ('target_train', 'target_valid', 'unlabeled', 'test')

def spied(**kw):
    "autopilot(**kw), with the pairs it hands to compare: (result, [search pairs], the final pair)."
    import transfer_nb.autopilot as A
    pairs, real = [], A.compare
    def spy(pair, *a, **k): pairs.append(pair); return real(pair, *a, **k)
    with mock.patch.object(A, 'compare', spy): ap = autopilot(**kw)
    return ap, pairs[:-1], pairs[-1]

def search_is_clean(search, final, labeled:bool):
    "No search pair holds an image of the real test set (compared by file: a search pair may index a subset of the target); with labels, it validates on the user's labels only, with the pool alongside."
    files = lambda p, k: {str(p.tgt.x.files[i]) for i in p.idx[k].tolist()}
    test, labels = files(final, 'test'), files(final, 'target_train')
    assert search and test
    for q in search:
        assert not test & set().union(*(files(q, k) for k in _TARGET_SPLITS))
        if labeled: assert files(q, 'test') | files(q, 'target_train') <= labels and len(q.idx['unlabeled']) > len(q.idx['target_train'])


def test_autopilot_folder_end_to_end(photos, tmp_path):
    ap, search, final_pair = spied(target=photos, shots=5, backbones=nets(), steps=4, bs=4, out=tmp_path/'ap')
    search_is_clean(search, final_pair, labeled=True)
    assert list(ap.ranking.backbone) and ap.backbone == ap.ranking.backbone.iloc[0]
    assert set(ap.trials.technique) == {'scratch', 'linear_probe', 'fine_tune', 'full'} and ap.pick['technique'] in set(ap.trials.technique)
    assert set(ap.trials.status) <= {'ok', 'collapsed'}, ap.trials
    assert 'direct' in ap.left_out  # an untrained 5-class head does not answer red/blue
    final = load_runs(tmp_path/'ap'/'final')
    assert len(final) == 1 and final.status.iloc[0] in ('ok', 'collapsed') and final.technique.iloc[0] == ap.pick['technique']
    cfg = load_runs(tmp_path/'ap'/'search'/'lr0.003').attrs['config']  # the search: 2 of the 10 labels held out, 8 trained on
    assert sum(cfg['split_counts']['test'].values()) == 2 and sum(cfg['split_counts']['target_valid'].values()) == 8
    assert ap.data['labeled'] == 10 and ap.data['test'] > 0  # 5 labels per class, no more
    learn = load_learner(ap.learner)
    assert learn.predict(sorted((photos/'red').glob('*.jpg'))[0])[0] in ('red', 'blue')
    md = (tmp_path/'ap'/'autopilot.md').read_text()
    assert ap.pick['technique'] in md and 'LogME' in md and f"{ap.test_acc:.1%}" in md


def test_cross_validation_scores_every_label_once(photos, tmp_path):
    ap = autopilot(photos, shots=5, backbones={'mobilenet': nets()['mobilenet_v3_small']}, steps=2, bs=4, folds=2, out=tmp_path/'ap')
    held = [sum(load_runs(tmp_path/'ap'/'search'/'lr0.003'/f'fold{f}').attrs['config']['split_counts']['test'].values()) for f in range(2)]
    assert sum(held) == 10 and ap.data['validation'].startswith('2-fold cross-validation') and ap.trials.held_out_acc.notna().all()
    assert len(ap.trials) == 4 and 'techniques × 2 folds' in ap.reason


def test_cli_folds_reach_the_search(tmp_path, capsys):
    # what folds do is tested on photos above (test_cross_validation_scores_every_label_once); here: the flag gets there
    seen = {}
    def spy(target, **kw): seen.update(kw, target=target); raise RuntimeError('stop here')
    with mock.patch('transfer_nb.autopilot.autopilot', spy):
        assert exit_code(['auto', '--target', 'uci', '--shots', '3', '--folds', '3', '--out', str(tmp_path/'ap')]) == 1
    assert seen['folds'] == 3 and seen['target'] == 'uci' and seen['shots'] == 3, seen
    assert 'stop here' in capsys.readouterr().err
    assert exit_code(['auto', '--target', 'uci', '--folds', '0']) == 2 and '--folds must be an int ≥ 1' in capsys.readouterr().err


def test_a_lead_inside_the_noise_is_said():
    from transfer_nb.autopilot import _lead_note
    # mnist → fashion, 100 labels, seed 1 (results/autopilot): scratch 61.5% against full 56.5% on 200 held-out images
    note = _lead_note('scratch', .615, 'full', .565, 200, 1)
    assert 'over `full` (5.0 points) is inside two standard errors of the difference (9.8 points' in note and '--folds 5' in note
    assert _lead_note('full', .9, 'scratch', .6, 200, 1) == '' and _lead_note('a', .61, 'b', .60, 5000, 1) != ''
    assert '--folds' not in _lead_note('scratch', .612, 'full', .611, 1000, 5)


def test_rank_backbones_lists_what_cannot_load(photos):
    from transfer_nb.folders import folder_domain
    d = folder_domain(photos, size=32)
    r = rank_backbones({'resnet18': nets()['resnet18'], 'missing': 'resnet999'}, d, max_per_class=4)
    assert list(r.backbone) == ['resnet18', 'missing'] and np.isfinite(r.LogME.iloc[0]) and 'resnet999' in r.error.iloc[1]
    assert r.images.iloc[0] == 8


def test_other_source_classes_get_a_new_head(tmp_path):
    ap = autopilot('mnist:5-9', shots=3, source='mnist:0-4', steps=5, source_steps=10, out=tmp_path/'ap')
    assert "are not the target's" in ap.reason and 'fixmatch' in ap.left_out and 'direct' in ap.left_out


def test_too_few_labels_fall_back(tmp_path):
    ap = autopilot('uci', shots=1, source='syn', steps=3, source_steps=5, out=tmp_path/'ap')
    assert ap.pick['technique'] == 'fine_tune' and 'unvalidated' in ap.reason and ap.data['validation'].startswith('none')


def test_budget_stops_the_search(photos, tmp_path):
    ap = autopilot(photos, shots=5, backbones={'resnet18': nets()['resnet18']}, steps=2, bs=4, budget=1e-6, out=tmp_path/'ap')
    assert len(ap.trials) == 1 and any('budget' in r for r in ap.left_out.values()) and 'budget' in ap.reason


def test_label_free_with_a_torchvision_source_network(photos, tmp_path):
    "No target label and no source data: a ResNet-18 that knows the classes adapts itself (direct, AdaBN, TENT, SHOT); IM on the pool decides."
    torch.manual_seed(0)
    src = torchvision.models.resnet18(num_classes=2); src.classes = ['blue', 'red']  # the folder's classes, in its order
    ap, search, final_pair = spied(target=photos, shots=0, source=src, steps=2, bs=4, out=tmp_path/'ap')
    search_is_clean(search, final_pair, labeled=False)
    assert list(ap.trials.technique) == ['direct', 'adabn', 'tent', 'shot'] and ap.trials.IM.notna().all(), ap.trials
    assert 'source data' in ap.left_out['dann'] and ap.data['labeled'] == 0 and 'label-free' in ap.data['validation']
    ok = ap.trials[ap.trials.status == 'ok']
    if len(ok): assert ap.pick['technique'] == ok.sort_values('IM', ascending=False, kind='stable').technique.iloc[0]
    assert ('judged by its own objective' in ap.reason) == (ap.pick['technique'] in ('shot', 'tent'))  # IM flatters what trains on it
    final = load_runs(tmp_path/'ap'/'final')
    assert len(final) == 1 and final.technique.iloc[0] == ap.pick['technique'] and final.status.iloc[0] != 'failed'
    assert load_learner(ap.learner).predict(sorted((photos/'red').glob('*.jpg'))[0])[0] in ('red', 'blue')


def test_bad_input(tmp_path, capsys):
    with pytest.raises(ValueError, match='budget'): autopilot('mnist', shots=5, source='syn', budget=-1)
    with pytest.raises(ValueError, match='backbones is empty'): autopilot('mnist', shots=5, source='syn', backbones=[])
    with pytest.raises(FileNotFoundError, match='neither a folder nor a built-in domain'): autopilot(str(tmp_path/'nope'), shots=5)
    with mock.patch('transfer_nb.autopilot.local_backbones', lambda: [dict(name='efficientnet-lite0', here=False, weights='…')]):
        with pytest.raises(ValueError, match='no candidate backbone is on this machine: looked for efficientnet-lite0'): autopilot(tmp_path, shots=5)
    assert exit_code(['auto', '--shots', '5']) == 2 and 'give the target' in capsys.readouterr().err
    assert exit_code(['auto', '--target', 'mnist', '--budget', '0']) == 2 and '--budget' in capsys.readouterr().err
    assert exit_code(['auto', '--target', 'nosuch']) == 2 and 'unknown domain' in capsys.readouterr().err
    with pytest.raises(ValueError, match='needs a source'): autopilot('mnist', shots=0)
    with pytest.raises(ValueError, match='give one backbone'): autopilot(tmp_path, shots=0, source=nets()['resnet18'], backbones=['efficientnet-lite0'])
    with pytest.raises(ValueError, match="validator must be one of IM, SND, TargetEntropy, got 'im'"): autopilot('mnist', shots=0, source='syn', validator='im')
    assert exit_code(['auto', '--target', 'mnist', '--shots', '0']) == 2 and '--shots 0 (no target labels) needs a source' in capsys.readouterr().err
    assert exit_code(['auto', '--target', 'mnist', '--shots', '-1']) == 2 and '--shots must be an int ≥ 0' in capsys.readouterr().err
    assert exit_code(['auto', '--target', 'mnist', '--source', 'syn', '--shots', '0', '--validator', 'acc']) == 2 and "invalid choice: 'acc'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_auto_on_photos_with_imagenet_backbone(tmp_path, capsys):
    "The README's line on a folder: an ImageNet EfficientNet-Lite0 (installed with the package), the pick exported and predicting."
    faces = write_folder(tmp_path/'digits', 'mnist:1,7', n=20)
    rc = exit_code(['auto', '--target-dir', str(faces), '--shots', '5', '--backbones', 'efficientnet-lite0', '--steps', '10', '--out', str(tmp_path/'ap'), '--quiet'])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert 'test accuracy' in out and (tmp_path/'ap'/'autopilot.md').exists()
    learn = load_learner(next((tmp_path/'ap'/'learner').glob('*.pkl')))
    assert learn.predict(sorted((faces/'1').glob('*.png'))[0])[0] in ('1', '7')
