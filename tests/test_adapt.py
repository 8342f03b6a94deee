"Tests of `transfer_nb.adapt` as installed: gradient reversal, the losses, AdaBN, every method in Learner.fit with export, bad input, divergence."
import copy
import pytest, torch
from torch import nn
from fastai.learner import load_learner
from transfer_nb.core import DigitCNN, seed_everything, fit_classifier, evaluate
from transfer_nb.pairs import domain_pair
from transfer_nb.core import techniques
from transfer_nb.validators import VALIDATORS, im_score, snd_score, entropy_score, target_outputs, history, select
from transfer_nb.adapt import adapt_learner, adabn, mmd, coral, DivergenceError, shot_learner, tent_learner, FixMatch, MMD
from transfer_nb.twodomain import GradReverse, grl_coeff, mcc_loss, WithDiscriminator, classifier_of, TwoDomainCallback
from transfer_nb.core import collapse_share, COLLAPSE_SHARE


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


def exported(learn, x, path):
    "Export `learn`, load it back, and check it computes what `learn` does on `x` and carries no target images."
    learn.export(path)
    assert path.stat().st_size < 2_000_000  # the networks, not the 3,500 pool images (11 MB) that a slice t[:0] pickled
    back = load_learner(path)
    torch.testing.assert_close(back.model.eval()(x), learn.model.eval().cpu()(x))
    return back


@pytest.mark.parametrize('method', techniques('adapt_learner'))
def test_each_method_fits_and_round_trips(pair, method, tmp_path):
    seed_everything(0)
    learn = adapt_learner(DigitCNN(width=4), pair, method, validators=tuple(VALIDATORS), n_val=200, oracle=True, labeled=method == 'fixmatch')
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2)
    names = learn.recorder.metric_names
    assert {'IM', 'SND', 'TargetEntropy', 'CollapseShare', 'oracle_target_acc'} <= set(names)
    assert all(v == v for v in learn.recorder.values[-1])  # no NaN
    x = pair.test.dataset.ts[0][:4].cpu()
    back = exported(learn, x, tmp_path/'a.pkl')
    assert isinstance(back.model, WithDiscriminator) == (method in ('dann', 'cdan'))
    with back.no_bar():  # an exported learner predicts, gets predictions and validates on new images (F6)
        preds, _ = back.get_preds(dl=back.dls.test_dl(x))
        cls, idx, probs = back.predict(x[0])
        res = back.validate(dl=pair.test.new(device='cpu'))
    assert preds.shape == (4, 10) and cls in pair.tgt.classes and 0 <= res[1] <= 1


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
    with learn.no_bar(), learn.no_logging(), pytest.raises(ValueError, match="the target images are 3×28×28 but the source's are 1×28×28"): learn.fit(1)
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in w.items())  # nothing trained


def test_target_labels_are_ignored(pair):
    labeled = copy.copy(pair); labeled.unlabeled = pair.test  # (x, y) batches where (x,) is expected
    learn = adapt_learner(DigitCNN(width=4), labeled, 'mmd', validators=())
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)


def test_divergence_is_detected(pair):
    with pytest.raises(ValueError, match="lam must be a finite number ≥ 0, got inf"): adapt_learner(DigitCNN(width=4), pair, 'mmd', lam=float('inf'))
    learn = adapt_learner(DigitCNN(width=4), pair, 'mmd', lam=1e38, validators=())
    with learn.no_bar(), learn.no_logging(), pytest.raises(DivergenceError, match="the loss became NaN or infinite"): learn.fit(1, 1e-2)
    class Constant(nn.Module):
        def forward(self, x): return torch.zeros(len(x), 1, device=x.device)
    learn = adapt_learner(DigitCNN(width=4), pair, 'dann', validators=())
    learn.model.disc = Constant()
    with pytest.raises(DivergenceError, match="output was constant"):
        with learn.no_bar(), learn.no_logging(): learn.fit(1)


def test_bad_names():
    p = domain_pair('uci', 'mnist')
    with pytest.raises(ValueError, match="unknown method 'grl'; valid methods: source_only, dann, cdan, mmd, coral, entropy, mcc, fixmatch"): adapt_learner(DigitCNN(), p, 'grl')
    with pytest.raises(ValueError, match="unknown validators \\['DEV'\\]"): adapt_learner(DigitCNN(), p, 'dann', validators=('DEV',))


