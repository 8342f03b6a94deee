"`compare`, its records and reports, and the `transfer_nb compare` command: files written, resume after a kill, damaged records, other configurations."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd, pytest, torch
from transfer_nb.pairs import domain_pair
from transfer_nb.experiment import compare, TECHNIQUES
from transfer_nb.store import RunStore, check_techniques, selected
from transfer_nb.report import results_table, gap_table, validator_table, write_report
from transfer_nb.scores import logme, leep, hscore

EXE = Path(sys.executable).parent/'transfer_nb'
TINY = ['--source', 'uci', '--target', 'mnist', '--seeds', '1', '--steps', '5', '--source-steps', '20', '--width', '4']
KW = dict(seeds=(0,), steps=5, source_steps=20, width=4)


def run(*args, timeout=600): return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout)
def records(out): return [json.loads(l) for l in (Path(out)/'runs.jsonl').read_text().splitlines()]


@pytest.mark.slow
def test_cli_compare_end_to_end(tmp_path):
    out = tmp_path/'report'
    r = run('compare', *TINY, '--strategies', 'scratch,fine_tune,dann', '--shots', '2,5', '--out', str(out))
    assert r.returncode == 0, r.stderr
    assert {f.name for f in out.iterdir() if not f.name.startswith('.')} == {'report.md', 'runs.csv', 'runs.jsonl', 'config.json', 'bars.png', 'curves.png', 'command.txt'}
    recs = records(out)
    assert {(x['technique'], x['shots']) for x in recs} == {('scratch', 2), ('scratch', 5), ('fine_tune', 2), ('fine_tune', 5), ('dann', None)}
    assert all(0 <= x['target_acc'] <= 1 and x['status'] in ('ok', 'collapsed') for x in recs)  # tiny budgets: a run may collapse (a result), none fails
    assert len(pd.read_csv(out/'runs.csv')) == 5
    md = (out/'report.md').read_text()
    assert md.startswith('# uci → mnist') and '| technique | shots | target (%) |' in md and '![learning curves](curves.png)' in md
    assert 'Reproduce with `transfer_nb compare --source uci --target mnist' in md and 'data fingerprints' in md
    assert 'report:' in r.stdout and 'fine_tune' in r.stdout and 'comparing' in r.stderr  # results on stdout, progress on stderr
    assert 'Warning' not in r.stderr  # no third-party warnings on every run


@pytest.mark.slow
def test_cli_refuses_other_configuration(tmp_path):
    out = str(tmp_path/'r')
    assert run('compare', *TINY, '--strategies', 'scratch', '--shots', '2', '--out', out).returncode == 0
    r = run('compare', *TINY[:-2], '--width', '8', '--strategies', 'scratch', '--shots', '2', '--out', out)
    assert r.returncode == 1 and 'holds results of a different configuration' in r.stderr and 'DigitCNN(width=4)' in r.stderr and 'Traceback' not in r.stderr
    assert len(records(out)) == 1  # nothing lost
    r = run('compare', *TINY[:-2], '--width', '8', '--strategies', 'scratch', '--shots', '2', '--out', out, '--overwrite')
    assert r.returncode == 0 and len(records(out)) == 1 and 'width=8' in json.loads((Path(out)/'config.json').read_text())['model']


