#!/usr/bin/env python
"""The API reference is complete: every parameter of every public function, class and public method has a docment.

`*args`/`**kwargs` are exempt (fastcore's docments cannot attach a comment to them: say where they go in the
docstring). The comment after a signature's last parameter must sit before the closing parenthesis, or docments
reads it as the return's documentation. A docment holds no backticks: the rendered signature is code, where nbdev's
links to symbols would show as raw markdown. Exits 1 listing every `module: function(parameter)` without a docment.

    python tools/check_api.py [module ...]   (default: every module of transfer_nb)
"""
import dataclasses, importlib, inspect, pkgutil, sys
from fastcore.docments import docments

import transfer_nb
MODULES = [m.name for m in pkgutil.iter_modules(transfer_nb.__path__) if not m.name.startswith('_')]  # every module, as the package holds them


def public(mod):
    "(name, callable) for every public function, class (its `__init__`, or a dataclass's fields) and public method of `mod`."
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
    for name, f in public(mod):
        sig = inspect.signature(f).parameters
        for p, info in docments(f, full=True).items():
            if p in ('self', 'cls', 'return') or p not in sig: continue
            if sig[p].kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD): continue
            if not info.get('docment'): out.append(f'{name}({p})')
            elif '`' in info['docment']: out.append(f'{name}({p}): backticks in its docment (the signature shows them as raw markdown links)')
    return out


def check(modules=None) -> list:
    "`module: function(parameter)` for every public parameter of transfer_nb without a docment."
    return [f'transfer_nb.{m}: {p}' for m in modules or MODULES for p in undocumented(importlib.import_module(f'transfer_nb.{m}'))]


if __name__ == '__main__':
    p = check(sys.argv[1:])
    print('\n'.join(p) or 'API reference: every public parameter documented')
    sys.exit(1 if p else 0)
