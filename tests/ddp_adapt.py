"""One adaptation fit under a launch (`torchrun --nproc_per_node N ddp_adapt.py OUT METHOD`): adapt_learner's two-domain
loaders (dann, fixmatch with its labeled target loader), shot_learner and tent_learner. Writes OUT/rank<r>.json with the
final weights' sum and the last epoch's values. Used by test_scale.py."""
import json, sys, torch
from pathlib import Path
from transfer_nb.core import seed_everything, DigitCNN, rank_distrib, num_distrib
from transfer_nb.pairs import domain_pair
from transfer_nb.adapt import adapt_learner, shot_learner, tent_learner
from transfer_nb.twodomain import classifier_of

out, method = Path(sys.argv[1]), sys.argv[2]
p = domain_pair('uci:0-2', 'mnist:0-2', shots=3, device='cpu')
seed_everything(0)
if method == 'shot': learn = shot_learner(DigitCNN(width=4, n_out=3), p.unlabeled, test=p.test)
elif method == 'tent': learn = tent_learner(DigitCNN(width=4, n_out=3), p.test)
else: learn = adapt_learner(DigitCNN(width=4, n_out=3), p, method, oracle=True)
with learn.no_bar(), learn.no_logging():
    learn.fit(1, 1e-3) if method == 'tent' else learn.fit_one_cycle(2, 1e-3)
w = sum(float(q.detach().double().sum()) for q in classifier_of(learn.model).parameters())
out.mkdir(parents=True, exist_ok=True)
(out/f'rank{rank_distrib()}.json').write_text(json.dumps(dict(world=num_distrib(), weights=w, last=[None if v is None else float(v) for v in learn.recorder.values[-1]],
                                                               tent=getattr(getattr(learn, 'tent', None), 'online_accuracy', None))))
