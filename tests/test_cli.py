"The installed `transfer_nb` command, end to end, as a user runs it: built-in domains, your own image folders, bad input."
import json, re, subprocess, sys
from pathlib import Path
import pytest
from transfer_nb.cli import main
from folders import write_folder

EXE = Path(sys.executable).parent/'transfer_nb'


def run(*args, timeout=600):
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout)


def exit_code(argv):
    "`main(argv)`'s exit code, argparse's SystemExit included (in-process: the console script itself is run elsewhere)."
    try: return main(argv)
    except SystemExit as e: return e.code


def test_console_script_installed():
    assert EXE.exists(), f"no console script at {EXE}: install the package (pip install -e .)"


def test_help_everywhere(capsys):
    for args in ([], ['demo'], ['domains'], ['compare'], ['strategies'], ['backbones']):
        assert exit_code([*args, '--help']) == 0 and 'usage: transfer_nb' in capsys.readouterr().out


def test_lists(capsys):
    assert exit_code(['domains']) == 0
    out = capsys.readouterr().out
    for name in ('syn', 'mnist', 'uci', 'mnistm', 'fashion'): assert f'\n{name} ' in '\n' + out
    assert exit_code(['backbones']) == 0 and 'efficientnet-lite0' in capsys.readouterr().out


@pytest.mark.parametrize('args,msg', [
    (['demo', '--target', 'svhn'], "unknown domain 'svhn'; valid names: syn, mnist, uci, mnistm, fashion"),
    (['compare', '--width', '0'], "--width must be an int ≥ 1, got 0"),
    (['compare', '--shots', '0'], "shots must be whole numbers ≥ 1 or 'all'"),
    (['compare', '--steps', '-3'], "--steps must be an int ≥ 1, got -3"),
    (['compare', '--lr', 'nan'], "--lr must be a finite number > 0, got nan"),
    (['compare', '--strategies', 'scratch,lora'], "unknown technique 'lora'"),
    (['compare', '--target-dir', '/no/such/folder'], "'/no/such/folder' is not a folder"),
])
def test_usage_errors_name_the_value(capsys, tmp_path, args, msg):
    assert exit_code([*args, '--out', str(tmp_path/'x')] if args[0] == 'compare' else args) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path/'x').exists()  # nothing written for a usage error


@pytest.mark.slow
def test_run_errors_are_messages_not_tracebacks(tmp_path):
    f = tmp_path/'afile'; f.write_text('x')
    r = run('compare', '--out', str(f))
    assert r.returncode == 2 and 'is a file: give a folder for the results' in r.stderr and 'Traceback' not in r.stderr
    out = tmp_path/'o'; out.mkdir(); (out/'config.json').write_text('{not json')
    r = run('compare', '--source', 'uci', '--target', 'mnist', '--seeds', '1', '--steps', '2', '--source-steps', '2', '--width', '4', '--out', str(out))
    assert r.returncode == 1 and 'is not valid JSON' in r.stderr and 'Traceback' not in r.stderr
    r = run('compare', '--model', str(tmp_path/'w.safetensors'), '--out', str(tmp_path/'p'))
    assert r.returncode == 1 and 'no such weights file' in r.stderr
    (tmp_path/'w.safetensors').write_bytes(b'weights')
    r = run('compare', '--model', str(tmp_path/'w.safetensors'), '--out', str(tmp_path/'p'))
    assert r.returncode == 1 and 'is a weights file: pass --arch' in r.stderr
    r = run('compare', '--model', 'resnet1000', '--out', str(tmp_path/'p'))
    assert r.returncode == 1 and "unknown pretrained network 'resnet1000'" in r.stderr


@pytest.mark.slow
def test_cli_on_your_own_folders(tmp_path):
    "Target-only with a pretrained backbone, then source and target folders with the digit CNN: the report names model and data."
    tgt = write_folder(tmp_path/'field')
    r = run('compare', '--target-dir', str(tgt), '--model', 'efficientnet-lite0', '--size', '32', '--strategies', 'linear_probe,fine_tune',
            '--seeds', '1', '--shots', '4', '--steps', '3', '--out', str(tmp_path/'r1'))
    assert r.returncode == 0, r.stderr
    md = (tmp_path/'r1'/'report.md').read_text()
    assert md.startswith('# field (target only)') and 'model: pretrained efficientnet-lite0' in md and '`field` (target only), images 3×32×32' in md and '| linear_probe | 4 |' in md
    cfg = json.loads((tmp_path/'r1'/'config.json').read_text())
    assert cfg['augment'] == 'photos' and cfg['fingerprints']['source'] is None
    src = write_folder(tmp_path/'studio', rgb=False, n=40)
    r = run('compare', '--source-dir', str(src), '--target-dir', str(tgt), '--strategies', 'scratch,full,dann', '--seeds', '1', '--shots', '3',
            '--steps', '3', '--source-steps', '10', '--width', '4', '--out', str(tmp_path/'r2'))
    assert r.returncode == 0, r.stderr
    md = (tmp_path/'r2'/'report.md').read_text()
    assert '`studio` → `field`' in md and 'DigitCNN(width=4), trained on the source' in md
    recs = [json.loads(l) for l in (tmp_path/'r2'/'runs.jsonl').read_text().splitlines()]
    assert {r['technique'] for r in recs} == {'scratch', 'full', 'dann'} and all(r['status'] in ('ok', 'collapsed') for r in recs)


@pytest.mark.slow
def test_demo_end_to_end():
    r = run('demo', '--source', 'uci', '--target', 'mnist', '--shots', '2', '--steps', '5', '--source-steps', '20')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith('target test accuracy, uci → mnist, 2 labels per class')
    accs = [float(re.search(r'  (\d\.\d{3})', l)[1]) for l in lines[1:]]  # a collapsed run's line adds a note after its accuracy
    assert len(accs) == 3 and all(0 <= a <= 1 for a in accs)
    assert 'uci → mnist, 2 labels per class, seed 0' in r.stderr  # progress goes to stderr
