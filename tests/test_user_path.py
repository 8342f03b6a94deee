"""The user's path, run the way a user runs it: a plain install's imports, the README's code blocks and command lines,
every flag of `transfer_nb compare` on folders this test writes, every technique through `compare`, and each way a
run can fail ending in one clear line, an exit code and a report (never a traceback).

Everything here runs the installed module from pytest, outside any notebook's namespace (a name imported only in a
notebook's hidden cell fails here). Tests that start runs assert the runs' status, not only the exit code. The heavier
ones are marked slow; CI runs this whole file (`pytest -m 'slow or not slow' tests/test_user_path.py`) on the versions a
plain install resolves, and again with the developer venv."""
import errno, json, os, re, shlex, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch, torchvision
from torch import nn
from transfer_nb.cli import main
from folders import write_folder
from transfer_nb.pairs import domain_pair
from transfer_nb.experiment import TECHNIQUES, compare

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent/'transfer_nb'
TINY = ['--seeds', '1', '--steps', '3', '--source-steps', '6', '--width', '4']  # appended: argparse keeps a flag's last value


def run(*args, timeout=600, **kw): return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)
def py(code, timeout=300, env=None): return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=timeout, env=env)
def records(out): return [json.loads(l) for l in (Path(out)/'runs.jsonl').read_text().splitlines()]


def cli(argv, capsys):
    "`main(argv)` in this process: (exit code, stdout, stderr); argparse's exits included."
    try: code = main([str(a) for a in argv])
    except SystemExit as e: code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# ---- a plain install: nothing optional is imported ----

BLOCK = '''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):  # as after a plain `pip install`: no extra is installed
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('accelerate', 'ray', 'timm'): raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
'''


