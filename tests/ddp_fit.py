"""One fit, launched as 1 process (`python ddp_fit.py OUT BS`) or as N (`torchrun --nproc_per_node N ddp_fit.py OUT BS`):
writes OUT/rank<r>.json with the final weights, accuracy, the samples each epoch saw and the fit's seconds (optional 3rd to 6th
arguments: 'fit' or 'disagree', the epochs, the width, the learning rate). Used by test_scale.py and bench/scale.py."""
import json, sys, time, torch
from pathlib import Path
from torch import nn
from transfer_nb.core import seed_everything, classifier_learner, evaluate, rank_distrib, num_distrib
from transfer_nb.domains import load_domain
from transfer_nb.pairs import domain_pair
from transfer_nb.data import stratified_sample
from fastai.callback.core import Callback

out, bs = Path(sys.argv[1]), int(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else 'fit'
t = load_domain('mnist'); t = t.subset(stratified_sample(t.y, 300, 0))
p = domain_pair(None, t, shots=20, bs=bs, device='cpu')  # 200 labeled images: 20 per class
ids = {round(v, 4): i for i, v in enumerate((p.target.train.dataset.ts[0].flatten(1) @ torch.linspace(0, 1, 784)).tolist())}

class Seen(Callback):
    "The samples of each training epoch, identified by their content."
    def before_fit(self): self.epochs = []
    def before_epoch(self): self.epochs.append([])
    def before_batch(self):
        if self.training: self.epochs[-1] += [ids[round(v, 4)] for v in (self.xb[0].flatten(1) @ torch.linspace(0, 1, 784)).tolist()]

seed_everything(0)
w = int(sys.argv[5]) if len(sys.argv) > 5 else 16  # width: the bench uses wider networks (more work per step)
net = nn.Sequential(nn.Conv2d(1, w, 3, 2, 1), nn.ReLU(), nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.ReLU(),
                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, 10))  # no BatchNorm: on the CPU its statistics are per process
seen = Seen()
learn = classifier_learner(p.target, net, cbs=[seen])
if mode == 'disagree' and rank_distrib() == 1: learn.model[-1] = nn.Linear(32, 10, bias=False)  # process 1 asked for another model
t0 = time.time()
with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(int(sys.argv[4]) if len(sys.argv) > 4 else 20, float(sys.argv[6]) if len(sys.argv) > 6 else 1e-2)
secs = time.time() - t0
w = torch.cat([q.detach().flatten() for q in learn.model.parameters()])
out.mkdir(parents=True, exist_ok=True)
(out/f'rank{rank_distrib()}.json').write_text(json.dumps(dict(world=num_distrib(), weights=w.tolist(), acc=evaluate(learn.model, p.test), seen=seen.epochs, secs=secs)))
