"""No silent wrong result from a user's folders and models: classes matched by name, folders read as a photo viewer shows
them, every class used or reported, and collapse caught for every technique (issue 21). Each kind is tested beyond the
first instance found: another hidden folder name, another EXIF orientation, another reordering."""
import json, re
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from torch import nn
from transfer_nb.core import DigitCNN, seed_everything, fit_classifier, class_predictions
from transfer_nb.data import Domain
from transfer_nb.pairs import domain_pair, folder_pair
from transfer_nb.folders import folder_domain
from transfer_nb.domains import load_domain
from folders import loader_images
from transfer_nb.adapt import adapt_learner
from transfer_nb.finetune import transfer_learner
from transfer_nb.experiment import compare, why_not
from transfer_nb.report import results_table, write_report
from transfer_nb.cli import main


def digits(root, classes, n=12, spec='mnist'):
    "A folder with one sub-folder of PNG digits per class name (each name a digit)."
    d = load_domain(spec)
    for c in classes:
        (root/c).mkdir(parents=True)
        for i in torch.where(d.y == int(c))[0][:n].tolist(): Image.fromarray((d.x[i, 0].numpy() * 255).astype(np.uint8)).save(root/c/f'{i}.png')
    return root


# ---- classes correspond by name ----

def test_classes_of_a_partial_target_are_not_matched_by_position(tmp_path):
    "Source 0,1,2,3 and target 0,1,3: label 2 of the target is class '3'. Adapting one head over both would score by position."
    pair = folder_pair(digits(tmp_path/'src', '0123'), digits(tmp_path/'tgt', '013'))
    with pytest.raises(ValueError, match=re.escape("dann trains one head on the source's classes and scores the target with it, and the classes differ "
                                                   "(source ['0', '1', '2', '3'], target ['0', '1', '3'])")):
        adapt_learner(DigitCNN(n_out=4, width=4), pair, 'dann')
    assert why_not('fine_tune', pair) is None and why_not('scratch', pair) is None  # a new head for the target's classes
    for t in ('dann', 'source_only', 'fixmatch', 'cdan+mcc', 'source_and_target'):
        assert "they differ (source 0, 1, 2, 3; target 0, 1, 3)" in why_not(t, pair)
    assert "the model's classes are not the target's" in why_not('direct', pair)


def test_the_command_refuses_them_too(tmp_path, capsys):
    src, tgt = digits(tmp_path/'src', '0123'), digits(tmp_path/'tgt', '013')
    try: code = main(['compare', '--source-dir', str(src), '--target-dir', str(tgt), '--strategies', 'source_only,dann,fine_tune', '--out', str(tmp_path/'r')])
    except SystemExit as e: code = e.code
    err = capsys.readouterr().err
    assert code == 1 and 'source_only cannot run here' in err and 'dann cannot run here' in err and 'fine_tune cannot' not in err
    assert not (tmp_path/'r').exists()


def test_the_same_classes_in_another_order_are_matched_by_name():
    "A target Domain whose class list is the source's in another order: its labels are put in the source's order."
    d = load_domain('uci:0-2')
    flip = Domain('flipped', d.x, 2 - d.y, ['2', '1', '0'])  # the same images and classes, listed in reverse
    p = domain_pair(d, flip, shots=3)
    assert p.same_classes and p.tgt.classes == ['0', '1', '2']
    assert torch.equal(p.tgt.y, d.y)  # every image is labelled with its own class again
    assert "target classes put in the source's order (matched by name)" in repr(p)


def test_a_kept_head_follows_the_class_names():
    "A source that recorded classes a, b, c fine-tuned on a target listing c, a, b: the head's rows follow the names."
    p = domain_pair('uci:0-2', 'mnist:0-2', shots=3)
    seed_everything(0)
    src = fit_classifier(p.source, DigitCNN(width=4, n_out=3), 1).model
    src.classes = ['1', '2', '0']  # as if it had been trained with its classes in this order
    learn = transfer_learner(src, p.target, 'direct')
    x = loader_images(p.test)[:16]
    src.eval(); learn.model.eval()
    with torch.no_grad(): a, b = src(x), learn.model(x)
    for j, name in enumerate(p.tgt.classes): assert torch.allclose(b[:, j], a[:, src.classes.index(name)])