def test_every_module_imports_without_the_optional_extras():
    code = BLOCK + ("import importlib, pkgutil, transfer_nb\n"
                    "mods = [m.name for m in pkgutil.iter_modules(transfer_nb.__path__) if not m.name.startswith('_')]\n"
                    "for m in mods: importlib.import_module('transfer_nb.' + m)\n"
                    "print(sorted(mods), 'fastai.distributed' in sys.modules)")
    r = py(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['adapt', 'autopilot', 'cli', 'core', 'data', 'ddp', 'domains', 'experiment', 'finetune', 'folders', 'pairs', 'report', 'scores', 'store', 'twodomain', 'validators', 'weights'] False"


def test_the_ddp_module_imports_without_accelerate_and_using_it_names_the_extra():
    "Importing every module (as doc tools and pkgutil walks do) works; building a distributed loader or fit says what to install, never fastai's NameError."
    code = BLOCK + ("import transfer_nb.ddp as d\n"
                    "from fastai.data.load import DataLoader\n"
                    "for make in (lambda: d.ShardedDL(DataLoader(list(range(8)), bs=4)), lambda: d.DistributedFit()):\n"
                    "    try: make(); print('built')\n"
                    "    except ImportError as e: print(type(e).__name__, e)")
    r = py(code)
    assert r.returncode == 0, r.stderr
    want = "ImportError transfer_nb.ddp (one fit on several processes) needs accelerate: pip install 'transfer_nb[distributed]'"
    assert r.stdout.strip().splitlines() == [want, want], r.stdout


def test_a_launch_without_accelerate_is_a_clear_error():
    "Under torchrun (WORLD_SIZE > 1) a learner needs accelerate: the message says how to get it."
    code = BLOCK + ("import torch\nfrom transfer_nb.core import classifier_learner, DigitCNN\nfrom fastai.data.core import DataLoaders\n"
                    "from fastai.data.load import DataLoader\nds = list(zip(torch.rand(8, 1, 12, 12), torch.randint(0, 2, (8,))))\n"
                    "try: classifier_learner(DataLoaders(DataLoader(ds, bs=4), DataLoader(ds, bs=4)), DigitCNN(width=4, n_out=2))\n"
                    "except ImportError as e: print(e)")
    r = py(code, env={**os.environ, 'WORLD_SIZE': '2', 'RANK': '0'})
    assert r.returncode == 0, r.stderr
    assert "one fit on several processes needs accelerate: pip install 'transfer_nb[distributed]'" in r.stdout


def test_help_and_usage_errors_come_before_the_library_is_imported():
    "`--help` and a mistyped number answer from the parser alone: torch and fastai are not imported for them."
    code = ("import sys\nfrom transfer_nb.cli import main\n"
            "for argv in (['--help'], ['compare', '--help'], ['demo', '--help'], ['compare', '--width', '0'], ['compare', '--shots', 'x'], ['compare', '--lr', 'nan']):\n"
            "    try: main(argv)\n    except SystemExit as e: print('exit', e.code)\n"
            "print('torch' in sys.modules, 'fastai' in sys.modules)")
    r = py(code)
    assert r.stdout.splitlines()[-1] == 'False False', r.stdout
    assert [l for l in r.stdout.splitlines() if l.startswith('exit')] == ['exit 0'] * 3 + ['exit 2'] * 3
    for msg in ("--width must be an int ≥ 1, got 0", "shots must be whole numbers ≥ 1 or 'all'", "--lr must be a finite number > 0, got nan"):
        assert msg in r.stderr


# ---- the README, verbatim ----

def readme_blocks(kind):
    "The README's fenced code blocks of `kind` ('python' or 'sh'), each with the output block that follows it (python only)."
    text = (ROOT/'README.md').read_text()
    return re.findall(rf"```{kind}\n(.*?)```(?:\n\n((?:    [^\n]*\n|\n)+))?", text, flags=re.S)


def test_readme_python_blocks_print_what_the_readme_shows():
    "Each python block run in a fresh interpreter, its last expression shown as a notebook shows it, equals the README's output."
    blocks = readme_blocks('python')
    assert len(blocks) >= 3
    code = ("import ast\nns = {}\n"
            f"for src in {[b for b, _ in blocks]!r}:\n"
            "    tree = ast.parse(src)\n"
            "    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None\n"
            "    exec(compile(tree, 'README', 'exec'), ns)\n"
            "    print(repr(eval(compile(ast.Expression(last.value), 'README', 'eval'), ns)) if last else '')\n"
            "    print('<<<end>>>')")
    r = py(code, timeout=900)
    assert r.returncode == 0, r.stderr
    shown = r.stdout.split('<<<end>>>\n')
    for (src, want), got in zip(blocks, shown):
        want = '\n'.join(l[4:] for l in want.strip('\n').splitlines()).strip() if want else ''
        assert got.strip() == want, f"README block\n{src}\nprints\n{got}\nbut the README shows\n{want}"


def readme_commands():
    "Every `transfer_nb ...` command line of the README's sh blocks, as a list of arguments."
    cmds = []
    for block, _ in readme_blocks('sh'):
        for line in block.splitlines():
            part = line.split('&&')[-1].strip()
            words = shlex.split(part)
            if words and Path(words[0]).name == 'transfer_nb': cmds.append(words[1:])
    return cmds


@pytest.mark.slow
def test_readme_command_lines_run(tmp_path):
    "Every README command line, at tiny budgets, on folders this test writes for the placeholder paths: exit 0, a report, no failed run."
    cmds = readme_commands()
    assert ['compare'] in cmds and any(c[0] == 'auto' for c in cmds) and any('--target-dir' in c for c in cmds) and any('--arch' in c for c in cmds) and ['backbones'] in cmds
    imgs = write_folder(tmp_path/'images')
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path/'weights.pth')  # a user's own ResNet-18 weights
    for i, argv in enumerate(cmds):
        argv = [str(imgs) if a.endswith('/images') else str(tmp_path/'weights.pth') if a.endswith('.pth') else a for a in argv]
        if argv[0] == 'compare': argv += [*TINY, '--size', '32', '--out', tmp_path/f'r{i}'] if '--target-dir' in argv else [*TINY, '--out', tmp_path/f'r{i}']
        if argv[0] == 'auto': argv += ['--steps', '2', '--quiet', '--out', tmp_path/f'r{i}']  # the backbones on this machine (EfficientNet-Lite0 comes with the package)
        r = run(*argv)
        assert r.returncode == 0, (argv, r.stderr[-2000:])
        assert 'Traceback' not in r.stderr
        if argv[0] == 'compare':
            assert (tmp_path/f'r{i}'/'report.md').exists()
            assert all(x['status'] != 'failed' for x in records(tmp_path/f'r{i}')), records(tmp_path/f'r{i}')
        if argv[0] == 'auto':
            assert (tmp_path/f'r{i}'/'autopilot.md').exists() and len(list((tmp_path/f'r{i}'/'learner').glob('*.pkl'))) == 1


# ---- every flag of compare, end to end ----

