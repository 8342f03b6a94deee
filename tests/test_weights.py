"Tests of `transfer_nb.weights` as installed: exactness, adaptation, sharing, the rule, Net2Net, KD and safe loading."
import copy, warnings
from pathlib import Path
import pytest, torch, torchvision
from fastai.callback.core import Callback
from torch import nn
import torch.nn.functional as F
from transfer_nb.core import DigitCNN, RegressionMLP, seed_everything, classifier_learner
from transfer_nb.pairs import domain_pair
from transfer_nb.weights import (transfer_weights, share_parameters, weight_transfer, interpolate_weights, alpha_sweep,
                                 net2wider, net2deeper, DistillCallback, load_weights)
from transfer_nb.core import get_module, ModuleNotFound


def trained_like(m, n=3, shape=(16, 1, 28, 28)):
    "`m` with non-trivial BatchNorm statistics, in eval mode."
    with torch.no_grad():
        for _ in range(n): m.train()(torch.rand(*shape))
    return m.eval()


@pytest.fixture
def src():
    seed_everything(0)
    return trained_like(DigitCNN(width=8))


def test_identical_architecture_reproduces_outputs_exactly(src):
    dst = DigitCNN(width=8)
    rep = transfer_weights(src, dst)
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(dst.eval()(x), src(x)) and rep.frac == 1
    assert set(rep.to_df().status) == {'copied'}
    assert {r['kind'] for r in rep.rows} == {'param', 'buffer'}  # BatchNorm statistics are moved too


def test_resnet18_into_resnet18_by_name_is_exact():
    a, b = trained_like(torchvision.models.resnet18(num_classes=4), shape=(4, 3, 32, 32)), torchvision.models.resnet18(num_classes=4)
    transfer_weights(a, b, match='name')
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(a(x), b.eval()(x))


def test_report_accounts_for_every_target_tensor(src):
    dst = torchvision.models.resnet34(num_classes=10)
    rep = transfer_weights(torchvision.models.resnet18(num_classes=10), dst, match='name')
    df = rep.to_df()
    assert list(df.target) == list(dst.state_dict())
    assert rep.numel(('copied', 'adapted', 'new', 'mismatch')) == sum(p.numel() for p in dst.parameters())
    assert 0.5 < rep.frac < 1 and 'layer1.2.conv1.weight' in set(df[df.status == 'new'].target)


@pytest.mark.parametrize('c_src,c_dst', [(1, 3), (3, 1), (3, 4), (4, 3)])
def test_input_channels_adapted_so_grey_inputs_agree(c_src, c_dst):
    seed_everything(1)
    s = trained_like(DigitCNN(n_in=c_src, width=8), shape=(8, c_src, 28, 28))
    d = DigitCNN(n_in=c_dst, width=8)
    rep = transfer_weights(s, d)
    grey = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(d.eval()(grey.expand(-1, c_dst, -1, -1)), s(grey.expand(-1, c_src, -1, -1)), atol=1e-5, rtol=1e-5)
    assert rep.to_df().set_index('target').loc['body.0.0.weight', 'status'] == 'adapted'


def test_new_head_is_reported_and_left_fresh(src):
    d = DigitCNN(width=8, n_out=5)
    fresh = d.head.weight.clone()
    rep = transfer_weights(src, d).to_df().set_index('target')
    assert rep.loc['head.weight', 'status'] == 'new' and 'new head: the source has 10 outputs, the target 5' == rep.loc['head.weight', 'note']
    assert torch.equal(d.head.weight, fresh)


def test_nothing_in_common_warns_and_reports_zero():
    with pytest.warns(UserWarning, match='nothing was transferred'):
        rep = transfer_weights(nn.GRU(2, 3), DigitCNN(width=8))
    assert rep.frac == 0 and 'TransferReport: 0.0%' in repr(rep)


def test_unadaptable_shapes_are_listed_not_skipped():
    with pytest.warns(UserWarning, match='cannot be adapted'):
        rep = transfer_weights(DigitCNN(width=16), DigitCNN(width=8), match='name')
    mism = rep.to_df().query("status == 'mismatch'")
    assert 'body.1.0.weight' in set(mism.target) and mism.note.str.contains('vs source').all()


def test_layer_map_transfers_only_named_levels_and_checks_names(src):
    d = DigitCNN(width=8)
    rep = transfer_weights(src, d, layer_map={'body.0': 'body.0'})
    assert torch.equal(d.body[0][0].weight, src.body[0][0].weight) and not torch.equal(d.body[1][0].weight, src.body[1][0].weight)
    assert set(rep.to_df().query("status == 'copied'").target.str[:6]) == {'body.0'}
    with pytest.raises(ModuleNotFound, match="DigitCNN has no module 'bod.0'; close matches: 'body.0'"):
        transfer_weights(src, d, layer_map={'bod.0': 'body.0'})
    with pytest.raises(KeyError, match="no module 'body.42'"): transfer_weights(src, d, layer_map={'body.0': 'body.42'})
    with pytest.raises(ValueError, match="match must be 'auto', 'name' or 'shape'"): transfer_weights(src, d, match='fuzzy')


