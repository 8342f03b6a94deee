"Tests of `transfer_nb.finetune` as installed: each strategy's trainable split and training, bad inputs, regularisers, pretrained path."
import copy
import pytest, torch
from torch import nn
from fastai.learner import load_learner
from fastai.callback.core import Callback
from transfer_nb.core import DigitCNN, seed_everything, fit_classifier, evaluate
from transfer_nb.pairs import domain_pair
from transfer_nb.data import reseed
from transfer_nb.core import techniques
from transfer_nb.finetune import (transfer_learner, run_strategy, pretrained, L2SPCallback, BSSCallback, LwFCallback,
                                  Adapter, find_head, body_levels)


@pytest.fixture(scope='module')
def setup():
    p = domain_pair('uci', 'mnist', shots=5, bs=16)
    seed_everything(0)
    return p, fit_classifier(p.source, DigitCNN(width=8), epochs=1).model


def trainable_groups(learn):
    return [(sum(q.numel() for q in g if q.requires_grad), sum(q.numel() for q in g)) for g in learn.splitter(learn.model)]


FROZEN = {'direct': [True] * 6, 'linear_probe': [True] * 5 + [False], 'shared_specific': [True] * 2 + [False] * 4,
          'fine_tune': [False] * 6, 'gradual_unfreeze': [False] * 6, 'full': [False] * 6, 'scratch': [False] * 6}


@pytest.mark.parametrize('strategy', techniques('transfer_learner'))
def test_each_strategy_split_and_training(setup, strategy):
    p, src = setup
    learn = transfer_learner(src, p.target, strategy)
    g = trainable_groups(learn)
    assert len(g) == 6
    if strategy == 'adapter':
        assert all(0 < t < n for t, n in g[:-1]) and g[-1][0] == g[-1][1]
        assert sum(isinstance(m, Adapter) for m in learn.model.modules()) == 5
    else: assert [t == 0 for t, _ in g] == FROZEN[strategy]
    before = copy.deepcopy(learn.model.state_dict())
    with learn.no_bar(), learn.no_logging(): learn.fit_transfer(epochs=1, lr=1e-2)
    changed = {k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, learn.model.state_dict()[k])}
    if strategy == 'direct': assert not changed
    else: assert changed
    if strategy == 'linear_probe': assert {k.split('.')[0] for k in changed} == {'head'}  # BatchNorm statistics did not move either
    if strategy == 'shared_specific': assert not any(k.startswith(('body.0', 'body.1')) for k in changed)
    src_sd = src.state_dict()
    assert all(torch.equal(v, src_sd[k]) for k, v in learn.source_model.state_dict().items())  # the source is never modified


def test_scratch_is_freshly_initialised(setup):
    p, src = setup
    learn = transfer_learner(src, p.target, 'scratch')
    assert not torch.equal(learn.model.body[0][0].weight, src.body[0][0].weight)
    assert torch.equal(transfer_learner(src, p.target, 'full').model.body[0][0].weight, src.body[0][0].weight)


def test_bad_inputs(setup):
    p, src = setup
    with pytest.raises(ValueError, match="unknown strategy 'lora'; valid strategies: direct, linear_probe, fine_tune"):
        transfer_learner(src, p.target, 'lora')
    task = domain_pair('mnist:0-4', 'mnist:5-9', shots=3)
    with pytest.raises(ValueError, match="the source outputs 10 classes but the target has 5: pass new_head=True"):
        transfer_learner(src, task.target, 'full')
    colour = domain_pair('uci', 'mnistm', shots=2)
    with pytest.raises(ValueError, match="the source takes 1-channel images but the target's images are 3×28×28"):
        transfer_learner(src, colour.target, 'full')
    with pytest.raises(ValueError, match="cannot take the target's inputs of shape 1×28×28"):
        transfer_learner(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), p.target, 'full')
    with pytest.raises(TypeError, match="source must be an nn.Module or a pretrained network's name"):
        transfer_learner(42, p.target)


