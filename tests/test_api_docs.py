"The API reference is complete: every parameter of every public function, class and public method has a docment (see tools/check_api.py)."
import importlib, sys
from pathlib import Path
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'tools'))
from check_api import MODULES, undocumented


@pytest.mark.parametrize('m', MODULES)
def test_every_public_parameter_is_documented(m):
    if m == 'ddp': pytest.importorskip('accelerate')  # the distributed extra: fastai's DDP module needs it
    missing = undocumented(importlib.import_module(f'transfer_nb.{m}'))
    assert not missing, f"transfer_nb.{m}: parameters without a docment (add `# what it is` after each): {', '.join(missing)}"


def test_the_check_finds_a_missing_docment(tmp_path, monkeypatch):
    (tmp_path/'fake_api.py').write_text("__all__ = ['f', 'g', 'C']\ndef f(a, # documented\n      b=1): # documented too\n    pass\n"
                                       "def g(x) -> int: # reads as the return's doc\n    pass\n"
                                       "class C:\n    def __init__(self, n): pass\n    def run(self, k, # documented\n            ): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert undocumented(importlib.import_module('fake_api')) == ['g(x)', 'C(n)']
