"The committed notebook outputs (what the docs and the README show) carry no warnings, stderr, machine paths, progress bars or noise."
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
from check_outputs import check


def test_notebook_outputs_are_clean():
    problems = check(ROOT/'nbs')
    assert not problems, 'run the notebooks again after fixing:\n' + '\n'.join(problems)


def test_the_check_finds_each_kind_of_noise(tmp_path):
    outs = [dict(output_type='stream', name='stderr', text=['x\n']),
            dict(output_type='stream', name='stdout', text=['/usr/lib/python3/fastai/x.py:3: FutureWarning: old\n']),
            dict(output_type='stream', name='stdout', text=['saved to /tmp/abc/model.pth\n']),
            dict(output_type='execute_result', data={'text/plain': ['(0.7449771761894226, 0.1)']}, metadata={}, execution_count=1),
            dict(output_type='stream', name='stdout', text=['10.0 ± nan\n'])]
    nb = dict(cells=[dict(cell_type='code', source='', metadata={}, outputs=[o], execution_count=None) for o in outs], metadata={}, nbformat=4, nbformat_minor=5)
    (tmp_path/'x.ipynb').write_text(json.dumps(nb))
    found = check(tmp_path)
    for what in ('stderr output', 'a warning', 'an absolute path', 'a 16-digit float', '"± nan"'):
        assert any(what in p for p in found), (what, found)