def test_shared_parameters_stay_identical_after_a_step():
    a, b = DigitCNN(width=8), DigitCNN(width=8, n_out=3)
    share_parameters(a, b, {'body': 'body'})
    opt = torch.optim.Adam(list(b.parameters()), lr=0.1)
    F.cross_entropy(b(torch.rand(4, 1, 28, 28)), torch.tensor([0, 1, 2, 0])).backward(); opt.step()
    for pa, pb in zip(a.body.parameters(), b.body.parameters()): assert pa is pb
    with pytest.raises(ValueError, match="cannot share 'head'"): share_parameters(a, b, 'head')


def test_weight_transfer_matches_formula_elementwise():
    ws, wt = torch.randn(4, 5), torch.randn(4, 5)
    for al in (-1.0, 0.0, 0.3, 2.0):
        torch.testing.assert_close(weight_transfer(ws, wt, al), ws + al * (ws - wt))
    with pytest.raises(ValueError, match='alpha must be a finite number'): weight_transfer(ws, wt, float('inf'))
    with pytest.raises(ValueError, match='alpha must be a finite number'): weight_transfer(ws, wt, None)


def test_interpolation_endpoints_and_models(src):
    other = trained_like(DigitCNN(width=8))
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(interpolate_weights(src, other, 0.).eval()(x), src(x))
    assert torch.equal(interpolate_weights(src, other, 1.).eval()(x), other(x))
    sd = weight_transfer(src.state_dict(), other.state_dict(), 5.)
    assert all((v >= 0).all() for k, v in sd.items() if k.endswith('running_var'))  # no negative variances from extrapolation


def test_alpha_sweep_evaluates_each_loader():
    p = domain_pair('uci', 'mnist', shots=2)
    a, b = DigitCNN(width=4), DigitCNN(width=4)
    df = alpha_sweep(a, b, [0, 0.5, 1], {'target': p.test, 'source': p.source.valid})
    assert list(df.columns) == ['alpha', 'target', 'source'] and df.target.between(0, 1).all()


def test_net2net_preserves_function():
    seed_everything(2)
    m = trained_like(DigitCNN(width=8), shape=(32, 1, 28, 28))
    x = torch.rand(6, 1, 28, 28)
    w = net2wider(m, 'body.4.0', 'head', 40, bn='body.4.1')
    dd = net2deeper(w, 'body.3')
    torch.testing.assert_close(w.eval()(x), m(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dd.eval()(x), m(x), atol=1e-5, rtol=1e-5)
    assert w.head.in_features == 40 and m.head.in_features == 32  # the input model is untouched
    mlp = RegressionMLP(n_in=2, hidden=(3,)); xm = torch.rand(4, 2)
    torch.testing.assert_close(net2wider(mlp, 'body.0.0', 'head', 7)(xm), mlp(xm), atol=1e-5, rtol=1e-5)


def test_net2net_bad_input():
    m = DigitCNN(width=8)
    with pytest.raises(ValueError, match="width must be larger"): net2wider(m, 'body.0.0', 'body.1.0', 4)
    with pytest.raises(TypeError, match="widens a Linear or Conv2d"): net2wider(m, 'body.0.1', 'body.1.0', 12)
    with pytest.raises(KeyError, match="no module 'body.0.9'"): net2deeper(m, 'body.0.9')


def test_distillation_inside_learner_fit_with_other_architecture():
    p = domain_pair('uci', 'mnist', shots=3, bs=16, channels=3)
    teacher = torchvision.models.resnet18(num_classes=10)
    before = copy.deepcopy(teacher.state_dict())
    student = DigitCNN(n_in=3, width=4)
    s_before = copy.deepcopy(student.state_dict())
    learn = classifier_learner(p.target, student, cbs=DistillCallback(teacher, T=2, alpha=1.0))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2)
    assert not teacher.training and all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in s_before.items())


def test_distillation_loss_is_the_soft_target_loss():
    "With alpha=1 the training loss equals T²·KL(teacher ‖ student) on the batch."
    p = domain_pair('uci', 'mnist', shots=3, bs=30)
    teacher, student = DigitCNN(width=4), DigitCNN(width=4)
    cb = DistillCallback(teacher, T=3, alpha=1.0)
    learn = classifier_learner(p.target, student, cbs=cb)
    seen = []
    class Grab(Callback):
        order = 70
        def after_loss(self):
            if self.training: seen.append((self.xb[0].clone(), self.learn.loss.detach().clone()))
    learn.add_cb(Grab())
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 0.)  # lr 0: weights do not move
    x, loss = seen[0]
    with torch.no_grad(): t, s = teacher.eval()(x), student.train()(x)  # the student's BatchNorm as during the fit
    kl = F.kl_div(F.log_softmax(s / 3, 1), F.log_softmax(t / 3, 1), log_target=True, reduction='batchmean') * 9
    torch.testing.assert_close(loss, kl, atol=1e-4, rtol=1e-4)