def test_validators_order_obvious_cases():
    conf, flat = torch.eye(5)[list(range(5)) * 4], torch.full((20, 5), 0.2)
    assert im_score(conf) > im_score(flat) and entropy_score(conf) > entropy_score(flat)
    torch.manual_seed(0)
    tight = torch.cat([c + 0.01 * torch.randn(10, 6) for c in torch.randn(2, 1, 6)])
    assert snd_score(None, tight) > snd_score(None, torch.randn(20, 6))


@pytest.fixture(scope='module')
def source_model(pair):
    seed_everything(0)
    return fit_classifier(pair.source, DigitCNN(width=8), 3).model


@pytest.mark.slow
def test_fixmatch_uses_confident_pseudo_labels_and_improves_on_the_labels_alone(pair):
    "A short fit moves the numbers the right way: FixMatch on top of the few labels beats the labels alone on the target."
    p = domain_pair('uci', 'mnist', shots=5, bs=32)
    res = {}
    for method in ('source_only', 'fixmatch'):
        seed_everything(0); p.reseed(0)
        learn = adapt_learner(DigitCNN(width=8), p, method, labeled=True, validators=(), tau=0.8) if method == 'fixmatch' else \
                adapt_learner(DigitCNN(width=8), p, method, labeled=True, validators=())
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(4, 3e-3)
        res[method] = evaluate(classifier_of(learn.model), p.test)
        if method == 'fixmatch': assert 0 <= learn.cbs.filter(lambda c: isinstance(c, FixMatch))[0].mask_rate.item() <= 1
    assert res['fixmatch'] > res['source_only'], res


def test_shot_adapts_without_source_data_and_keeps_the_head(pair, source_model):
    seed_everything(0)
    learn = shot_learner(source_model, pair.unlabeled, test=pair.test)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(2, 1e-3)
    assert evaluate(learn.model, pair.test) > evaluate(source_model, pair.test)
    assert torch.equal(learn.model.head.weight, source_model.head.weight)
    with pytest.raises(ValueError, match="source-free and must not see source data"): shot_learner(source_model, pair)
    with pytest.raises(ValueError, match="the target holds no images"): shot_learner(source_model, torch.zeros(0, 1, 28, 28))
    assert {'IM', 'oracle_target_acc'} <= set(history(learn).columns)


def test_tent_predicts_each_batch_before_adapting_and_beats_the_unadapted_model(pair, source_model):
    seed_everything(0)
    learn = tent_learner(source_model, pair.test)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    assert len(torch.cat(learn.tent.preds)) == len(pair.test.dataset)
    assert learn.tent.online_accuracy > evaluate(source_model, pair.test)
    # the first batch's predictions are those of the unadapted network with batch statistics: made before any update
    net = copy.deepcopy(source_model)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d): m.track_running_stats, m.running_mean, m.running_var = False, None, None
    first = net.train()(pair.test.dataset.ts[0][:64]).argmax(1)
    assert torch.equal(learn.tent.preds[0], first)
    learn.tent.reset(); assert torch.equal(learn.model.head.weight, source_model.head.weight)
    with pytest.raises(ValueError, match="has no BatchNorm layer: TENT adapts"): tent_learner(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), pair.test)
    with pytest.raises(ValueError, match="Sequential has no BatchNorm layer with running statistics: AdaBN has nothing to re-estimate"):
        adabn(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), pair.unlabeled)


def test_mcc_and_fixmatch_arguments():
    confident, confused = torch.eye(4)[[0, 1, 2, 3] * 8] * 10, torch.randn(32, 4) * 0.1
    assert mcc_loss(confident) < mcc_loss(confused)
    p = domain_pair('uci', 'mnist', shots=2)
    for tau in (0, 1.5, float('nan')):
        with pytest.raises(ValueError, match="tau must be a finite number in \\(0, 1\\]"): adapt_learner(DigitCNN(width=4), p, 'fixmatch', tau=tau)
    learn = adapt_learner(DigitCNN(width=4), p, 'dann', mcc=1., validators=())
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)