def test_a_head_of_unknown_classes_is_not_reused_silently():
    "A digit network's weights loaded into a fresh module (its classes unrecorded) on 10 clothing-like classes: refused unless asked."
    p = domain_pair('uci', 'mnist', shots=2)
    trained = fit_classifier(p.source, DigitCNN(width=4), 1).model
    fresh = DigitCNN(width=4); fresh.load_state_dict(trained.state_dict())  # how every outside checkpoint arrives
    assert not hasattr(fresh, 'classes')
    with pytest.raises(ValueError, match="the source does not record its classes .* pass new_head=True"): transfer_learner(fresh, p.target, 'fine_tune')
    assert transfer_learner(fresh, p.target, 'fine_tune', keep_head=True).model.classes == p.tgt.classes  # said explicitly: kept
    assert "does not record its classes" in why_not('direct', p, fresh)
    with pytest.raises(ValueError, match="direct cannot run here: it applies the model's own head to the target, and the model does not record its classes"):
        compare(p, ['direct', 'fine_tune'], seeds=(0,), shots=(2,), model=fresh, steps=2)
    df = compare(p, ['fine_tune'], seeds=(0,), shots=(2,), model=fresh, steps=2)
    assert df.status.tolist() != ['failed'], df.get('error')  # fine-tuning gives it a new head


# ---- folders as a photo viewer shows them ----

def save(path, arr=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), np.uint8) if arr is None else arr).save(path, **kw)


@pytest.mark.parametrize('debris', ['.ipynb_checkpoints', '.thumbnails', '__MACOSX'])
def test_hidden_folders_and_tool_debris_are_not_classes(tmp_path, debris):
    for c in 'ab':
        for i in range(3): save(tmp_path/c/f'{i}.png')
    save(tmp_path/debris/'x.png')  # a folder beside the classes
    save(tmp_path/'a'/'.ipynb_checkpoints'/'0-checkpoint.png')  # a checkpoint copy inside a class
    save(tmp_path/'a'/'.hidden.png')
    (tmp_path/'b'/'._1.png').write_bytes(b'\x00\x05\x16\x07 AppleDouble resource fork, not an image')  # macOS's AppleDouble file
    d = folder_domain(tmp_path)
    assert d.classes == ['a', 'b'] and d.counts == [3, 3]
    assert 'skipped 4 hidden or tool files' in d.about


@pytest.mark.parametrize('orientation,turn', [(6, -1), (8, 1), (3, 2)])
def test_photos_are_loaded_upright(tmp_path, orientation, turn):
    "A JPEG with an EXIF orientation (6: a portrait phone photo) is loaded as a viewer shows it."
    a = np.zeros((20, 40), np.uint8); a[:, :10] = 255  # landscape as stored, bright on the left
    for c in 'ab':
        im = Image.fromarray(a); ex = im.getexif(); ex[0x0112] = orientation
        (tmp_path/c).mkdir(); im.save(tmp_path/c/'p.jpg', exif=ex, quality=95)
    x = folder_domain(tmp_path).x[0, 0].numpy()
    want = np.rot90(a / 255., turn)  # np.rot90 turns anticlockwise: orientation 6 is a quarter turn clockwise
    assert x.shape == want.shape and np.abs(x - want).mean() < 0.05


def test_an_empty_class_folder_is_an_error_naming_it(tmp_path):
    for c in 'ab':
        for i in range(3): save(tmp_path/c/f'{i}.png')
    (tmp_path/'c').mkdir()
    with pytest.raises(ValueError, match=r"class folder 'c' in .* holds no image transfer_nb reads \(it is empty\)"): folder_domain(tmp_path)
    (tmp_path/'c'/'x.heic').write_bytes(b'....'); (tmp_path/'c'/'y.heic').write_bytes(b'....')
    with pytest.raises(ValueError, match=r"class folder 'c' .* \(2 files: x.heic, y.heic\); readable: \.png"): folder_domain(tmp_path)