@pytest.mark.slow
def test_own_weights_file_and_arch_on_a_folder(tmp_path):
    "--model FILE --arch on a target folder alone: the default techniques are the ones that apply; --size, --shots N,all."
    imgs = write_folder(tmp_path/'field')
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path/'mine.pth')
    r = run('compare', '--target-dir', imgs, '--model', tmp_path/'mine.pth', '--arch', 'mobilenet_v3_small', '--size', '32',
            '--shots', '3,all', '--seeds', '1', '--steps', '4', '--out', tmp_path/'r')
    assert r.returncode == 0, r.stderr
    recs = records(tmp_path/'r')
    assert sorted((x['technique'], str(x['shots'])) for x in recs) == [('fine_tune', '3'), ('fine_tune', 'all'), ('linear_probe', '3'), ('linear_probe', 'all')]
    assert all(x['status'] != 'failed' for x in recs), recs
    cfg = json.loads((tmp_path/'r'/'config.json').read_text())
    assert cfg['model'].startswith('Normalized (given, weights') and cfg['data']['image'] == '3×32×32'
    assert 'comparing linear_probe, fine_tune on field (target only)' in r.stderr


@pytest.mark.slow
def test_compare_with_a_given_network_it_did_not_write():
    "compare(model=<nn.Module>): a torchvision ResNet-18 inside a user's wrapper (its head at backbone.fc), trained on the source first."
    from transfer_nb.core import fit_classifier
    class Wrapped(nn.Module):  # a user's own wrapper around a torchvision network
        def __init__(self): super().__init__(); self.backbone = torchvision.models.resnet18(num_classes=3)
        def forward(self, x): return self.backbone(x)
    net = Wrapped()
    p = domain_pair('uci:0-2', 'mnist:0-2', model=net, size=32, seed=0)
    fit_classifier(p.source, net, epochs=3, lr=3e-3)
    assert net.classes == ['0', '1', '2']
    df = compare(p, ['direct', 'adabn', 'fine_tune', 'dann', 'shot', 'tent'], seeds=(0,), shots=(5,), model=net, steps=10, source_steps=10)
    assert set(df.status) == {'ok'}, df[['technique', 'status', 'error']] if 'error' in df else df[['technique', 'status']]
    assert set(df.technique) == {'direct', 'adabn', 'fine_tune', 'dann', 'shot', 'tent'}


@pytest.mark.slow
def test_every_technique_through_compare_runs_ok():
    "Every name in TECHNIQUES, once, through compare: status ok for each (a test that passed when runs fail would prove nothing)."
    names = [t if t != 'shared_specific' else 'shared_specific:2' for t in TECHNIQUES]
    df = compare(('uci:0-2', 'mnist:0-2'), names, seeds=(0,), shots=(5,), steps=30, source_steps=60, width=8)
    assert sorted(df.technique) == sorted(names)
    bad = df[df.status != 'ok']
    assert bad.empty, bad[[c for c in ('technique', 'status', 'error') if c in bad]].to_string()


# ---- the folder path speaks the command line's language ----

def test_folder_path_messages_name_flags(tmp_path, capsys):
    imgs = write_folder(tmp_path/'field', n=8)
    code, _, err = cli(['compare', '--target-dir', imgs, '--out', tmp_path/'r'], capsys)
    assert code == 1 and '--model NAME (transfer_nb backbones lists them)' in err and '--model FILE --arch NAME' in err and 'model=' not in err
    code, _, err = cli(['compare', '--target-dir', imgs, '--model', 'efficientnet-lite0', '--strategies', 'dann,direct', '--out', tmp_path/'r'], capsys)
    assert code == 1 and 'dann cannot run here: it trains on source data' in err and "direct cannot run here: it applies the model's own head" in err
    can = err.split('these can: --strategies ')[1].split()[0].split(',')
    assert 'linear_probe' in can and 'fine_tune' in can and not {'dann', 'direct', 'adabn', 'shot', 'tent', 'fixmatch'} & set(can)
    assert '--source-dir adds the ones that train on source data' in err and not (tmp_path/'r').exists()
    code, _, err = cli(['compare', '--target-dir', imgs, '--model', 'resnet50', '--out', tmp_path/'r'], capsys)
    assert code == 1 and "--model resnet50: the pretrained weights of 'resnet50' are not on this machine" in err
    assert '--model FILE --arch resnet50' in err and 'download=True' not in err
    code, _, err = cli(['compare', '--target-dir', imgs, '--model', tmp_path/'nope.pth', '--arch', 'resnet18', '--out', tmp_path/'r'], capsys)
    assert code == 1 and 'no such weights file' in err


