"""The API reference is complete: every parameter of every public function, class and public method has a docment.

`*args`/`**kwargs` are exempt (fastcore's docments cannot attach a comment to them: say where they go in the
docstring). The comment after a signature's last parameter must sit before the closing parenthesis, or docments
reads it as the return's documentation.
"""
import dataclasses, importlib, inspect
import pytest
from fastcore.docments import docments

MODULES = ['core', 'data', 'weights', 'finetune', 'adapt', 'experiment', 'cli']


def _public(mod):
    for name in getattr(mod, '__all__', []):
        o = getattr(mod, name)
        if inspect.isfunction(o): yield name, o
        elif inspect.isclass(o):
            if dataclasses.is_dataclass(o): yield name, o  # its fields, documented where they are declared
            elif '__init__' in o.__dict__: yield name, o.__init__
            for k, v in o.__dict__.items():
                if inspect.isfunction(v) and not k.startswith('_'): yield f'{name}.{k}', v


def undocumented(mod) -> list:
    "The `function(parameter)` names of `mod`'s public API whose parameter has no docment."
    out = []
    for name, f in _public(mod):
        sig = inspect.signature(f).parameters
        for p, info in docments(f, full=True).items():
            if p in ('self', 'cls', 'return') or p not in sig: continue
            if sig[p].kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD): continue
            if not info.get('docment'): out.append(f'{name}({p})')
    return out


@pytest.mark.parametrize('m', MODULES)
def test_every_public_parameter_is_documented(m):
    missing = undocumented(importlib.import_module(f'transfer_nb.{m}'))
    assert not missing, f"transfer_nb.{m}: parameters without a docment (add `# what it is` after each): {', '.join(missing)}"


def test_the_check_finds_a_missing_docment(tmp_path, monkeypatch):
    (tmp_path/'fake_api.py').write_text("__all__ = ['f', 'g']\ndef f(a, # documented\n      b=1): # documented too\n    pass\n"
                                       "def g(x) -> int: # reads as the return's doc\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert undocumented(importlib.import_module('fake_api')) == ['g(x)']
