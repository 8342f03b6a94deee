"Tests of `transfer_nb.adapt` as installed: gradient reversal, the losses, AdaBN, every method in Learner.fit with export, bad input, divergence."
import copy
import pytest, torch
from torch import nn
from fastai.learner import load_learner
from transfer_nb.core import DigitCNN, seed_everything, fit_classifier, evaluate
from transfer_nb.data import domain_pair
from transfer_nb.adapt import (METHODS, VALIDATORS, adapt_learner, adabn, GradReverse, grl_coeff, mmd, coral, WithDiscriminator,
                               DivergenceError, im_score, snd_score, entropy_score, target_outputs)


@pytest.fixture(scope='module')
def pair(): return domain_pair('uci', 'mnist', bs=32)


def test_gradient_reversal_flips_the_gradient_reaching_the_body():
    torch.manual_seed(0)
    body, disc = nn.Linear(5, 4), nn.Linear(4, 1)
    x = torch.randn(8, 5)
    for coeff in (0.3, 1.0):
        grads = []
        for rev in (False, True):
            body.zero_grad()
            f = body(x)
            disc(GradReverse.apply(f, coeff) if rev else f).sum().backward()
            grads.append(body.weight.grad.clone())
        torch.testing.assert_close(grads[1], -coeff * grads[0])
    assert grl_coeff(0) == 0 and 0.99 < grl_coeff(1) <= 1


def test_mmd_and_coral_zero_for_identical_positive_for_shifted():
    torch.manual_seed(1)
    a = torch.randn(100, 8)
    assert mmd(a, a).abs() < 1e-6 and coral(a, a).abs() < 1e-9
    for shift in (0.5, 2.0):
        assert mmd(a, a + shift) > 1e-3
        assert coral(a, a * (1 + shift)) > 1e-4
    assert mmd(a, a + 2) > mmd(a, a + 0.5)


def test_adabn_changes_only_batchnorm_buffers(pair):
    m = fit_classifier(pair.source, DigitCNN(width=4), 1).model.train()
    before = copy.deepcopy(m.state_dict())
    adabn(m, pair.unlabeled)
    changed = {k for k, v in before.items() if not torch.equal(v, m.state_dict()[k])}
    assert changed and all(k.rsplit('.', 1)[1] in ('running_mean', 'running_var', 'num_batches_tracked') for k in changed)
    assert m.training  # mode restored


@pytest.mark.parametrize('method', list(METHODS))
def test_each_method_fits_and_round_trips(pair, method, tmp_path):
    seed_everything(0)
    learn = adapt_learner(DigitCNN(width=4), pair, method, validators=tuple(VALIDATORS), n_val=200)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2)
    names = learn.recorder.metric_names
    assert {'IM', 'SND', 'TargetEntropy'} <= set(names)
    assert all(v == v for v in learn.recorder.values[-1])  # no NaN
    learn.export(tmp_path/'a.pkl')
    back = load_learner(tmp_path/'a.pkl')
    x = pair.test.one_batch()[0][:4].cpu()
    torch.testing.assert_close(back.model.eval()(x), learn.model.eval().cpu()(x))
    assert isinstance(back.model, WithDiscriminator) == (method in ('dann', 'cdan'))


def test_discriminator_is_trained_and_in_the_optimiser(pair):
    learn = adapt_learner(DigitCNN(width=4), pair, 'cdan', validators=())
    before = copy.deepcopy(learn.model.disc.state_dict())
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2)
    assert any(not torch.equal(v, learn.model.disc.state_dict()[k]) for k, v in before.items())
    opt_params = {id(p) for g in learn.opt.param_lists for p in g}
    assert all(id(p) in opt_params for p in learn.model.disc.parameters())


def test_target_with_other_shape_fails_before_training(pair):
    colour = domain_pair('uci', 'mnistm', bs=32)
    mixed = copy.copy(pair); mixed.unlabeled = colour.unlabeled
    learn = adapt_learner(DigitCNN(width=4), mixed, 'dann', validators=())
    w = copy.deepcopy(learn.model.state_dict())
    with pytest.raises(ValueError, match="the target's images are 3×28×28 but the source's are 1×28×28"): learn.fit(1)
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in w.items())  # nothing trained


def test_target_labels_are_ignored(pair):
    labeled = copy.copy(pair); labeled.unlabeled = pair.test  # (x, y) batches where (x,) is expected
    learn = adapt_learner(DigitCNN(width=4), labeled, 'mmd', validators=())
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)


def test_divergence_is_detected(pair):
    with pytest.raises(DivergenceError, match="the loss became NaN or infinite"):
        learn = adapt_learner(DigitCNN(width=4), pair, 'mmd', lam=float('inf'), validators=())
        with learn.no_bar(), learn.no_logging(): learn.fit(1)
    class Constant(nn.Module):
        def forward(self, x): return torch.zeros(len(x), 1, device=x.device)
    learn = adapt_learner(DigitCNN(width=4), pair, 'dann', validators=())
    learn.model.disc = Constant()
    with pytest.raises(DivergenceError, match="output was constant"):
        with learn.no_bar(), learn.no_logging(): learn.fit(1)


def test_bad_names():
    p = domain_pair('uci', 'mnist')
    with pytest.raises(ValueError, match="unknown method 'grl'; valid methods: source_only, dann, cdan, mmd, coral, entropy"): adapt_learner(DigitCNN(), p, 'grl')
    with pytest.raises(ValueError, match="unknown validators \\['DEV'\\]"): adapt_learner(DigitCNN(), p, 'dann', validators=('DEV',))


def test_validators_order_obvious_cases():
    conf, flat = torch.eye(5)[list(range(5)) * 4], torch.full((20, 5), 0.2)
    assert im_score(conf) > im_score(flat) and entropy_score(conf) > entropy_score(flat)
    torch.manual_seed(0)
    tight = torch.cat([c + 0.01 * torch.randn(10, 6) for c in torch.randn(2, 1, 6)])
    assert snd_score(None, tight) > snd_score(None, torch.randn(20, 6))
