#!/usr/bin/env python
"""Build the documentation site offline into `_docs/`, and `README.md` from `nbs/index.ipynb`.

`nbdev_docs` renders with Quarto, which nbdev downloads from quarto.org: impossible offline. This script runs nbdev's
own pipeline up to the Quarto call (`nbdev.yml`, the symbol index, `sidebar.yml`, and `proc_nbs`: `show_doc` rendered,
directives applied, links to symbols added, `#| hide` cells removed) into `_proc/`, turns every processed notebook
into a Markdown page with its executed outputs and plots (nbconvert), named as Quarto would (`01_data.ipynb` →
`data.html`), and builds the site from them with MkDocs and the Material theme (both from PyPI, in the dev extra).
Why MkDocs Material: the most used documentation generator for Python projects that installs from PyPI alone, and it
gives what readers expect of fastai's or nbdev's docs out of the box: full-text search that runs in the browser
(no server), a responsive layout (navigation drawer on narrow screens), copy buttons, code that scrolls instead of
being cut, a table of contents per page. The Markdown and the generated `mkdocs.yml` are in `_mkdocs/`.

    python tools/docs.py              # _docs/ and README.md
    python tools/docs.py --check      # the same, and exit 1 if README.md was out of date
"""
import argparse, functools, html, importlib, inspect, json, os, re, shutil, subprocess, sys
from pathlib import Path

import nbformat, yaml
from nbconvert import MarkdownExporter
from traitlets.config import Config
from nbdev.config import get_config
from nbdev.doclinks import _build_modidx, _nbpath2html
from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
from nbdev.serve import proc_nbs
import nbdev.processors

# nbdev 2.4 inserts the show_doc cells of a cell that exports several symbols one by one at the same position, so
# they come out in reverse; hand it the names reversed and the reference follows the source's order
_def_names = nbdev.processors._def_names
nbdev.processors._def_names = lambda cell, shown: _def_names(cell, shown)[::-1]

CSS = """
.tnb-description { font-size: 1.15em; opacity: .75; margin-top: -.6em; }
.md-typeset table { display: block; max-width: 100%; overflow-x: auto; }
.md-typeset .jp-RenderedHTMLCommon, .md-typeset div.output_html { max-width: 100%; overflow-x: auto; }
.md-typeset .highlight pre, .md-typeset pre { overflow-x: auto; }
@media (max-width: 700px) {  /* a phone: an API entry's signature wraps, every parameter and its docment in view */
  .md-typeset h3 + div.highlight code { white-space: pre-wrap; overflow-wrap: anywhere; }
}
"""


def directives(src):
    "Quarto cell options (`#| key: value`) at the top of a code cell, and the source without them."
    opts, lines = {}, src.splitlines()
    while lines and lines[0].startswith('#|'):
        k, _, v = lines.pop(0)[2:].partition(':')
        opts[k.strip()] = v.strip()
    return opts, '\n'.join(lines)


@functools.cache
def public_classes() -> set:
    "The names of the classes `transfer_nb` exports."
    cfg = get_config()
    mods = [importlib.import_module(f'{cfg.lib_name}.{p.stem}') for p in sorted(cfg.lib_path.glob('[!_]*.py'))]
    return {n for m in mods for n in getattr(m, '__all__', []) if inspect.isclass(getattr(m, n, None))}


def prepare(nb, site, relative=True):
    """Apply frontmatter and Quarto cell options to a processed notebook; return it, its title and description.
    Links to notebooks point at their pages: relative ones when `relative` (the site), else under `site` (the README)."""
    def fix_md(src):
        # Quarto's link attributes (show_doc's `[source](url){target="_blank" ...}`) as the HTML they stand for
        src = re.sub(r'\[([^\]]+)\]\(([^)\s]+)\)\{([^}]*)\}', r'<a href="\2" \3>\1</a>', src)
        if relative: src = src.replace(site, '')
        # fastcore's signature block starts every callable with `def`; a class reads as one
        src = re.sub(r'```python\ndef (\w+)\(', lambda m: f"```python\n{'class' if m[1] in public_classes() else 'def'} {m[1]}(", src)
        base = '' if relative else site
        return re.sub(r'\]\(([^)#:]+?)\.ipynb', lambda m: f']({base}{_nbpath2html(Path(m[1] + ".ipynb")).name}', src)
    fm, cells = {}, []
    for c in nb.cells:
        if c.cell_type == 'raw' and c.source.startswith('---'):
            fm.update(yaml.safe_load(c.source.strip().strip('-')) or {})
            continue
        if c.cell_type == 'markdown' and c.source.startswith('<!-- WARNING'): continue
        if c.cell_type == 'code':
            opts, c.source = directives(c.source)
            if opts.get('include') == 'false': continue
            if opts.get('output') == 'false': c.outputs = []
            if opts.get('output') == 'asis':
                md = [''.join(o.get('text', '')) if o.get('output_type') == 'stream' else ''.join(o.get('data', {}).get('text/markdown', '')) for o in c.outputs]
                cells.append(nbformat.v4.new_markdown_cell(fix_md('\n'.join(md))))
                continue
            if opts.get('echo') == 'false': c.metadata.setdefault('tags', []).append('hide-input')
        if c.cell_type == 'markdown': c.source = fix_md(c.source)
        cells.append(c)
    nb.cells = cells
    nb.metadata['language_info'] = {'name': 'python'}  # code fences and highlighting
    return nb, fm.get('title', ''), fm.get('description', '')


