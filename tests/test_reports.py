"""What a report says: the reading (best per budget, ties, negative transfer, chance), split sizes, only what ran, no empty columns,
integer counts, plots a reader can read, a report after every run, and `transfer_nb report` re-rendering a results folder."""
import json, re, subprocess, sys
from pathlib import Path
import matplotlib; matplotlib.use('Agg')
import numpy as np, pandas as pd, pytest
from transfer_nb import experiment
from transfer_nb.experiment import compare
from transfer_nb.store import load_runs
from transfer_nb.report import plot_bars, plot_curves, verdict, write_report

EXE = Path(sys.executable).parent/'transfer_nb'
KW = dict(seeds=(0,), steps=2, source_steps=4, width=4)
CONFIG = dict(data=dict(source='syn', target='mnist', image='1×28×28', classes=[str(i) for i in range(10)]), fingerprints=dict(source='a', target='b'),
              model='DigitCNN(width=16), trained on the source', steps=400, source_steps=1000, lr=3e-3, bs=64, select_by='IM', grid=None,
              split_counts=dict(test={str(i): 100 for i in range(10)}, unlabeled={str(i): 350 for i in range(10)}))


def frame(rows, config=CONFIG):
    "Records as `load_runs` gives them: JSON lines into pandas, so a shots column mixing None and numbers is float."
    df = pd.DataFrame([json.loads(json.dumps(r)) for r in rows])
    df.attrs['config'] = json.loads(json.dumps(config))
    return df


def runs(technique, shots, accs, **kw):
    return [dict(technique=technique, seed=s, shots=shots, target_acc=a, source_acc=kw.get('source_acc'), status=kw.get('status', 'ok'),
                 trainable=kw.get('trainable', 35674), seconds=12.5, regret=kw.get('regret')) for s, a in enumerate(accs)]


MIXED = (runs('scratch', 10, (.54, .50, .57)) + runs('scratch', 'all', (.972, .969, .975)) + runs('fine_tune', 10, (.84, .81, .86))
         + runs('fine_tune', 'all', (.93, .935, .94)) + runs('full', 'all', (.971, .968, .974)) + runs('mcc', None, (.94, .92, .95), regret=.005, source_acc=.99))


def test_the_reading_names_the_best_ties_negative_transfer_chance_and_ceiling():
    v = verdict(frame(MIXED))
    assert "At 10 labels per class, mcc (93.7 ± 1.5%) is best, ahead of fine_tune (83.7 ± 2.5%)" in v  # label-free techniques compete at every budget
    assert "With every label, scratch (97.2 ± 0.3%), full (97.1 ± 0.3%) and mcc (93.7 ± 1.5%)" not in v
    assert "With every label, scratch (97.2 ± 0.3%) and full (97.1 ± 0.3%) tie within the seeds' spread (scratch highest)" in v
    assert "Below scratch beyond the seeds' spread (negative transfer): fine_tune at all labels per class" in v
    assert "Chance is 10.0% (10 classes) and the all-labels ceiling (scratch) is 97.2%" in v
    low = verdict(frame(runs('scratch', 5, (.10, .11, .09)) + runs('fine_tune', 5, (.8, .82, .81))))
    assert "At chance level: scratch at 5 labels per class" in low
    one = verdict(frame(runs('fine_tune', 5, (.80,)) + runs('linear_probe', 5, (.79,))))
    assert "fine_tune (80.0%) is best, ahead of linear_probe (79.0%)" in one  # one seed: no spread, no tie claimed
    bad = verdict(frame(runs('fine_tune', 5, (.8, .82)) + runs('dann', None, (.5,), status='collapsed') + runs('full', 5, (.0,), status='failed')))
    assert "1 run collapsed and 1 run failed (not counted as results)" in bad
    assert verdict(frame(runs('full', 5, (.0,), status='failed'))) == "No run gave a result (1 run failed), so there is nothing to compare."
    assert verdict(frame(runs('dann', None, (.825,)))).startswith("Without target labels, dann (82.5%). Chance")  # alone: no 'best'


def test_a_report_mixing_label_budgets_and_label_free_runs_shows_integers_and_no_empty_columns(tmp_path):
    df = frame([r for r in MIXED if r['shots'] != 'all'])
    assert df.shots.dtype == float  # 10.0 and NaN: what made 'labels per class 10.0' before
    md = write_report(df, tmp_path/'f').read_text()
    assert 'labels per class 10 ' in md and 'labels per class 10.0' not in md and '| 10.0 |' not in md and '| fine_tune | 10 |' in md
    df = frame(MIXED)
    md = write_report(df, tmp_path/'r', command='transfer_nb compare …').read_text()
    assert 'labels per class 10, all' in md and 'labels per class 10.0' not in md and '| 10.0 |' not in md and '35674' not in md and '35,674' in md
    main = md.split('| technique | shots |')[1]
    assert main.startswith(' target (%) | source (%) | note |')  # the key columns first, a phone sees them
    assert '| fine_tune | all | 93.5 ± 0.5 |' in md and 'below scratch' in md
    assert '| collapsed |' not in md and '| failed |' not in md  # always zero here: not shown
    assert 'images per class: test 100 (1,000 in all), unlabeled pool 350 (3,500 in all)' in md
    assert md.index('At 10 labels per class') < md.index('Reproduce with')  # the reading comes first