def test_the_pair_and_the_report_show_classes_and_split_counts(tmp_path):
    pair = folder_pair(None, digits(tmp_path/'imgs', '017', n=20))
    assert re.search(r"classes   0, 1, 7; test images per class: 4 each", repr(pair))
    assert pair.split_counts()['test'] == {'0': 4, '1': 4, '7': 4}
    df = compare(pair, ['fine_tune'], seeds=(0,), shots=(2,), model=fit_classifier(pair.target, DigitCNN(width=4, n_out=3), 1).model, steps=2, out=tmp_path/'r')
    md = write_report(df, tmp_path/'r').read_text()
    assert 'Target classes (3): 0, 1, 7; images per class: test 4 (12 in all), valid 2 (6 in all), unlabeled pool 14 (42 in all).' in md
    assert '`imgs` (target only), images 1×28×28 (from image folder imgs/ (60 images))' in md
    assert json.loads((tmp_path/'r'/'config.json').read_text())['split_counts']['test'] == {'0': 4, '1': 4, '7': 4}


# ---- collapse is caught for every technique ----

def test_a_collapsed_fine_tuning_run_is_reported_as_collapsed():
    "A fine-tuning run whose model gives one class to the whole pool is a collapsed result, not an ok one averaged in."
    p = domain_pair('uci', 'mnist', shots=2)
    m = DigitCNN(width=4); m.classes = list(p.tgt.classes)
    with torch.no_grad(): m.head.bias[3] = 1e4  # every image: class 3
    assert (class_predictions(m, p.pool_sample()) == 3).all()
    df = compare(p, ['full'], seeds=(0,), shots=(2,), model=m, steps=1, lr=1e-9)
    st = df.set_index('technique')
    assert st.loc['full', 'status'] == 'collapsed' and st.loc['full', 'collapse_share'] == 1.
    s = results_table(df).set_index('technique')
    assert s.loc['full', 'collapsed'] == 1 and s.loc['full', 'seeds'] == 0


# ---- identical images never straddle a split ----

def test_copies_stay_on_one_side_of_every_split(tmp_path):
    "A folder where every image is saved twice, and a target that is a subset of the source: no test image has a copy it trains on."
    src = digits(tmp_path/'all', '01', n=60)
    for c in '01':
        for f in list((src/c).iterdir()): (src/c/f'copy-{f.name}').write_bytes(f.read_bytes())  # every image twice
    sub = tmp_path/'sub'
    for c in '01':
        (sub/c).mkdir(parents=True)
        for f in sorted((src/c).iterdir())[:30]: (sub/c/f.name).write_bytes(f.read_bytes())
    p = folder_pair(src, sub, shots=2)
    key = lambda x: [r.numpy().tobytes() for r in x]
    test = set(key(loader_images(p.test)))
    for dl in (p.target.train, p.target.valid, p.source.train, p.source.valid):
        assert not test & set(key(loader_images(dl))), "a test image has an identical copy in a split that trains or selects"
    assert not test & set(key(loader_images(p.unlabeled)))
    assert any('images are copies of others; each image and its copies kept in one split' in c for c in p.conversions)
    assert any('images left out, identical to target test images' in c for c in p.conversions)
    twice = domain_pair(None, folder_domain(src), shots=2)  # the target itself holds every image twice
    test = set(key(loader_images(twice.test)))
    for dl in (twice.target.train, twice.target.valid, twice.unlabeled): assert not test & set(key(loader_images(dl)))
    assert any(c.startswith('target: 120 images are copies of others') for c in twice.conversions)
    df = compare(p, ['fine_tune'], seeds=(0,), shots=(2,), steps=1, source_steps=2, width=4, out=tmp_path/'r')
    md = write_report(df, tmp_path/'r').read_text()
    assert re.search(r'Data changes: source: \d+ images are copies of others; each image and its copies kept in one split; source: \d+ images left out, identical to target test images', md)


