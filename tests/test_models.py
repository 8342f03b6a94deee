"""Every strategy and DANN on networks this project did not write: torchvision ResNet-18 and MobileNetV3-Small (head nested in
`classifier`), EfficientNet-Lite0 with ImageNet weights, a timm MobileNetV3, and a user's wrapper that adds normalisation."""
import pytest, torch, torchvision
from torch import nn
from transfer_nb.core import seed_everything, n_params, level_groups, get_module, set_module
from transfer_nb.domains import load_domain
from transfer_nb.pairs import domain_pair
from transfer_nb.data import stratified_sample
from transfer_nb.core import techniques
from transfer_nb.finetune import transfer_learner, pretrained, Adapter
from transfer_nb.adapt import adapt_learner
from transfer_nb.twodomain import classifier_of

timm = pytest.importorskip('timm')


class UserNet(nn.Module):
    "How a user adds input normalisation: a module in front of a backbone, the backbone under another name."
    def __init__(self, net):
        super().__init__()
        self.register_buffer('mean', torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.backbone = net
    def forward(self, x): return self.backbone(x - self.mean)


NETS = {
    'resnet18': lambda: torchvision.models.resnet18(num_classes=10),
    'mobilenet_v3_small': lambda: torchvision.models.mobilenet_v3_small(num_classes=10),
    'efficientnet-lite0': lambda: pretrained('efficientnet-lite0'),  # ImageNet weights, 1000 classes: a new head is needed
    'timm mobilenetv3_small_050': lambda: timm.create_model('mobilenetv3_small_050', num_classes=10),
    'user wrapper': lambda: UserNet(torchvision.models.resnet18(num_classes=10)),
}
HEADS = {'resnet18': 'fc', 'mobilenet_v3_small': 'classifier.3', 'efficientnet-lite0': 'net._fc', 'timm mobilenetv3_small_050': 'classifier',
         'user wrapper': 'backbone.fc'}


@pytest.fixture(scope='module')
def pair():
    "A small 3-channel 32-pixel pair: 100 uci images as the source, 150 mnist images as the target, 1 label per class."
    s, t = load_domain('uci'), load_domain('mnist')
    s, t = s.subset(stratified_sample(s.y, 100, 0)), t.subset(stratified_sample(t.y, 150, 0))
    return domain_pair(s, t, shots=1, channels=3, size=32, bs=20)


def disjoint_and_covering(learn):
    ids = [id(p) for g in learn.splitter(learn.model) for p in g]
    return len(ids) == len(set(ids)) == len({id(p) for p in learn.model.parameters()})


@pytest.mark.parametrize('name', list(NETS))
@pytest.mark.parametrize('strategy', techniques('transfer_learner'))
def test_strategy_on_foreign_network(pair, name, strategy):
    net = NETS[name]()
    if strategy == 'direct' and name == 'efficientnet-lite0': pytest.skip('ImageNet classes are not the target digits: direct does not apply')
    seed_everything(0)
    learn = transfer_learner(net, pair.target, strategy, new_head=name == 'efficientnet-lite0' and strategy != 'direct', keep_head=name != 'efficientnet-lite0' and strategy != 'scratch' and strategy != 'linear_probe')
    assert learn.head == HEADS[name] and isinstance(get_module(learn.model, learn.head), nn.Linear)
    assert learn.head not in learn.levels and not any(learn.head.startswith(l + '.') for l in learn.levels)  # no level holds the head
    assert disjoint_and_covering(learn)
    total, head_ps = n_params(learn.model), {id(p) for p in get_module(learn.model, learn.head).parameters()}
    trainable = {id(p) for p in learn.model.parameters() if p.requires_grad}
    if strategy == 'direct': assert not trainable
    elif strategy == 'linear_probe': assert trainable == head_ps
    elif strategy == 'adapter':
        allowed = head_ps | {id(p) for m in learn.model.modules() if isinstance(m, (Adapter, nn.modules.batchnorm._BatchNorm)) for p in m.parameters()}
        assert trainable <= allowed and any(isinstance(m, Adapter) for m in learn.model.modules())
    elif strategy == 'shared_specific':
        g = learn.splitter(learn.model)
        assert not any(p.requires_grad for grp in g[:learn.k] for p in grp) and all(p.requires_grad for grp in g[learn.k:] for p in grp)
    else: assert len(trainable) == len(list(learn.model.parameters()))
    before = {k: v.clone() for k, v in learn.model.state_dict().items() if v.is_floating_point()}
    with learn.no_bar(), learn.no_logging(): learn.fit_transfer(1, 1e-3)
    moved = any(not torch.equal(v, learn.model.state_dict()[k]) for k, v in before.items())
    assert moved == (strategy != 'direct')
    if strategy in ('fine_tune', 'gradual_unfreeze'): assert all(p.requires_grad for p in learn.model.parameters())  # unfrozen by the end


@pytest.mark.parametrize('name', list(NETS))
def test_dann_on_foreign_network(pair, name):
    net = NETS[name]()
    h = get_module(net, HEADS[name])
    if h.out_features != pair.n_classes:  # ImageNet's 1000 outputs: adapt_learner refuses a head that is not the source's classes
        with pytest.raises(ValueError, match=f"the model outputs {h.out_features} classes but the source has {pair.n_classes}"): adapt_learner(net, pair, 'dann')
        set_module(net, HEADS[name], nn.Linear(h.in_features, pair.n_classes))
    seed_everything(0)
    learn = adapt_learner(net, pair, 'dann', validators=('IM',))
    ids = [id(p) for g in learn.splitter(learn.model) for p in g]
    assert len(ids) == len(set(ids)) == len({id(p) for p in learn.model.parameters()})
    d0 = {k: v.clone() for k, v in learn.model.disc.state_dict().items()}
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    assert any(not torch.equal(v, learn.model.disc.state_dict()[k]) for k, v in d0.items())
    assert learn.recorder.values[-1][-1] is not None  # the validator scored the pool


def test_head_given_as_a_container_and_bad_heads(pair):
    net = torchvision.models.mobilenet_v3_small(num_classes=10)
    assert transfer_learner(net, pair.target, 'linear_probe', head='classifier').head == 'classifier.3'
    with pytest.raises(ValueError, match="no module 'clasifier'; close matches: 'classifier'"): transfer_learner(net, pair.target, 'full', head='clasifier')
    with pytest.raises(ValueError, match="has no Linear layer to use as its head"):
        transfer_learner(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), pair.target, 'full')
