"`compare` persistence and the `transfer_nb compare` command: files written, resume after a kill, damaged records, other configs."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd, pytest, torch
from transfer_nb.experiment import compare, RunStore, summary, logme, leep, hscore, check_techniques, TECHNIQUES

EXE = Path(sys.executable).parent/'transfer_nb'
TINY = ['--source', 'uci', '--target', 'mnist', '--seeds', '1', '--epochs', '1', '--source-epochs', '1', '--adapt-epochs', '1', '--width', '4']


def run(*args, timeout=600): return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout)


def records(out): return [json.loads(l) for l in (Path(out)/'runs.jsonl').read_text().splitlines()]


def test_cli_compare_end_to_end(tmp_path):
    out = tmp_path/'report'
    r = run('compare', *TINY, '--strategies', 'scratch,fine_tune,dann', '--shots', '2,5', '--out', str(out))
    assert r.returncode == 0, r.stderr
    assert {f.name for f in out.iterdir()} == {'report.md', 'runs.csv', 'runs.jsonl', 'config.json', 'bars.png', 'curves.png'}
    recs = records(out)
    assert len(recs) == 5 and {(x['technique'], x['shots']) for x in recs} == {('scratch', 2), ('scratch', 5), ('fine_tune', 2), ('fine_tune', 5), ('dann', 0)}
    assert all(0 <= x['target_acc'] <= 1 for x in recs)
    assert len(pd.read_csv(out/'runs.csv')) == 5
    md = (out/'report.md').read_text()
    assert md.startswith('# uci → mnist') and '| technique | shots |' in md and '![learning curves](curves.png)' in md
    assert 'report:' in r.stdout and 'fine_tune' in r.stdout  # results on stdout, progress on stderr
    assert 'comparing' in r.stderr


def test_cli_lists_and_bad_names(tmp_path, capsys):
    from transfer_nb.cli import main
    assert main(['strategies']) == 0
    listed = capsys.readouterr().out
    assert all(t in listed for t in TECHNIQUES)
    for args, msg in ((['--strategies', 'scratch,lora'], "unknown technique 'lora'; valid: direct"),
                      (['--source', 'svhn'], "unknown domain 'svhn'; valid names: syn, mnist, uci, mnistm"),
                      (['--shots', 'ten'], "shots must be whole numbers or 'all'")):
        with pytest.raises(SystemExit) as e: main(['compare', *args, '--out', str(tmp_path/'x')])
        assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path/'x').exists()  # nothing written for a usage error


def test_cli_refuses_other_configuration(tmp_path):
    out = str(tmp_path/'r')
    assert run('compare', *TINY, '--strategies', 'scratch', '--shots', '2', '--out', out).returncode == 0
    r = run('compare', *TINY[:-2], '--width', '8', '--strategies', 'scratch', '--shots', '2', '--out', out)
    assert r.returncode == 1 and 'holds results of a different configuration' in r.stderr and 'width: 4 there, 8 now' in r.stderr
    assert len(records(out)) == 1  # nothing lost
    r = run('compare', *TINY[:-2], '--width', '8', '--strategies', 'scratch', '--shots', '2', '--out', out, '--overwrite')
    assert r.returncode == 0 and len(records(out)) == 1 and json.loads((Path(out)/'config.json').read_text())['width'] == 8


def test_killed_sweep_resumes_without_duplicates_or_losses(tmp_path):
    out = tmp_path/'sweep'
    args = ['compare', *TINY[:4], '--seeds', '2', '--epochs', '2', '--source-epochs', '1', '--width', '4',
            '--strategies', 'scratch,full,fine_tune,linear_probe', '--shots', '1,2,3', '--out', str(out)]
    p = subprocess.Popen([str(EXE), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it once a few runs are on disk, mid-sweep
        if (out/'runs.jsonl').exists() and len((out/'runs.jsonl').read_text().splitlines()) >= 4: break
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL); p.wait()
    before = records(out)
    assert 4 <= len(before) < 24, len(before)
    r = run(*args)
    assert r.returncode == 0, r.stderr
    after = records(out)
    keys = [(x['technique'], x['seed'], x['shots']) for x in after]
    assert len(keys) == len(set(keys)) == 24  # every run once
    assert after[:len(before)] == before  # the records written before the kill are kept as they were


def test_damaged_last_record_is_redone(tmp_path):
    kw = dict(techniques=['scratch'], seeds=(0,), shots=(2, 3), epochs=1, source_epochs=1, width=4, out=tmp_path)
    compare(('uci', 'mnist'), **kw)
    lines = (tmp_path/'runs.jsonl').read_text().splitlines()
    (tmp_path/'runs.jsonl').write_text(lines[0] + '\n' + lines[1][:15])  # killed mid-write
    with pytest.warns(UserWarning, match='dropped an unfinished last record'):
        df = compare(('uci', 'mnist'), **kw)
    assert len(df) == 2 and len(records(tmp_path)) == 2 and records(tmp_path)[0] == json.loads(lines[0])
    (tmp_path/'runs.jsonl').write_text('not json\n' + '\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match='line 1 is not a valid record'): RunStore(tmp_path, json.loads((tmp_path/'config.json').read_text()))


def test_summary_flags_negative_transfer():
    rows = [dict(technique='scratch', seed=s, shots=10, target_acc=a, source_acc=0.1, trainable=1, seconds=1.) for s, a in enumerate((0.50, 0.52, 0.48))]
    rows += [dict(technique='bad', seed=s, shots=10, target_acc=a, source_acc=0.9, trainable=1, seconds=1.) for s, a in enumerate((0.30, 0.32, 0.31))]
    rows += [dict(technique='noisy', seed=s, shots=10, target_acc=a, source_acc=0.9, trainable=1, seconds=1.) for s, a in enumerate((0.30, 0.60, 0.45))]
    s = summary(pd.DataFrame(rows)).set_index('technique')
    assert s.loc['bad', 'worse_than_scratch'] and not s.loc['noisy', 'worse_than_scratch'] and not s.loc['scratch', 'worse_than_scratch']


def test_transferability_scores_prefer_informative_features():
    torch.manual_seed(0)
    y = torch.arange(400) % 4
    informative = torch.nn.functional.one_hot(y, 4).double() * 2 + torch.randn(400, 4, dtype=torch.double)
    noise = torch.randn(400, 4, dtype=torch.double)
    assert logme(informative, y) > logme(noise, y) and hscore(informative, y) > hscore(noise, y)
    p = torch.nn.functional.one_hot(y, 4).double() * 0.8 + 0.05
    assert leep(p, y) > leep(torch.full((400, 4), 0.25, dtype=torch.double), y)
    assert leep(torch.full((400, 4), 0.25, dtype=torch.double), y) == pytest.approx(torch.log(torch.tensor(0.25)).item())
