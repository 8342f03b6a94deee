"""Every number in the README's results and in the results notebook comes from the stored `compare` records.

The README is generated from `nbs/index.ipynb`; its results cell reads `results/` with `load_runs`. These tests run
that cell again on the committed records and require the README to contain exactly what it prints, and every number
of the README's results section to be one it printed: a hand-typed or stale number fails here.
"""
import contextlib, io, json, os, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def _cell_output(nb:str, marker:str) -> str:
    "Run the code cell of notebook `nb` containing `marker` (in nbs/, as nbdev_test does) and return what it prints."
    cells = json.loads((ROOT/'nbs'/nb).read_text())['cells']
    code = [''.join(c['source']) for c in cells if c['cell_type'] == 'code']
    src = [s for s in code if marker in s]
    assert len(src) == 1, f"{nb}: expected one cell with {marker!r}"
    imports = [s for s in code if all(l.startswith(('#|', 'from ', 'import ')) or not l.strip() for l in s.splitlines())]
    out, cwd = io.StringIO(), os.getcwd()
    os.chdir(ROOT/'nbs')
    try:
        with contextlib.redirect_stdout(out): exec('\n'.join(imports + src), {})
    finally: os.chdir(cwd)
    return out.getvalue()

def _section(text:str, title:str) -> str:
    i = text.index(title)
    j = text.find('\n## ', i + len(title))
    return text[i:j if j > 0 else None]

NUM = re.compile(r'(?<![\w.])\d+\.\d+(?![\w.])')

def problems(readme:str, printed:str) -> list:
    "What is wrong with `readme`'s results given what the results cell `printed`: missing output, numbers it did not print."
    printed = re.sub(r'\n{3,}', '\n\n', printed)  # as tools/docs.py writes the README
    out = [] if printed.strip() in readme else ["README.md's results differ from what the stored records give: rerun nbs/index.ipynb and tools/docs.py"]
    typed = sorted(set(NUM.findall(_section(readme, '## Results'))) - set(NUM.findall(printed)))
    return out + ([f"numbers in the README's results that the records did not produce: {typed}"] if typed else [])

@pytest.fixture(scope='module')
def printed(): return _cell_output('index.ipynb', 'def reproduce(')

def test_the_front_page_headline_is_the_stored_records():
    "The picture's caption and the headline table at the top of the README: printed from results/ now, no number typed."
    headline = _cell_output('index.ipynb', 'Without a single target label')
    readme = (ROOT/'README.md').read_text()
    top = readme[:readme.index('## Try it')]
    assert re.sub(r'\n{3,}', '\n\n', headline).strip().replace('](images/', '](nbs/images/') in top
    assert set(NUM.findall(top)) <= set(NUM.findall(headline)), sorted(set(NUM.findall(top)) - set(NUM.findall(headline)))

def test_readme_results_are_the_stored_records(printed):
    assert problems((ROOT/'README.md').read_text(), printed) == []

def test_the_check_catches_a_typed_or_stale_number(printed):
    readme = (ROOT/'README.md').read_text()
    first = NUM.findall(printed)[0]
    stale = readme.replace(first, '99.9', 1)  # a table cell typed over
    assert len(problems(stale, printed)) == 2
    prose = readme.replace('## Results\n', '## Results\n\nDANN reaches 97.3% here.\n', 1)  # a number typed into the prose
    assert problems(prose, printed) == ["numbers in the README's results that the records did not produce: ['97.3']"]

def test_results_notebook_outputs_are_the_stored_records():
    "Every printed output committed in the results notebook is what its cell prints from results/ now."
    import matplotlib; matplotlib.use('Agg')
    nb = json.loads((ROOT/'nbs'/'10_results.ipynb').read_text())
    ns, cwd, checked = {}, os.getcwd(), 0
    os.chdir(ROOT/'nbs')
    try:
        for c in nb['cells']:
            if c['cell_type'] != 'code': continue
            out = io.StringIO()
            with contextlib.redirect_stdout(out): exec(''.join(c['source']), ns)
            stored = ''.join(''.join(o.get('text', '')) for o in c.get('outputs', []) if o.get('output_type') == 'stream' and o.get('name') == 'stdout')
            if stored or out.getvalue():
                assert out.getvalue() == stored, f"stale output in nbs/10_results.ipynb (rerun it):\n{''.join(c['source'])[:300]}"
                checked += 1
    finally: os.chdir(cwd)
    assert checked >= 5, f"only {checked} printed outputs in the results notebook"