def test_backbones_says_which_weights_are_here(capsys):
    code, out, _ = cli(['backbones'], capsys)
    assert code == 0 and re.search(r'^efficientnet-lite0 +here ', out, re.M) and 'Your own weights: --model FILE --arch NAME' in out


def test_domains_lists_without_loading(capsys, monkeypatch):
    import transfer_nb.domains as data
    def boom(load):
        def f(*a, **k): raise AssertionError(f"transfer_nb domains loaded {load.__name__}")
        f.__doc__ = load.__doc__
        return f
    for n, load in list(data.DOMAINS.items()): monkeypatch.setitem(data.DOMAINS, n, boom(load))
    code, out, _ = cli(['domains'], capsys)
    assert code == 0 and all(re.search(rf'^{n} ', out, re.M) for n in data.DOMAINS)


# ---- failure paths: one clear line, an exit code, a report ----

UCI = ['--source', 'uci', '--target', 'mnist']


def test_when_every_run_fails_the_message_says_why(tmp_path, capsys):
    code, out, err = cli(['compare', *UCI, *TINY, '--strategies', 'scratch,full', '--shots', '2', '--lr', '1e6', '--out', tmp_path], capsys)
    assert code == 1 and 'Traceback' not in err and 'KeyError' not in err
    assert 'transfer_nb: error: every run failed: DivergenceError: training diverged' in err and 'lower the learning rate' in err
    assert 'Exception occured in' not in err  # fastai's wrapper is not the reason
    assert re.search(r'\[1/2\] scratch seed 0 shots 2: failed \(DivergenceError: training diverged', err)  # the progress line carries it
    assert 'Failed runs:' in (tmp_path/'report.md').read_text() and f'report: {tmp_path}/report.md' in out


def test_some_runs_fail_exit_1_with_a_report_and_a_rerun_retries_only_them(tmp_path, capsys, monkeypatch):
    import transfer_nb.experiment as e
    real = e.adabn
    monkeypatch.setattr(e, 'adabn', lambda *a, **k: (_ for _ in ()).throw(RuntimeError('the pool is on fire')))
    argv = ['compare', *UCI, *TINY, '--strategies', 'scratch,adabn', '--shots', '2', '--out', tmp_path]
    code, out, err = cli(argv, capsys)
    assert code == 1 and 'transfer_nb: error: 1 of 2 runs failed: RuntimeError: the pool is on fire' in err
    assert '| scratch | 2 |' in (tmp_path/'report.md').read_text() and '- adabn, seed 0: RuntimeError: the pool is on fire' in (tmp_path/'report.md').read_text()
    monkeypatch.setattr(e, 'adabn', real)
    code, out, err = cli(argv, capsys)
    assert code == 0 and re.search(r'\[1/1\] adabn seed 0: (ok|collapsed)', err)  # only the failed run ran again
    recs = records(tmp_path)
    assert [x['technique'] for x in recs] == ['scratch', 'adabn', 'adabn'] and [x['status'] == 'failed' for x in recs] == [False, True, False]
    assert '| adabn | none (unlabeled) |' in (tmp_path/'report.md').read_text() and 'Failed runs' not in (tmp_path/'report.md').read_text()