def test_pickled_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self): return (Path.touch, (tmp_path/'pwned',))
    torch.save({'w': torch.ones(2), 'p': Payload()}, tmp_path/'evil.pt')
    with pytest.raises(ValueError, match="refused to load .*unpickling it could run arbitrary code"): load_weights(tmp_path/'evil.pt')
    assert not (tmp_path/'pwned').exists()
    torch.save(DigitCNN(width=4), tmp_path/'whole_model.pt')  # a pickled module, not plain weights
    with pytest.raises(ValueError, match="refused to load"): load_weights(tmp_path/'whole_model.pt')
    with pytest.raises(FileNotFoundError, match="no weights file"): load_weights(tmp_path/'nope.pt')


def test_weights_files_round_trip(tmp_path, src):
    torch.save({'model': src.state_dict()}, tmp_path/'w.pth')
    d = DigitCNN(width=8)
    assert transfer_weights(load_weights(tmp_path/'w.pth'), d).frac == 1
    from safetensors.torch import save_file
    save_file(src.state_dict(), str(tmp_path/'w.safetensors'))
    assert torch.equal(load_weights(tmp_path/'w.safetensors')['body.0.0.weight'], src.body[0][0].weight)


class ExampleNet(nn.Module):
    "The layout of PyTorch's MNIST example: conv features with biases, then an MLP classifier."
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))
    def forward(self, x): return self.classifier(self.features(x))


def test_report_says_how_each_tensor_matched_and_what_went_unused():
    "A head matched by shape alone is flagged, unused source tensors are listed, dropped biases noted, new rows explained."
    rep = transfer_weights(ExampleNet(), DigitCNN())
    df = rep.to_df().set_index('target')
    assert df.loc['head.weight', 'how'] == 'shape' and df.loc['head.weight', 'source'] == 'classifier.2.weight'
    assert 'head.weight' in {r['target'] for r in rep.shape_only} and 'shape-only' in repr(rep)
    assert {u['source'] for u in rep.unused} == {'features.0.bias', 'features.2.bias', 'classifier.0.weight', 'classifier.0.bias'}
    assert rep.unused_frac > 0.95 and 'unused' in repr(rep)
    assert "the source's features.0.bias was dropped: the target layer has no bias" in df.loc['body.0.0.weight', 'note']
    assert all(df[df.status == 'new'].note.str.len() > 0)  # every new row gives a reason
    assert df.loc['body.1.1.running_mean', 'note'] == 'the source has no tensor named *.running_mean'


def test_prefixes_of_wrappers_and_ddp_checkpoints_are_aligned(tmp_path):
    from transfer_nb.core import Normalized
    src = DigitCNN(width=8)
    rep = transfer_weights(Normalized(src, [0.5], [0.2]), DigitCNN(width=8))
    assert rep.prefix == ('net.', '') and rep.frac == 1.
    torch.save({'module.' + k: v for k, v in src.state_dict().items()}, tmp_path/'ddp.pt')
    dst = DigitCNN(width=8)
    assert transfer_weights(load_weights(tmp_path/'ddp.pt'), dst).frac == 1. and torch.equal(dst.head.weight, src.head.weight)


def test_load_weights_explains_damaged_files_and_takes_any_suffix_case(tmp_path):
    "Truncated and empty files get a message, not OSError/EOFError; .SAFETENSORS is safetensors (F12)."
    from safetensors.torch import save_file
    sd = DigitCNN(width=4).state_dict()
    torch.save(sd, tmp_path/'ok.pt'); save_file(sd, str(tmp_path/'ok.safetensors'))
    (tmp_path/'cut.pt').write_bytes((tmp_path/'ok.pt').read_bytes()[:500])
    (tmp_path/'empty.pt').write_bytes(b'')
    (tmp_path/'MODEL.SAFETENSORS').write_bytes((tmp_path/'ok.safetensors').read_bytes())
    with pytest.raises(ValueError, match="is not a readable PyTorch checkpoint \\(truncated or damaged\\?\\)"): load_weights(tmp_path/'cut.pt')
    with pytest.raises(ValueError, match="is empty \\(0 bytes\\)"): load_weights(tmp_path/'empty.pt')
    assert torch.equal(load_weights(tmp_path/'MODEL.SAFETENSORS')['head.weight'], sd['head.weight'])