@pytest.mark.slow
def test_killed_sweep_resumes_without_duplicates_or_losses(tmp_path):
    out = tmp_path/'sweep'
    args = ['compare', *TINY[:4], '--seeds', '2', '--steps', '10', '--source-steps', '20', '--width', '4',
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
    kw = dict(techniques=['scratch'], shots=(2, 3), out=tmp_path, **KW)
    compare(('uci', 'mnist'), **kw)
    lines = (tmp_path/'runs.jsonl').read_text().splitlines()
    (tmp_path/'runs.jsonl').write_text(lines[0] + '\n' + lines[1][:15])  # killed mid-write
    with pytest.warns(UserWarning, match='dropped an unfinished last record'): df = compare(('uci', 'mnist'), **kw)
    assert len(df) == 2 and len(records(tmp_path)) == 2 and records(tmp_path)[0] == json.loads(lines[0])
    (tmp_path/'runs.jsonl').write_text('not json\n' + '\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match='line 1 is not a valid record'): compare(('uci', 'mnist'), **kw)


@pytest.mark.slow
def test_compare_on_a_target_only_folder_with_a_pretrained_backbone(tmp_path):
    from PIL import Image
    import numpy as np
    from transfer_nb.domains import load_domain
    from transfer_nb.pairs import folder_pair
    d = load_domain('mnist:1,7')
    for c, name in enumerate(d.classes):
        (tmp_path/'imgs'/name).mkdir(parents=True)
        for i in torch.where(d.y == c)[0][:30].tolist(): Image.fromarray((d.x[i, 0].numpy() * 255).astype(np.uint8)).convert('RGB').save(tmp_path/'imgs'/name/f'{i}.png')
    pair = folder_pair(None, tmp_path/'imgs', size=32, augment='photos')
    df = compare(pair, ['linear_probe', 'fine_tune'], seeds=(0,), shots=(3,), model='efficientnet-lite0', steps=3)
    assert set(df.status) <= {'ok', 'collapsed'} and df.source_acc.isna().all()  # 3 steps on 2 classes may collapse (a result); none fails
    assert df.attrs['config']['model'] == 'pretrained efficientnet-lite0' and df.attrs['config']['fingerprints']['source'] is None
    with pytest.raises(ValueError, match="dann cannot run here: it trains on source data, and the pair has none"): compare(pair, ['dann'], model='efficientnet-lite0')
    with pytest.raises(ValueError, match="a target-only pair has no source data to train a source model on"): compare(pair, ['full'])


@pytest.mark.slow
def test_summary_gap_and_validator_tables_from_records(tmp_path):
    df = compare(('uci', 'mnist'), ['direct', 'scratch', 'dann', 'mmd', 'source_only'], shots=('all',), **{**KW, 'source_steps': 100, 'width': 8})
    s = results_table(df).set_index('technique')
    assert s.loc['dann', 'uses'] == 'unlabeled' and s.loc['dann', 'shots'] == 'none (unlabeled)' and s.loc['scratch', 'shots'] == 'all'
    g = gap_table(df).set_index('technique')
    assert g.loc['direct', 'gap closed (%)'] == 0 and g.loc['scratch', 'gap closed (%)'] == 100
    v = validator_table(df)
    assert set(v.validator) == {'IM', 'SND', 'TargetEntropy', 'source accuracy (source risk)'} and (v.regret >= 0).all() and (v.runs == 3).all()


def test_grid_runs_each_point_and_summary_picks_by_the_validator(tmp_path):
    df = compare(('uci', 'mnist'), ['dann'], grid={'lam': [0.1, 1.]}, **KW)
    assert len(df) == 2 and set(df.lam) == {0.1, 1.}
    sel = selected(df)
    assert len(sel) == 1 and sel.iloc[0].chosen_score == df.chosen_score.max()
    assert sel.iloc[0].oracle_best == df.oracle_best.max() and sel.iloc[0].regret >= 0
    v = validator_table(df, ('IM',), over='grid')  # the validators judged over the grid: IM's choice is compare's own
    assert v.runs.tolist() == [1] and v.regret.iloc[0] == round(sel.iloc[0].regret * 100, 1)
    assert validator_table(df, ('IM',)).runs.tolist() == [2]  # per epoch: each grid point a run of its own
    with pytest.raises(ValueError, match="grid takes 'lam' and 'lr'"): compare(('uci', 'mnist'), ['dann'], grid={'beta': [1]}, **KW)
    with pytest.raises(ValueError, match=r"grid\['lam'\] must be a non-empty list of values, got \[\]"): compare(('uci', 'mnist'), ['dann'], grid={'lam': []}, **KW)


def test_failed_run_is_recorded_and_the_sweep_goes_on(monkeypatch, tmp_path):
    from transfer_nb import experiment
    real = experiment.run_strategy
    def boom(source, pair, strategy, *a, **k):
        if strategy == 'full': raise RuntimeError('disk on fire')
        return real(source, pair, strategy, *a, **k)
    monkeypatch.setattr(experiment, 'run_strategy', boom)
    df = compare(('uci', 'mnist'), ['full', 'scratch'], shots=(2,), out=tmp_path, **KW)
    st = df.set_index('technique').status
    assert st['full'] == 'failed' and st['scratch'] != 'failed' and 'RuntimeError: disk on fire' in df.set_index('technique').error['full']
    s = results_table(df).set_index('technique')
    assert s.loc['full', 'failed'] == 1 and s.loc['full', 'seeds'] == 0
    assert 'full, seed 0, shots 2: RuntimeError: disk on fire' in write_report(df, tmp_path).read_text()


def test_check_techniques():
    assert check_techniques('scratch, dann+mcc,shared_specific:2') == ['scratch', 'dann+mcc', 'shared_specific:2']
    with pytest.raises(ValueError, match="unknown technique 'lora'"): check_techniques('lora')
    with pytest.raises(ValueError, match="named twice"): check_techniques('full,full')


def test_transferability_scores_prefer_informative_features():
    torch.manual_seed(0)
    y = torch.arange(400) % 4
    informative = torch.nn.functional.one_hot(y, 4).double() * 2 + torch.randn(400, 4, dtype=torch.double)
    noise = torch.randn(400, 4, dtype=torch.double)
    assert logme(informative, y) > logme(noise, y) and hscore(informative, y) > hscore(noise, y)
    p = torch.nn.functional.one_hot(y, 4).double() * 0.8 + 0.05
    assert leep(p, y) > leep(torch.full((400, 4), 0.25, dtype=torch.double), y)
    assert leep(torch.full((400, 4), 0.25, dtype=torch.double), y) == pytest.approx(torch.log(torch.tensor(0.25)).item())


def test_summary_keeps_counts_integers_when_label_free_runs_are_mixed_in():
    "Records read back from JSON hold NaN beside integers: the table still shows 10 labels and 35,674 parameters, not 10.0."
    from transfer_nb.report import results_table, md_table
    recs = [dict(technique=t, seed=s, shots=k, status='ok', target_acc=0.5 + s / 100, source_acc=None, regret=r, trainable=n, seconds=1.)
            for s in range(3) for t, k, r, n in (('source_only', None, 0.01, None), ('fixmatch', 10, 0.0, 35674))]
    df = pd.DataFrame(recs)
    assert df.shots.dtype == float  # NaN beside 10, as load_runs gives them
    t = results_table(df)
    assert t.shots.tolist() == ['none (unlabeled)', 10] and t.trainable.tolist() == [None, 35674]
    md = md_table(t)
    assert '| 10 |' in md and '35,674' in md and '10.0' not in md