@pytest.mark.slow
def test_ctrl_c_reports_the_finished_runs_and_a_rerun_resumes(tmp_path):
    argv = ['compare', *UCI, '--seeds', '3', '--steps', '40', '--source-steps', '40', '--width', '4', '--strategies', 'scratch', '--shots', '2', '--out', tmp_path]
    # Ctrl-C at a terminal: SIGINT at its default disposition. A job started in the background (as CI may start this
    # one) inherits SIGINT ignored, and Python then leaves it ignored, as a backgrounded command should.
    p = subprocess.Popen([str(EXE), *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t = time.time()
    while not ((tmp_path/'runs.jsonl').exists() and (tmp_path/'runs.jsonl').read_text().count('\n') >= 1):
        assert p.poll() is None and time.time() - t < 300, p.communicate()
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    k = len(records(tmp_path))
    assert f'interrupted after {k} of 3 runs; rerun the same command to resume' in err and 'Traceback' not in err
    assert (tmp_path/'report.md').exists() and not (tmp_path/'.lock.json').exists()
    r = run(*argv)
    assert r.returncode == 0 and f'[{3 - k}/{3 - k}] scratch seed 2' in r.stderr and len(records(tmp_path)) == 3


def test_ctrl_c_while_a_record_is_made_durable_counts_it_as_the_rerun_will(tmp_path, capsys, monkeypatch):
    # The record is in runs.jsonl once written; Ctrl-C can land while fsync makes it durable (CI saw it: the message said
    # 0 finished while the file, which a rerun resumes from, held 1). The count must be the file's.
    argv = ['compare', *UCI, *TINY, '--strategies', 'scratch', '--shots', '2,3', '--out', tmp_path]
    def ctrl_c(fd): raise KeyboardInterrupt
    monkeypatch.setattr(os, 'fsync', ctrl_c)
    code, _, err = cli(argv, capsys)
    assert code == 130 and len(records(tmp_path)) == 1, err
    assert 'interrupted after 1 of 2 runs; rerun the same command to resume' in err and 'Traceback' not in err
    monkeypatch.undo()
    code, _, err = cli(argv, capsys)
    assert code == 0 and '[1/1] scratch seed 0' in err and len(records(tmp_path)) == 2, err


def test_a_full_disk_is_a_clear_error_and_the_records_stay_intact(tmp_path, capsys, monkeypatch):
    argv = ['compare', *UCI, *TINY, '--strategies', 'scratch', '--shots', '2,3', '--out', tmp_path]
    assert cli(argv[:-3] + ['2', '--out', tmp_path], capsys)[0] == 0  # one run on disk
    before = (tmp_path/'runs.jsonl').read_bytes()
    def full(fd): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, 'fsync', full)
    code, _, err = cli(argv, capsys)
    assert code == 1 and 'No space left on device' in err and 'the records already in it (1) are intact' in err and 'Traceback' not in err
    assert (tmp_path/'runs.jsonl').read_bytes() == before  # no half-written record


def test_an_unwritable_out_folder_is_a_clear_error(tmp_path, capsys, monkeypatch):
    real = Path.mkdir
    def denied(self, *a, **k):
        if self.name == 'locked': raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, *a, **k)
    monkeypatch.setattr(Path, 'mkdir', denied)
    code, _, err = cli(['compare', *UCI, *TINY, '--strategies', 'scratch', '--shots', '2', '--out', tmp_path/'locked'], capsys)
    assert code == 1 and f"cannot create the results folder '{tmp_path}/locked': Permission denied" in err and 'Traceback' not in err


def test_a_store_from_a_newer_transfer_nb_is_refused(tmp_path, capsys):
    (tmp_path/'config.json').write_text(json.dumps(dict(format=99, written_by='transfer_nb 9.0')))
    code, _, err = cli(['compare', *UCI, *TINY, '--out', tmp_path], capsys)
    assert code == 1 and "was written by a newer transfer_nb (transfer_nb 9.0, results format 99" in err and 'upgrade transfer_nb' in err


def test_a_resumed_sweep_under_another_environment_says_so(tmp_path, capsys):
    argv = ['compare', *UCI, *TINY, '--strategies', 'scratch', '--shots', '2', '--out', tmp_path]
    assert cli(argv, capsys)[0] == 0
    cfg = json.loads((tmp_path/'config.json').read_text())
    assert cfg['environment']['threads'] == torch.get_num_threads() and cfg['environments'] == [cfg['environment']]
    cfg['environments'][0]['threads'] = 99  # as if the first runs had been made with 99 threads
    (tmp_path/'config.json').write_text(json.dumps(cfg))
    code, _, err = cli(argv[:-2] + ['--seeds', '2', '--out', tmp_path], capsys)
    assert code == 0 and 'were made under' in err and '99 torch threads' in err
    md = (tmp_path/'report.md').read_text()
    assert 'Runs made under 2 environments' in md and '99 torch threads' in md


def test_demo_reports_a_collapsed_run(capsys):
    "The issue's input: budgets of one step make the source model predict one class; the demo says so instead of failing."
    code, out, err = cli(['demo', '--source', 'mnist', '--target', 'mnistm', '--shots', '1', '--steps', '1', '--source-steps', '1'], capsys)
    assert code == 0 and 'Traceback' not in err and 'AttributeError' not in err
    assert re.search(r'source only \(no target labels\) +\d\.\d{3}  \(collapsed', out)
