"""Measure scaling out on this machine and write bench/scale.json (read by nbs/13_scaling.ipynb).

1. One fit as 1 process and as 2 processes (torch DDP over gloo, launched by torchrun), each process on one thread,
   same global batch (tests/ddp_fit.py): the fit's seconds, and the weights' agreement.
2. A small `compare` sweep run serially (one thread) and on a local Ray cluster with 2 one-CPU workers: wall seconds.
3. What a sweep costs per run besides training: building the data pair in a task, appending a record to the store,
   the record's size (the inputs of the internet-scale estimate).

    python bench/scale.py            # about 5 minutes on a 2-core CPU; run it on an otherwise idle machine
"""
import json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY, TORCHRUN = sys.executable, str(Path(sys.executable).parent/'torchrun')
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


def ddp(tmp, epochs=10, bs=64, width=64, lr=3e-3):
    "Seconds of the same fit on 1 process (batch `bs`) and on 2 (batch `bs`/2 each), a CNN of `width` channels."
    subprocess.run([PY, str(ROOT/'tests/ddp_fit.py'), f'{tmp}/one', str(bs), 'fit', str(epochs), str(width), str(lr)], check=True, env=ENV, capture_output=True)
    subprocess.run([TORCHRUN, '--nproc_per_node', '2', '--master_port', '29811', str(ROOT/'tests/ddp_fit.py'), f'{tmp}/two', str(bs // 2), 'fit', str(epochs), str(width), str(lr)],
                   check=True, env=ENV, capture_output=True)
    one, two = (json.loads(Path(f'{tmp}/{d}/rank0.json').read_text()) for d in ('one', 'two'))
    diff = max(abs(a - b) for a, b in zip(one['weights'], two['weights']))
    rel = (sum((a - b) ** 2 for a, b in zip(one['weights'], two['weights'])) / sum(a * a for a in one['weights'])) ** .5
    return dict(epochs=epochs, batch=bs, width=width, lr=lr, relative_weight_diff=rel, samples_per_epoch=len(one['seen'][0]), one_process_s=one['secs'], two_processes_s=two['secs'],
                speedup=one['secs'] / two['secs'], max_weight_diff=diff, accuracy_one=one['acc'], accuracy_two=two['acc'])


SWEEP = dict(techniques=['scratch', 'full', 'fine_tune', 'dann'], seeds=(0, 1, 2), shots=(5,), steps=150, source_steps=300, width=16)


def sweep(tmp):
    "Wall seconds of the same compare, serial in one thread and on Ray with 2 one-CPU workers; whether the results agree."
    code = f"""
import json, sys, time, torch; torch.set_num_threads(1)
from transfer_nb.experiment import compare
kw = {SWEEP!r}
t0 = time.time()
if sys.argv[1] == 'ray':
    import ray; ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
t1 = time.time()
df = compare(('uci', 'mnist'), executor=sys.argv[1], out=sys.argv[2], **kw)
print(json.dumps(dict(secs=time.time() - t0, start=t1 - t0, runs=len(df), res=sorted((r['technique'], r['seed'], round(r['target_acc'], 6)) for r in df.to_dict('records')))))
"""
    res = {}
    for how in ('serial', 'ray'):
        r = subprocess.run([PY, '-c', code, how, f'{tmp}/{how}'], env=ENV, capture_output=True, text=True, check=True)
        res[how] = json.loads(r.stdout.strip().splitlines()[-1])
    return dict(runs=res['serial']['runs'], config=SWEEP, serial_s=res['serial']['secs'], ray_2_workers_s=res['ray']['secs'],
                ray_start_s=res['ray']['start'], speedup=res['serial']['secs'] / res['ray']['secs'],
                speedup_after_start=res['serial']['secs'] / (res['ray']['secs'] - res['ray']['start']),
                same_results=res['serial']['res'] == res['ray']['res'])


def overheads(tmp):
    "Per-task costs that do not shrink with more workers: building the data pair, appending a record, the record's size."
    import torch
    from transfer_nb.pairs import domain_pair
    from transfer_nb.store import RunStore
    t0 = time.time(); p = domain_pair('syn', 'mnist', shots=10, seed=0); pair_s = time.time() - t0  # cached on disk after the first build
    t0 = time.time(); p = domain_pair('syn', 'mnist', shots=10, seed=1); pair_again_s = time.time() - t0
    recs = [json.loads(l) for l in (ROOT/'results/syn-mnist/runs.jsonl').read_text().splitlines() if l.strip()]
    sizes = {k: sum(len(json.dumps(r)) for r in recs if (r.get('history') is not None) == k) / max(1, sum((r.get('history') is not None) == k for r in recs)) for k in (False, True)}
    with RunStore(f'{tmp}/store', dict(bench=1)) as st:
        t0 = time.time()
        for i in range(200): st.add(dict(recs[i % len(recs)], seed=i))
        add_s = (time.time() - t0) / 200
    return dict(pair_build_s=pair_s, pair_build_cached_s=pair_again_s, record_bytes_finetune=sizes[False], record_bytes_adaptation=sizes[True],
                store_append_s=add_s)


if __name__ == '__main__':
    import torch, transfer_nb
    tmp = tempfile.mkdtemp()
    out = dict(machine=dict(cpus=os.cpu_count(), processor=platform.processor() or platform.machine(), python=platform.python_version(),
                            torch=torch.__version__, transfer_nb=transfer_nb.__version__, date=time.strftime('%Y-%m-%d')),
               ddp=ddp(tmp), sweep=sweep(tmp), overheads=overheads(tmp))
    (ROOT/'bench/scale.json').write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