def test_collapse_is_detected(pair):
    dead = DigitCNN(width=4)
    with torch.no_grad(): dead.head.bias.copy_(torch.tensor([50.] + [0.] * 9))
    p, _ = target_outputs(dead, pair.pool_sample())
    assert collapse_share(p) == 1. >= COLLAPSE_SHARE
    learn = adapt_learner(DigitCNN(width=4), pair, 'source_only', validators=('IM',))
    with torch.no_grad(): learn.model.head.bias.copy_(torch.tensor([50.] + [0.] * 9))
    with learn.no_bar(): res = learn.validate()
    assert res[-1] == 1.  # the CollapseShare column says so


def test_select_picks_by_the_validator_and_reports_regret():
    import pandas as pd
    h = pd.DataFrame(dict(method=['a'] * 3 + ['b'] * 3, seed=0, epoch=[0, 1, 2] * 2, IM=[0.1, 0.5, 0.3, 0.2, 0.1, 0.9],
                          oracle_target_acc=[0.2, 0.4, 0.6, 0.5, 0.7, 0.3]))
    s = select(pd.concat([h[:3], h[3:]]), 'IM').set_index('method')  # concatenated runs repeat index labels
    assert s.loc['a', 'epoch'] == 1 and s.loc['a', 'regret'] == pytest.approx(0.2) and s.loc['b', 'regret'] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="no column 'SNDX' to select by"): select(h, 'SNDX')


@pytest.mark.parametrize('kind', ['shot', 'tent'])
def test_source_free_and_test_time_learners_survive_export(pair, source_model, kind, tmp_path):
    "SHOT and TENT learners, after a fit, export and load back into the same network (their data is not pickled)."
    seed_everything(0)
    learn = shot_learner(source_model, pair.unlabeled, test=pair.test) if kind == 'shot' else tent_learner(source_model, pair.test)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    x = pair.test.dataset.ts[0][:4].cpu()
    back = exported(learn, x, tmp_path/'a.pkl')
    with back.no_bar(): assert back.get_preds(dl=back.dls.test_dl(x))[0].shape == (4, 10)


class _MeanMatch(TwoDomainCallback):
    "A method of the user's own: squared distance between the mean source and target features."
    def adapt_loss(self): return (self.fs.mean(0) - self.ft.mean(0)).pow(2).sum()


def test_a_method_of_your_own_is_a_class_adapt_learner_takes(pair):
    seed_everything(0)
    learn = adapt_learner(DigitCNN(width=4), pair, _MeanMatch, lam=1., validators=())
    assert learn.method == '_MeanMatch' and any(isinstance(c, _MeanMatch) for c in learn.cbs)
    seen = []
    orig = _MeanMatch.adapt_loss
    try:
        _MeanMatch.adapt_loss = lambda self: seen.append(orig(self).item()) or orig(self)
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    finally: _MeanMatch.adapt_loss = orig
    assert len(seen) == len(pair.source.train) and all(v >= 0 for v in seen)  # the term ran on every training batch
    assert adapt_learner(DigitCNN(width=4), pair, MMD, validators=()).method == 'mmd'  # a registered class gets its registered name
    with pytest.raises(ValueError, match="unknown method <class 'torch.nn.modules.linear.Linear'>; valid methods: source_only, .*, or a TwoDomainCallback subclass"):
        adapt_learner(DigitCNN(), pair, nn.Linear)


def test_a_method_registered_by_name_runs_and_a_redefinition_elsewhere_cannot_swap_a_builtin(pair):
    from transfer_nb.core import TECHNIQUES, register_technique
    from transfer_nb.adapt import DANN
    saved = dict(TECHNIQUES)
    try:
        register_technique('mean_match', 'unlabeled', "the mean target feature pulled onto the source's", 'adapt_learner', _MeanMatch)
        learn = adapt_learner(DigitCNN(width=4), pair, 'mean_match', validators=())
        assert learn.method == 'mean_match' and any(isinstance(c, _MeanMatch) for c in learn.cbs)
        register_technique('dann', 'unlabeled', 'a notebook that redefined DANN', 'adapt_learner', _MeanMatch)  # as a docs notebook run in this process does
        assert any(type(c) is DANN for c in adapt_learner(DigitCNN(width=4), pair, 'dann', validators=()).cbs)
    finally:
        TECHNIQUES.clear(); TECHNIQUES.update(saved)