def test_a_training_epoch_never_ends_on_a_batch_of_one():
    "BatchNorm cannot train on one image: a shuffled loader whose last batch would hold one leaves it out (the next epoch reshuffles)."
    from transfer_nb.data import TensorDL, Tensors
    x, y = torch.rand(9, 1, 4, 4), torch.arange(9) % 3
    train, valid = TensorDL(Tensors(x, y), bs=4, shuffle=True), TensorDL(Tensors(x, y), bs=4)
    assert len(train) == 2 and [len(b[0]) for b in train] == [4, 4]
    assert len(valid) == 3 and [len(b[0]) for b in valid] == [4, 4, 1]  # evaluation sees every image
    p = domain_pair('uci:0-2', 'mnist:0-2', shots=3, bs=4)  # 9 labeled images, batches of 4
    assert all(len(b[0]) > 1 for b in p.target.train)
    m = fit_classifier(p.target, DigitCNN(width=4, n_out=3), 1).model  # trains: no "Expected more than 1 value per channel"
    assert m.classes == ['0', '1', '2']


# ---- networks and checkpoints as they arrive ----

def test_a_fine_tuned_checkpoint_brings_its_own_head_size(tmp_path):
    "--model FILE --arch resnet18 with a checkpoint fine-tuned to 10 classes: the head is built at the checkpoint's size."
    import torchvision
    from transfer_nb.core import find_head, get_module
    from transfer_nb.finetune import pretrained
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path/'mine.pth')
    m = pretrained('resnet18', weights=tmp_path/'mine.pth')
    assert get_module(m, find_head(m, x=torch.rand(2, 3, 64, 64))).out_features == 10


def test_an_older_torchvision_weight_file_is_found_by_name(tmp_path):
    "The hub cache holds MobileNetV3-Large's first release (IMAGENET1K_V1), not the default (V2): it is used, not reported missing."
    import torchvision
    from transfer_nb.finetune import pretrained, local_backbones
    v1 = torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1
    assert torchvision.models.get_model_weights('mobilenet_v3_large').DEFAULT != v1
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        (tmp_path/'checkpoints').mkdir()
        sd = torchvision.models.mobilenet_v3_large().state_dict()
        torch.save(sd, tmp_path/'checkpoints'/Path(v1.url).name)
        m = pretrained('mobilenet_v3_large')
        assert torch.equal(m.net.features[0][0].weight, sd['features.0.0.weight'])
        assert 'mobilenet_v3_large' in {b['name'] for b in local_backbones() if b['here']}
    finally: torch.hub.set_dir(old)


def test_digits_of_another_size_are_pointed_to_mnist_frame():
    small = Domain('small', torch.rand(20, 1, 16, 16), torch.arange(20) % 10, [str(i) for i in range(10)])
    with pytest.raises(ValueError, match="pass size=.* for digits, mnist_frame frames them as MNIST does"): domain_pair(small, 'mnist')


def test_loss_func_passes_through_and_adapt_learner_checks_the_head():
    from fastai.losses import LabelSmoothingCrossEntropyFlat
    from transfer_nb.core import classifier_learner
    p = domain_pair('uci:0-2', 'mnist:0-2', shots=3)
    learn = classifier_learner(p.target, DigitCNN(width=4, n_out=3), loss_func=LabelSmoothingCrossEntropyFlat())
    assert isinstance(learn.loss_func, LabelSmoothingCrossEntropyFlat)
    with pytest.raises(ValueError, match=r"the model outputs 10 classes but the source has 3 \(0, 1, 2\)"): adapt_learner(DigitCNN(width=4), p, 'dann')
    with pytest.raises(ValueError, match="the model outputs 10 classes but the data has 3"): classifier_learner(p.target, DigitCNN(width=4))