def inline(text):
    "Escape frontmatter text for HTML, with its `code` spans kept."
    return re.sub(r'`([^`]+)`', r'<code>\1</code>', html.escape(text))


def readme(nb, cfg):
    "README.md from the processed index notebook: prose, code and text outputs, as GitHub renders them."
    exp = MarkdownExporter()
    exp.exclude_input_prompt = exp.exclude_output_prompt = True
    md, _ = exp.from_notebook_node(nb)
    return '# ' + cfg.title + '\n\n<!-- WARNING: THIS FILE WAS AUTOGENERATED FROM nbs/index.ipynb by tools/docs.py! DO NOT EDIT! -->\n\n' \
        + f'> {cfg.description}\n\n' + re.sub(r'\n{3,}', '\n\n', md.replace('](images/', '](nbs/images/')).strip() + '\n'


def main(check=False):
    cfg = get_config()
    refresh_quarto_yml(); _build_modidx(); nbdev_sidebar.__wrapped__()
    proc = proc_nbs(n_workers=0)
    site = cfg.doc_host + cfg.doc_baseurl + '/'
    out = cfg.config_path/cfg.doc_path.name
    shutil.rmtree(out, ignore_errors=True); out.mkdir()

    order = [c if isinstance(c, str) else None for c in yaml.safe_load((cfg.nbs_path/'sidebar.yml').read_text())['website']['sidebar']['contents']]
    pages = []
    for name in filter(None, order):
        nb, title, desc = prepare(nbformat.read(proc/name, as_version=4), site)
        pages.append((_nbpath2html(Path(name)).name, nb, title or Path(name).stem, desc))

    site_src = cfg.config_path/'_mkdocs'  # the pages as Markdown, MkDocs' input
    shutil.rmtree(site_src, ignore_errors=True); (site_src/'docs').mkdir(parents=True)
    c = Config(); c.TagRemovePreprocessor.remove_input_tags = ('hide-input',); c.TagRemovePreprocessor.enabled = True
    c.ExtractOutputPreprocessor.enabled = True
    exp = MarkdownExporter(config=c)
    exp.exclude_input_prompt = exp.exclude_output_prompt = True
    nav = []
    for fname, nb, title, desc in pages:
        stem = Path(fname).stem
        md, res = exp.from_notebook_node(nb, resources={'unique_key': stem, 'output_files_dir': f'{stem}_files'})
        for f, data in res.get('outputs', {}).items():
            (site_src/'docs'/f).parent.mkdir(parents=True, exist_ok=True); (site_src/'docs'/f).write_bytes(data)
        head = f'# {title}\n\n' + (f'<p class="tnb-description">{inline(desc)}</p>\n\n' if desc else '')
        (site_src/'docs'/f'{stem}.md').write_text(head + re.sub(r'\n{3,}', '\n\n', md).strip() + '\n', encoding='utf-8')
        nav.append({title.split(':')[0]: f'{stem}.md'})
    (site_src/'docs'/'extra.css').write_text(CSS, encoding='utf-8')
    if (cfg.nbs_path/'images').is_dir(): shutil.copytree(cfg.nbs_path/'images', site_src/'docs'/'images')  # pictures the notebooks link to
    mk = dict(site_name=cfg.title, site_description=cfg.description, site_url=site, repo_url=f'https://github.com/{cfg.user}/{cfg.repo}',
              docs_dir='docs', site_dir=str(out.resolve()), use_directory_urls=False, nav=nav, extra_css=['extra.css'],
              theme=dict(name='material', features=['navigation.sections', 'navigation.top', 'content.code.copy', 'search.highlight', 'search.suggest', 'toc.follow'],
                         palette=dict(primary='indigo')),
              plugins=['search'], hooks=[str(Path(__file__).resolve().parent/'mkdocs_hooks.py')],
              markdown_extensions=['admonition', 'attr_list', 'md_in_html', 'tables', dict(toc=dict(permalink=True)), 'pymdownx.superfences',
                                   dict(**{'pymdownx.highlight': dict(use_pygments=True)})],
              validation=dict(links=dict(unrecognized_links='ignore', absolute_links='ignore', not_found='warn')))
    (site_src/'mkdocs.yml').write_text(yaml.safe_dump(mk, sort_keys=False, allow_unicode=True))
    env = dict(os.environ, NO_MKDOCS_2_WARNING='1')
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--quiet', '--clean', '-f', str(site_src/'mkdocs.yml')], capture_output=True, text=True, env=env)
    if r.returncode: sys.exit(f'mkdocs build failed:\n{r.stdout}\n{r.stderr}')
    for fname, *_ in pages: print(f'{out.name}/{fname}')

    index = prepare(nbformat.read(proc/cfg.readme_nb, as_version=4), site, relative=False)[0]  # absolute links on GitHub
    new, path = readme(index, cfg), cfg.config_path/'README.md'
    stale = path.read_text() != new if path.exists() else True
    path.write_text(new)
    print('README.md' + (' (updated)' if stale else ' (unchanged)'))
    if check and stale: sys.exit('README.md was out of date with nbs/index.ipynb: commit the regenerated README.md')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check', action='store_true', help='exit 1 if README.md was out of date')
    main(**vars(ap.parse_args()))
