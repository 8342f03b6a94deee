"Scaling out: one fit on two processes (torch DDP over gloo, through accelerate) against one process, and a sweep on a local Ray cluster."
import json, os, shutil, subprocess, sys, threading, time
from pathlib import Path
import pytest, torch

HERE = Path(__file__).parent
TORCHRUN = Path(sys.executable).parent/'torchrun'


def _torchrun(n, *args, timeout=300):
    return subprocess.run([str(TORCHRUN), '--nproc_per_node', str(n), '--master_port', str(29500 + os.getpid() % 1000), str(HERE/'ddp_fit.py'), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_processes_train_as_one_with_their_global_batch(tmp_path):
    "2 processes × batch 16 end where 1 process × batch 32 does: same weights (to 1e-5), same accuracy; each epoch sees every sample once."
    one = subprocess.run([sys.executable, str(HERE/'ddp_fit.py'), str(tmp_path/'one'), '32'], capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = _torchrun(2, tmp_path/'two', 16)
    assert two.returncode == 0, two.stderr
    a = json.loads((tmp_path/'one'/'rank0.json').read_text())
    r0, r1 = (json.loads((tmp_path/'two'/f'rank{r}.json').read_text()) for r in (0, 1))
    assert r0['world'] == 2 and a['world'] == 0
    assert torch.allclose(torch.tensor(a['weights']), torch.tensor(r0['weights']), atol=1e-5)
    assert r0['weights'] == r1['weights']  # DDP keeps the processes' copies identical
    assert a['acc'] == r0['acc'] and a['acc'] > 0.3  # it learned something, and the same thing
    for e in range(len(a['seen'])):
        both = r0['seen'][e] + r1['seen'][e]
        assert sorted(both) == list(range(200)) == sorted(a['seen'][e])  # every sample exactly once per epoch, across the processes


@pytest.mark.slow
def test_processes_that_disagree_refuse_to_start(tmp_path):
    r = _torchrun(2, tmp_path/'bad', 16, 'disagree')
    assert r.returncode != 0 and 'were asked to train different things' in r.stderr
    assert not (tmp_path/'bad').exists() or not list((tmp_path/'bad').iterdir())  # nothing trained, nothing written


@pytest.mark.slow
@pytest.mark.parametrize('method', ['dann', 'fixmatch', 'shot', 'tent'])
def test_every_kind_of_learner_trains_under_torchrun(tmp_path, method):
    "adapt_learner (its unlabeled and labeled target loaders sharded), shot_learner and tent_learner under 2 processes on gloo."
    r = subprocess.run([str(TORCHRUN), '--nproc_per_node', '2', '--master_port', str(29500 + os.getpid() % 1000), str(HERE/'ddp_adapt.py'), str(tmp_path), method],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path/f'rank{k}.json').read_text()) for k in (0, 1))
    assert r0['world'] == 2 and r0['weights'] == r1['weights'] and r0['last'] == r1['last']  # DDP keeps the processes in step
    if method == 'tent': assert 0 <= r0['tent'] <= 1


def _torchrun_cli(tmp_path, *args):
    return subprocess.run([str(TORCHRUN), '--nproc_per_node', '2', '--master_port', str(29500 + os.getpid() % 1000), '--no-python',
                           str(Path(sys.executable).parent/'transfer_nb'), 'compare', '--source', 'uci', '--target', 'mnist', '--seeds', '1',
                           '--width', '4', '--shots', '2', '--out', str(tmp_path), *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_compare_under_torchrun(tmp_path):
    "The command under torchrun: process 0 writes the records and the report, every technique kind runs, and a sweep whose runs fail exits non-zero."
    r = _torchrun_cli(tmp_path/'ok', '--steps', '4', '--source-steps', '8', '--strategies', 'scratch,fine_tune,dann,fixmatch,shot,tent,adabn')
    assert r.returncode == 0, r.stderr[-3000:]
    recs = [json.loads(l) for l in (tmp_path/'ok'/'runs.jsonl').read_text().splitlines()]
    assert len(recs) == 7 and all(x['status'] != 'failed' for x in recs), recs
    assert (tmp_path/'ok'/'report.md').exists() and r.stdout.count('report: ') == 1  # one process speaks
    r = _torchrun_cli(tmp_path/'bad', '--steps', '4', '--source-steps', '8', '--strategies', 'scratch', '--lr', '1e6')
    assert r.returncode != 0 and 'every run failed: DivergenceError' in r.stderr


ray = pytest.importorskip('ray')


@pytest.fixture(scope='module')
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


KW = dict(techniques=['scratch', 'full', 'dann'], seeds=(0, 1), shots=(2,), steps=40, source_steps=20, width=4)  # runs of a few seconds: time to kill one
SAME = lambda df: sorted((r['technique'], r['seed'], str(r['shots']) if r['shots'] == r['shots'] else 'none', round(r['target_acc'], 6), r['status'])
                          for r in df.to_dict('records'))  # NaN (no label budget) as 'none': NaN != NaN


@pytest.mark.slow
def test_a_sweep_on_ray_survives_a_killed_worker_and_equals_the_serial_one(cluster, tmp_path):
    import psutil
    from transfer_nb.experiment import compare
    n = torch.get_num_threads(); torch.set_num_threads(1)  # as a one-CPU Ray worker runs: float sums in the same order
    try: serial = compare(('uci', 'mnist'), **KW)
    finally: torch.set_num_threads(n)
    killed = []
    def kill_one():
        t0 = time.time()
        while time.time() - t0 < 240 and not killed:
            for p in psutil.process_iter(['cmdline']):  # a worker in the middle of a run (the sources are done by then)
                if any('ray::_run_task' in c for c in (p.info['cmdline'] or [])): p.kill(); killed.append(p.pid); break
            time.sleep(0.02)
    th = threading.Thread(target=kill_one); th.start()
    on_ray = compare(('uci', 'mnist'), executor='ray', out=tmp_path/'r', **KW)
    th.join()
    assert killed, "no worker was running a task to kill"
    recs = [json.loads(l) for l in (tmp_path/'r'/'runs.jsonl').read_text().splitlines()]
    keys = [(r['technique'], r['seed'], r['shots']) for r in recs]
    assert len(keys) == len(set(keys)) == 6  # complete, nothing duplicated
    assert SAME(on_ray) == SAME(serial)  # the killed task was run again: the same results as the serial executor


def test_a_run_that_raises_on_ray_is_recorded_as_failed(cluster, tmp_path):
    from transfer_nb.experiment import compare
    def broken(n_in, n_out): raise RuntimeError('this architecture cannot be built')
    df = compare(('uci', 'mnist'), ['scratch', 'dann'], seeds=(0,), shots=(2,), model=broken, steps=2, executor='ray', out=tmp_path)
    assert set(df.status) == {'failed'} and all('this architecture cannot be built' in e for e in df.error)


@pytest.mark.slow
def test_an_address_that_does_not_answer_is_an_error_within_seconds(tmp_path):
    from transfer_nb.cli import main
    t0 = time.time()
    r = subprocess.run([str(Path(sys.executable).parent/'transfer_nb'), 'compare', '--ray', '127.0.0.1:9', '--out', str(tmp_path/'r')], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no Ray cluster answers at '127.0.0.1:9'" in r.stderr and not (tmp_path/'r').exists()