def test_a_target_only_report_says_only_what_ran(tmp_path):
    cfg = dict(CONFIG, data=dict(target='faces', image='3×224×224', classes=['face', 'not_face']), fingerprints=dict(source=None, target='b'),
               model='pretrained efficientnet-lite0', steps=20, split_counts={})
    rows = [dict(r, steps=25, source_acc=None) for r in runs('linear_probe', 5, (.97, 1., .97)) + runs('fine_tune', 5, (.95, 1., .87))]
    md = write_report(frame(rows, cfg), tmp_path/'r').read_text()
    for gone in ('per source', 'adaptation', 'chosen by', 'source (%)', 'regret', 'below scratch', 'label-free techniques'):
        assert gone not in md, gone
    assert md.startswith('# faces (target only)') and '20 optimiser steps per fine-tuning run' in md
    assert 'each fine-tuning run took 25 (whole epochs of at least 25 batches; 20 asked)' in md  # what ran, not only what was asked
    assert 'Target classes (2): face, not_face.' in md


def test_plots_read_as_budgets_stay_within_100_and_name_pair_and_model():
    df = frame(MIXED + runs('fine_tune', 5, (.7, .72, .71)))
    ax = plot_curves(df).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ['5', '10', 'all'] and ax.get_ylim()[1] <= 100
    labels = ax.get_legend_handles_labels()[1]
    assert 'chance (10%)' in labels and any(l.startswith('ceiling: scratch, all labels') for l in labels)
    assert ax.get_title() == 'syn → mnist, DigitCNN(width=16)'
    ax = plot_bars(df, shots=10).axes[0]
    assert 'syn → mnist, DigitCNN(width=16)' in ax.get_title() and '10 labels per class' in ax.get_title()
    kinds = [t.get_text() for t in ax.get_legend().get_texts()]
    assert kinds[:3] == ['scratch (no transfer)', 'uses 10 target labels per class', 'no target label']
    only = plot_bars(frame(runs('fine_tune', 5, (.7, .72))), shots=5).axes[0]
    assert 'no target label' not in [t.get_text() for t in only.get_legend().get_texts()]  # no legend entry for a colour not drawn


def test_a_job_killed_mid_way_leaves_a_report_of_the_runs_it_finished(tmp_path, monkeypatch):
    real, calls = experiment._Runner.run, []
    def run(self, *a, **k):
        calls.append(a)
        if len(calls) == 2: raise SystemExit('killed')  # not an interrupt compare can catch: only what was written survives
        return real(self, *a, **k)
    monkeypatch.setattr(experiment._Runner, 'run', run)
    with pytest.raises(SystemExit): compare(('uci', 'mnist'), ['scratch', 'fine_tune'], shots=(2,), out=tmp_path/'r', command='transfer_nb compare x', **KW)
    md = (tmp_path/'r'/'report.md').read_text()
    assert md.startswith('# uci → mnist') and '| scratch | 2 |' in md and '| fine_tune |' not in md and 'Reproduce with `transfer_nb compare x`' in md


def test_transfer_nb_report_rerenders_and_recounts(tmp_path):
    out = tmp_path/'r'
    r = subprocess.run([str(EXE), 'compare', '--source', 'uci', '--target', 'mnist', '--strategies', 'scratch', '--seeds', '1', '--shots', '2',
                        '--steps', '2', '--source-steps', '4', '--width', '4', '--out', str(out), '--quiet'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((out/'config.json').read_text())
    counts = cfg.pop('split_counts')
    (out/'config.json').write_text(json.dumps(cfg, indent=1, sort_keys=True)); (out/'report.md').unlink()  # as results written before split sizes were kept
    r = subprocess.run([str(EXE), 'report', str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    md = (out/'report.md').read_text()
    assert 'images per class' not in md and 'Target classes (10)' in md and 'Reproduce with `transfer_nb compare --source uci' in md
    r = subprocess.run([str(EXE), 'report', str(out), '--recount'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads((out/'config.json').read_text())['split_counts'] == counts and 'images per class: test' in (out/'report.md').read_text()
    before = (out/'runs.jsonl').read_text()
    cmd = (out/'command.txt').read_text().replace('--target mnist', '--target fashion')
    cfg = json.loads((out/'config.json').read_text()); cfg.pop('split_counts')
    (out/'config.json').write_text(json.dumps(cfg, indent=1, sort_keys=True)); (out/'command.txt').write_text(cmd)
    r = subprocess.run([str(EXE), 'report', str(out), '--recount'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and 'is not the data of these runs' in r.stderr and 'Traceback' not in r.stderr
    assert (out/'runs.jsonl').read_text() == before and 'split_counts' not in json.loads((out/'config.json').read_text())
    r = subprocess.run([str(EXE), 'report', str(tmp_path/'nothing')], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and 'nothing' in r.stderr


def test_a_report_that_cannot_be_written_mid_job_is_said_once_and_the_runs_go_on(tmp_path, monkeypatch, capsys):
    def broken(*a, **k): raise OSError(28, 'No space left on device')
    monkeypatch.setattr(experiment, 'write_report', broken)
    df = compare(('uci', 'mnist'), ['scratch', 'fine_tune'], shots=(2,), out=tmp_path/'r', **KW)
    assert len(df) == 2 and set(df.status) <= {'ok', 'collapsed'}
    err = capsys.readouterr().err
    assert err.count('the report could not be updated') == 1 and 'No space left on device' in err
