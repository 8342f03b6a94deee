"The installed `transfer_nb` command, end to end, as a user runs it."
import subprocess, sys
from pathlib import Path
import pytest

EXE = Path(sys.executable).parent/'transfer_nb'


def run(*args, timeout=600):
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout)


def test_console_script_installed():
    assert EXE.exists(), f"no console script at {EXE}: install the package (pip install -e .)"


def test_help_everywhere():
    for args in ([], ['demo'], ['domains']):
        r = run(*args, '--help')
        assert r.returncode == 0 and 'usage: transfer_nb' in r.stdout


def test_domains_lists_every_domain():
    r = run('domains')
    assert r.returncode == 0
    for name in ('syn', 'mnist', 'uci', 'mnistm'): assert f'\n{name} ' in '\n' + r.stdout


def test_unknown_domain_is_a_usage_error():
    r = run('demo', '--target', 'svhn')
    assert r.returncode == 2 and "unknown domain 'svhn'; valid names: syn, mnist, uci, mnistm" in r.stderr


def test_bad_shots_fail_with_message():
    r = run('demo', '--source', 'mnist', '--target', 'uci', '--shots', '500')
    assert r.returncode == 1 and "shots=500 but target class '0' has only 124 images" in r.stderr


def test_demo_end_to_end():
    r = run('demo', '--source', 'uci', '--target', 'mnist', '--shots', '2', '--source-epochs', '1', '--target-epochs', '1')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith('target test accuracy, uci → mnist, 2 labels per class')
    accs = [float(l.split()[-1]) for l in lines[1:]]
    assert len(accs) == 3 and all(0 <= a <= 1 for a in accs)
    assert 'source model trained' in r.stderr  # progress goes to stderr
