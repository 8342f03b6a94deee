"The installed `transfer_nb` command, end to end, as a user runs it."
import subprocess, sys
from pathlib import Path
import pytest
from transfer_nb.cli import main

EXE = Path(sys.executable).parent/'transfer_nb'


def run(*args, timeout=600):
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout)


def test_console_script_installed():
    assert EXE.exists(), f"no console script at {EXE}: install the package (pip install -e .)"


def exit_code(argv):
    "`main(argv)`'s exit code, argparse's SystemExit included (in-process: the console script itself is run below)."
    try: return main(argv)
    except SystemExit as e: return e.code


def test_help_everywhere(capsys):
    for args in ([], ['demo'], ['domains'], ['compare'], ['strategies']):
        assert exit_code([*args, '--help']) == 0 and 'usage: transfer_nb' in capsys.readouterr().out


def test_domains_lists_every_domain(capsys):
    assert exit_code(['domains']) == 0
    out = capsys.readouterr().out
    for name in ('syn', 'mnist', 'uci', 'mnistm'): assert f'\n{name} ' in '\n' + out


def test_unknown_domain_is_a_usage_error(capsys):
    assert exit_code(['demo', '--target', 'svhn']) == 2
    assert "unknown domain 'svhn'; valid names: syn, mnist, uci, mnistm" in capsys.readouterr().err


def test_bad_shots_fail_with_message(capsys):
    assert exit_code(['demo', '--source', 'mnist', '--target', 'uci', '--shots', '500']) == 1
    assert "shots=500 but target class '0' has only 124 images" in capsys.readouterr().err


def test_demo_end_to_end():
    r = run('demo', '--source', 'uci', '--target', 'mnist', '--shots', '2', '--source-epochs', '1', '--target-epochs', '1')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith('target test accuracy, uci → mnist, 2 labels per class')
    accs = [float(l.split()[-1]) for l in lines[1:]]
    assert len(accs) == 3 and all(0 <= a <= 1 for a in accs)
    assert 'source model trained' in r.stderr  # progress goes to stderr
