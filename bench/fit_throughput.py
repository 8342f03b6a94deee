#!/usr/bin/env python
"""Training throughput of transfer_nb's fastai Learner against a hand-written PyTorch loop and stock fastai, in one process.

Same model, batch size, precision, optimizer (torch.optim.Adam; fastai gets it through OptimWrapper) and data (random
tensors already on the device) on both sides; the Learner reads them through transfer_nb's `TensorDL`. Stock fastai is
what a fastai user writes: fastai's own `DataLoader` over a `TensorDataset` in host memory (collated per batch, moved
to the device by fastai) and fastai's default optimiser (its own Adam). Each side runs
`warmup` steps first, then `steps` timed steps (synchronised on CUDA). On CUDA both use bf16 autocast (fp16 where
bf16 is not supported) and channels_last; on the CPU, fp32. Prints images/s and the ratio Learner / plain.

    python bench/fit_throughput.py                 # defaults for the device found
    python bench/fit_throughput.py --steps 50 --bs 256 1024
A benchmark, not a test: it asserts nothing.
"""
import argparse, time
from pathlib import Path
import torch, torchvision
from torch import nn
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.optimizer import OptimWrapper
from transfer_nb.core import DigitCNN, auto_device
from transfer_nb.data import Tensors, TensorDL

MODELS = {'digit CNN, 28 px': (lambda: DigitCNN(width=32), (1, 28, 28)),
          'ResNet-18, 32 px': (lambda: torchvision.models.resnet18(num_classes=10), (3, 32, 32)),
          'ResNet-18, 64 px': (lambda: torchvision.models.resnet18(num_classes=10), (3, 64, 64))}


def amp_dtype(dev):
    if dev.type != 'cuda': return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()


def plain(make, shape, bs, steps, warmup, dev):
    m = make().to(dev); dt = amp_dtype(dev)
    if dev.type == 'cuda': m = m.to(memory_format=torch.channels_last)
    opt, lossf = torch.optim.Adam(m.parameters(), 1e-3), nn.CrossEntropyLoss()
    x, y = torch.rand(bs * 4, *shape, device=dev), torch.randint(0, 10, (bs * 4,), device=dev)
    m.train()
    def step(i):
        idx = torch.randint(0, len(x), (bs,), device=dev)
        xb, yb = x[idx], y[idx]
        with torch.autocast(dev.type, dtype=dt, enabled=dt is not None):
            loss = lossf(m(xb), yb)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    for i in range(warmup): step(i)
    sync(dev); t0 = time.perf_counter()
    for i in range(steps): step(i)
    sync(dev)
    return steps * bs / (time.perf_counter() - t0)


class Timer(Callback):
    "Times the training batches after `warmup` of them, synchronising the device."
    order = 100
    def __init__(self, warmup, dev): self.warmup, self.dev, self.n, self.t0 = warmup, dev, 0, None
    def before_batch(self):
        if self.training and self.n == self.warmup: sync(self.dev); self.t0 = time.perf_counter()
    def after_batch(self):
        if self.training: self.n += 1
    def after_train(self): sync(self.dev); self.t1 = time.perf_counter()


def learner(make, shape, bs, steps, warmup, dev):
    m = make().to(dev); dt = amp_dtype(dev)
    if dev.type == 'cuda': m = m.to(memory_format=torch.channels_last)
    n = bs * (steps + warmup)
    x, y = torch.rand(n, *shape, device=dev), torch.randint(0, 10, (n,), device=dev)
    dls = DataLoaders(TensorDL(Tensors(x, y), bs=bs, shuffle=True, drop_last=True, device=dev),
                      TensorDL(Tensors(x[:bs], y[:bs]), bs=bs, device=dev))
    timer = Timer(warmup, dev)
    learn = Learner(dls, m, loss_func=nn.CrossEntropyLoss(), opt_func=lambda ps, lr: OptimWrapper(ps, torch.optim.Adam, lr=lr), cbs=timer)
    if dt == torch.bfloat16: learn.to_bf16()
    elif dt is not None: learn.to_fp16()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    return steps * bs / (timer.t1 - timer.t0)


def stock(make, shape, bs, steps, warmup, dev):
    "fastai as its users write it: fastai's DataLoader over a TensorDataset in host memory, fastai's default optimiser."
    from fastai.data.load import DataLoader
    m = make().to(dev); dt = amp_dtype(dev)
    if dev.type == 'cuda': m = m.to(memory_format=torch.channels_last)
    n = bs * (steps + warmup)
    ds = torch.utils.data.TensorDataset(torch.rand(n, *shape), torch.randint(0, 10, (n,)))
    dls = DataLoaders(DataLoader(ds, bs=bs, shuffle=True, drop_last=True, device=dev), DataLoader(torch.utils.data.TensorDataset(*ds[:bs]), bs=bs, device=dev))
    timer = Timer(warmup, dev)
    learn = Learner(dls, m, loss_func=nn.CrossEntropyLoss(), cbs=timer)
    if dt == torch.bfloat16: learn.to_bf16()
    elif dt is not None: learn.to_fp16()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    return steps * bs / (timer.t1 - timer.t0)


def main(bs=None, steps=None, warmup=5, models=None, json_out=None):
    dev = auto_device()
    bs = bs or ([256, 1024] if dev.type == 'cuda' else [256])
    steps = steps or (200 if dev.type == 'cuda' else 15)
    if dev.type == 'cuda': torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name() if dev.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)'
    print(f"device: {name}; torch {torch.__version__}; precision {amp_dtype(dev) or 'fp32'}; {steps} timed steps after {warmup} warm-up")
    print(f"| model | batch | plain loop (img/s) | stock fastai (img/s) | transfer_nb (img/s) | transfer_nb / plain |\n|---|---|---|---|---|---|")
    rows = []
    for mname in models or MODELS:
        make, shape = MODELS[mname]
        for b in bs:
            p, s_, l = (f(make, shape, b, steps, warmup, dev) for f in (plain, stock, learner))
            rows.append(dict(model=mname, bs=b, plain=p, stock_fastai=s_, transfer_nb=l))
            print(f"| {mname} | {b} | {p:,.0f} | {s_:,.0f} | {l:,.0f} | {l / p:.2f} |", flush=True)
    if json_out:
        import json
        Path(json_out).write_text(json.dumps(dict(device=name, torch=torch.__version__, precision=str(amp_dtype(dev) or 'fp32'), steps=steps, warmup=warmup, rows=rows), indent=1))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bs', type=int, nargs='+'); ap.add_argument('--steps', type=int); ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--models', nargs='+', choices=list(MODELS)); ap.add_argument('--json', dest='json_out', help='write the table as JSON here')
    main(**vars(ap.parse_args()))