def test_new_head_keeps_source_body_and_head_copy(setup):
    p, src = setup
    task = domain_pair('mnist:0-4', 'mnist:5-9', shots=3, bs=8)
    learn = transfer_learner(src, task.target, 'fine_tune', new_head=True)
    assert learn.model.head.out_features == 5 and torch.equal(learn.model.body[2][0].weight, src.body[2][0].weight)
    r = run_strategy(src, task, 'linear_probe', epochs=1)
    assert set(r) == {'strategy', 'target_acc', 'source_acc', 'trainable', 'seconds', 'steps', 'train_loss', 'loss_curve', 'collapse_share'}
    assert r['trainable'] == 5 * 32 + 5 and r['source_acc'] is None  # a 10-digit source does not answer the task split's 5 source classes
    assert r['steps'] == len(task.target.train) and r['loss_curve'][-1][0] == r['steps'] and r['train_loss'] > 0  # one epoch's steps, all recorded


def test_source_view_is_the_source_before_training(setup):
    p, src = setup
    learn = transfer_learner(src, p.target, 'full')
    assert evaluate(learn.source_view(), p.source.valid) == evaluate(src, p.source.valid)


def _first_losses(src, dls, cbs, perturb=False, **kw):
    "(first training loss, validation loss) of one epoch at lr 0, so the weights stay and only the loss terms differ."
    seed_everything(0); reseed(dls, 0)  # same weights, same batches
    learn = transfer_learner(src, dls, 'full', cbs=cbs, **kw)
    if perturb:
        with torch.no_grad():
            for q in learn.model.body.parameters(): q.add_(0.05 * torch.randn_like(q))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 0.)
    return learn.recorder.losses[0].item(), learn.recorder.values[-1][1]  # values: train loss, valid loss, metrics


@pytest.mark.parametrize('cb,kw,perturb', [(BSSCallback(eta=1.), {}, False),
                                          (L2SPCallback(alpha=0., beta=1.), {'new_head': True}, False),  # beta decays the new head
                                          (LwFCallback(lam=5.), {}, True)])  # a moved body: the source head's outputs changed
def test_regularisers_add_to_the_training_loss_only(setup, cb, kw, perturb):
    p, src = setup
    dls = domain_pair('mnist:0-4', 'mnist:5-9', shots=5, bs=16).target if kw else p.target
    plain, reg = _first_losses(src, dls, [], perturb, **kw), _first_losses(src, dls, [cb], perturb, **kw)
    assert reg[0] > plain[0] + 1e-4
    assert reg[1] == pytest.approx(plain[1])  # the validation loss is the plain loss


def test_l2sp_keeps_weights_near_source(setup):
    p, src = setup
    def drift(cbs):
        seed_everything(0)
        learn = transfer_learner(src, p.target, 'full', cbs=cbs)
        with learn.no_bar(), learn.no_logging(): learn.fit_transfer(3, 1e-2)
        return sum((a - b).pow(2).sum().item() for a, b in zip(learn.model.body.parameters(), src.body.parameters()))
    assert drift([L2SPCallback(alpha=10.)]) < drift([]) / 2


def test_export_and_load_round_trip(setup, tmp_path):
    p, src = setup
    learn = transfer_learner(src, p.target, 'adapter', cbs=[LwFCallback()])
    with learn.no_bar(), learn.no_logging(): learn.fit_transfer(1, 1e-3)
    learn.export(tmp_path/'l.pkl')
    back = load_learner(tmp_path/'l.pkl')
    x = p.test.one_batch()[0][:4]
    assert torch.allclose(back.model.eval()(x.cpu()), learn.model.eval()(x).cpu(), atol=1e-6)


def test_pretrained_efficientnet_lite0_offline():
    p3 = domain_pair('uci', 'mnist', shots=1, channels=3, size=32, bs=8)
    m = pretrained('efficientnet-lite0')
    assert find_head(m) == 'net._fc' and len(body_levels(m, 'net._fc')) == 20
    learn = transfer_learner(m, p3.target, 'linear_probe')
    assert learn.model.net._fc.out_features == 10
    with learn.no_bar(), learn.no_logging(): learn.fit_transfer(1, 1e-3)
    assert torch.equal(learn.model.net._conv_stem.weight, m.net._conv_stem.weight)  # frozen ImageNet features


def test_missing_torchvision_weights_say_where(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"pretrained weights of 'resnet18' are not on this machine: looked for {tmp_path}/hub/checkpoints/resnet18-"):
        pretrained('resnet18')
    with pytest.raises(ValueError, match="unknown pretrained network 'resnet1000'"): pretrained('resnet1000')