class DictNet(nn.Module):
    "A user's network that returns its logits and an auxiliary output in a dict, as Hugging Face-style models do."
    def __init__(self, n=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head, self.aux = nn.Linear(8, n), nn.Linear(8, n)
    def forward(self, x): f = self.body(x); return {'logits': self.head(f), 'aux': self.aux(f)}


@pytest.mark.parametrize('make', [pytest.param(lambda: __import__('torchvision').models.googlenet(num_classes=3, aux_logits=True, init_weights=False),
                                               id='googlenet with auxiliary heads', marks=pytest.mark.slow),
                                  pytest.param(DictNet, id='a network returning a dict')])
def test_networks_with_several_outputs_train_on_their_main_logits(make):
    from transfer_nb.core import body_levels, find_head, main_output, MainOutput
    p = domain_pair('uci:0-2', 'mnist:0-2', shots=3, size=64, channels=3)
    net = make()
    x = loader_images(p.test)[:4]
    w = main_output(net, x)
    assert isinstance(w, MainOutput) and torch.is_tensor(w.train()(x)) and w(x).shape == (4, 3)
    head = find_head(w, x=x)
    assert head in ('net.fc', 'net.head') and not [l for l in body_levels(w, head) if 'aux' in l.lower()]  # auxiliary heads are no levels
    learn = transfer_learner(net, p.target, 'fine_tune', keep_head=True)
    with learn.no_bar(), learn.no_logging(): learn.fit_transfer(1, 1e-3)
    assert isinstance(learn.model, MainOutput)
    m = fit_classifier(p.source, make(), 1).model  # a source trained through fastai's loop
    assert m.classes == ['0', '1', '2']
    learn = adapt_learner(m, p, 'dann', validators=('IM',))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    assert learn.recorder.values[-1][-1] is not None


@pytest.mark.parametrize('make,conv', [(lambda: __import__('torchvision').models.squeezenet1_1(num_classes=3), 'classifier.1'),
                                      (lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()), '2')],
                         ids=['squeezenet', 'a network ending in a 1x1 convolution'])
def test_a_convolution_head_is_named_with_what_to_do(make, conv):
    p = domain_pair('uci:0-2', 'mnist:0-2', shots=3, size=64, channels=3)
    with pytest.raises(ValueError, match=rf"classifies with a 1×1 convolution \({re.escape(conv)}\), not a Linear layer: give it a Linear head on pooled features"):
        transfer_learner(make(), p.target, 'fine_tune', new_head=True)


def test_a_torchvision_vit_has_one_level_per_block():
    "torchvision keeps a ViT's blocks in encoder.layers: each block is a level (it was one level for the whole encoder)."
    import torchvision
    from transfer_nb.core import body_levels, find_head
    m = torchvision.models.vit_b_16()
    levels = body_levels(m, find_head(m))
    assert levels == ['conv_proj', *[f'encoder.layers.encoder_layer_{i}' for i in range(12)], 'encoder.ln']


def test_a_class_too_small_to_split_is_refused_with_the_number_needed():
    d = load_domain('uci:0-2')
    keep = torch.cat([torch.where(d.y == 0)[0][:2], torch.where(d.y != 0)[0]])  # class '0' keeps 2 images
    with pytest.raises(ValueError, match=r"target class '0' has 2 images: too few to split .* every class needs at least 3 distinct images"):
        domain_pair(None, d.subset(keep), shots=1)


def test_an_explicit_class_map_matches_differently_named_classes():
    "Source classes 0, 1, 2; the target calls them zero, one, two: class_map says which is which (by name, in any order)."
    src, t = load_domain('uci:0-2'), load_domain('mnist:0-2')
    named = Domain('words', t.x, t.y, ['zero', 'one', 'two'])
    assert not domain_pair(src, named).same_classes
    p = domain_pair(src, named, class_map={'two': '2', 'zero': '0', 'one': '1'})
    assert p.same_classes and torch.equal(p.tgt.y, t.y) and why_not('dann', p) is None
    assert "target classes renamed to the source's: two → 2, zero → 0, one → 1" in repr(p)
    with pytest.raises(ValueError, match=r"class_map \{'three': '3'\} names classes that are not there"): domain_pair(src, named, class_map={'three': '3'})