def test_head_safety_refuses_another_task_with_the_same_number_of_classes(setup):
    "A 10-class source on a 10-class target of other classes must not silently reuse its head."
    p, src = setup
    from transfer_nb.data import Domain
    other = Domain('garments', p.tgt.x, p.tgt.y, [f'garment {i}' for i in range(10)])
    po = domain_pair(p.src, other, shots=3)
    with pytest.raises(ValueError, match="the source was trained on other classes .* pass new_head=True"): transfer_learner(src, po.target, 'fine_tune')
    assert transfer_learner(src, po.target, 'fine_tune', new_head=True).model.head.out_features == 10
    assert transfer_learner(src, po.target, 'fine_tune', keep_head=True).model.classes == other.classes


class Epochs(Callback):
    def before_fit(self): self.learn.seen = getattr(self.learn, 'seen', 0) + self.n_epoch


@pytest.mark.parametrize('strategy,epochs', [('gradual_unfreeze', 1), ('gradual_unfreeze', 20), ('fine_tune', 1), ('fine_tune', 5), ('adapter', 3)])
def test_every_strategy_spends_exactly_its_epochs(setup, strategy, epochs):
    "gradual_unfreeze once spent 6 epochs when asked for 1 and 18 for 20 (F13)."
    p, src = setup
    learn = transfer_learner(src, p.target, strategy, cbs=[Epochs()])
    with learn.no_bar(), learn.no_logging(): learn.fit_transfer(epochs, 1e-3)
    assert learn.seen == epochs


class NaNTerm(Callback):
    "A loss term that turns NaN, as a regulariser with a bad weight would."
    order = 60
    def after_loss(self):
        if self.training and self.iter == 1: self.learn.loss_grad = self.loss_grad + float('nan')


@pytest.mark.parametrize('how', ['lr', 'term'])
def test_nan_training_stops_loudly(setup, how):
    "A NaN learning rate or loss term stops the fit with a DivergenceError, never a result at chance level (F7)."
    from transfer_nb.core import DivergenceError
    p, src = setup
    if how == 'lr':
        with pytest.raises(ValueError, match="lr must be a finite number > 0, got nan"): transfer_learner(src, p.target, 'full').fit_transfer(2, float('nan'))
    learn = transfer_learner(src, p.target, 'full', cbs=[NaNTerm()] if how == 'term' else [])
    with learn.no_bar(), learn.no_logging(), pytest.raises(DivergenceError, match='training diverged at epoch 0'):
        learn.fit_one_cycle(2, float('nan') if how == 'lr' else 1e-3)  # fastai's own loop, past our checks of the arguments


def test_regulariser_arguments_are_checked():
    with pytest.raises(ValueError, match="T must be a finite number > 0, got 0"): LwFCallback(T=0)
    with pytest.raises(ValueError, match="alpha must be a finite number ≥ 0, got nan"): L2SPCallback(alpha=float('nan'))
    with pytest.raises(ValueError, match="k must be an int ≥ 1, got 0"): BSSCallback(k=0)


@pytest.mark.parametrize('strategy', techniques('transfer_learner'))
def test_exported_learner_predicts_new_images(setup, strategy, tmp_path):
    "Every strategy's learner reloads and runs get_preds, validate and predict on new images (F6)."
    p, src = setup
    learn = transfer_learner(src, p.target, strategy)
    with learn.no_bar(), learn.no_logging(): learn.fit_transfer(1, 1e-3)
    learn.export(tmp_path/'l.pkl')
    back = load_learner(tmp_path/'l.pkl')
    x = p.test.dataset.ts[0][:5].cpu()
    with back.no_bar():
        preds, _ = back.get_preds(dl=back.dls.test_dl(x))
        cls, idx, probs = back.predict(x[0])
        loss, acc = back.validate(dl=p.test.new(device='cpu'))
    assert preds.shape == (5, 10) and cls == str(int(idx)) and torch.allclose(probs.sum(), torch.tensor(1.)) and 0 <= acc <= 1


def test_one_callback_or_several_as_fastai_takes_them(setup):
    p, src = setup
    class Count(Callback):
        def before_fit(self): self.n = 0
        def after_batch(self): self.n += self.training
    one, two = Count(), Count()
    for cbs in (one, [two]):
        learn = transfer_learner(src, p.target, 'linear_probe', cbs=cbs)
        with learn.no_bar(), learn.no_logging(): learn.fit_transfer(1, 1e-3)
    assert one.n == two.n == len(p.target.train)
