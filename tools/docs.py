#!/usr/bin/env python
"""Build the documentation site offline into `_docs/`, and `README.md` from `nbs/index.ipynb`.

`nbdev_docs` renders with Quarto, which nbdev downloads from quarto.org: impossible offline. This script runs nbdev's
own pipeline up to the Quarto call (`nbdev.yml`, the symbol index, `sidebar.yml`, and `proc_nbs`: `show_doc` rendered,
directives applied, links to symbols added, `#| hide` cells removed) into `_proc/`, then renders every processed
notebook with nbconvert (from PyPI) into one page per notebook, named as Quarto would (`01_data.ipynb` → `data.html`),
with the sidebar's navigation, a table of contents, the executed outputs and the plots. Links to the published site are
made relative, so the folder works from disk or any static server.

    python tools/docs.py              # _docs/ and README.md
    python tools/docs.py --check      # the same, and exit 1 if README.md was out of date
"""
import argparse, html, json, re, shutil, sys
from pathlib import Path

import nbformat, yaml
from nbconvert import HTMLExporter, MarkdownExporter
from traitlets.config import Config
from nbdev.config import get_config
from nbdev.doclinks import _build_modidx, _nbpath2html
from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
from nbdev.serve import proc_nbs

CSS = """
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
#tnb-top { position: fixed; top: 0; left: 0; right: 0; height: 3rem; background: #2780e3; color: white; display: flex;
           align-items: center; padding: 0 1.2rem; z-index: 10; font-size: 1.15rem; }
#tnb-top a { color: white; text-decoration: none; font-weight: 600; }
#tnb-nav { position: fixed; top: 3rem; bottom: 0; left: 0; width: 14rem; overflow-y: auto; padding: 1rem; border-right: 1px solid #ddd; background: #fafafa; }
#tnb-nav a, #tnb-toc a { display: block; padding: 0.2rem 0.4rem; color: #333; text-decoration: none; border-radius: 4px; }
#tnb-nav a.active { background: #2780e3; color: white; }
#tnb-toc { position: fixed; top: 3rem; bottom: 0; right: 0; width: 13rem; overflow-y: auto; padding: 1rem; font-size: 0.85rem; }
#tnb-toc a.h3 { padding-left: 1.2rem; }
#tnb-main { margin: 3rem 14rem 0 15rem; padding: 1rem 2rem; max-width: 60rem; }
#tnb-main .description { font-style: italic; font-size: 1.2rem; opacity: 0.75; margin-bottom: 1.5rem; }
.jp-Notebook { padding: 0 !important; }
"""


def slug(text):
    "Heading id as Quarto makes it: lower case, spaces to dashes, only letters, digits, `_`, `-` and `.` kept."
    text = re.sub(r'<[^>]+>', '', html.unescape(text)).strip().lower().replace('¶', '')
    return re.sub(r'[^\w.\- ]', '', text).strip().replace(' ', '-')


def directives(src):
    "Quarto cell options (`#| key: value`) at the top of a code cell, and the source without them."
    opts, lines = {}, src.splitlines()
    while lines and lines[0].startswith('#|'):
        k, _, v = lines.pop(0)[2:].partition(':')
        opts[k.strip()] = v.strip()
    return opts, '\n'.join(lines)


def prepare(nb, site, relative=True):
    """Apply frontmatter and Quarto cell options to a processed notebook; return it, its title and description.
    Links to notebooks point at their pages: relative ones when `relative` (the site), else under `site` (the README)."""
    def fix_md(src):
        # Quarto's link attributes (show_doc's `[source](url){target="_blank" ...}`) as the HTML they stand for
        src = re.sub(r'\[([^\]]+)\]\(([^)\s]+)\)\{([^}]*)\}', r'<a href="\2" \3>\1</a>', src)
        if relative: src = src.replace(site, '')
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


def fix_headings(body):
    "Give headings Quarto-style ids (so nbdev's `page.html#symbol` links land) and collect the table of contents."
    toc = []
    def sub(m):
        level, inner = m[1], m[3]
        hid = slug(re.sub(r'<a class="anchor-link".*?</a>', '', inner))
        inner = re.sub(r'href="#[^"]*"', f'href="#{hid}"', inner)
        if level in '23': toc.append((level, hid, re.sub(r'<[^>]+>', '', inner).replace('¶', '').strip()))
        return f'<h{level} id="{hid}"{m[2]}>{inner}</h{level}>'
    return re.sub(r'<h([1-6]) id="[^"]*"([^>]*)>(.*?)</h\1>', sub, body, flags=re.S), toc


def inline(text):
    "Escape frontmatter text for HTML, with its `code` spans kept."
    return re.sub(r'`([^`]+)`', r'<code>\1</code>', html.escape(text))


def page(body, title, desc, nav, toc, cfg):
    "Wrap nbconvert's page in the site's bar, navigation and table of contents."
    head_end = '<style>' + CSS + '</style>\n</head>'
    body = re.sub(r'<script[^>]+src="https?://[^"]*"[^>]*>\s*</script>', '', body)  # CDN scripts: none offline
    body = re.sub(r'<title>.*?</title>', f'<title>{html.escape(title)} – {html.escape(cfg.title)}</title>', body, flags=re.S)
    body = body.replace('</head>', head_end, 1)
    toc_html = ''.join(f'<a class="h{l}" href="#{i}">{html.escape(t)}</a>' for l, i, t in toc)
    chrome = (f'<div id="tnb-top"><a href="index.html">{html.escape(cfg.title)}</a></div>'
              f'<nav id="tnb-nav">{nav}</nav><nav id="tnb-toc"><strong>On this page</strong>{toc_html}</nav>'
              f'<div id="tnb-main"><h1 class="title">{inline(title)}</h1><div class="description">{inline(desc)}</div>')
    body = re.sub(r'(<body[^>]*>)', lambda m: m[1] + chrome, body, count=1)
    return body.replace('</body>', '</div></body>', 1)


def readme(nb, cfg):
    "README.md from the processed index notebook: prose, code and text outputs, as GitHub renders them."
    exp = MarkdownExporter()
    exp.exclude_input_prompt = exp.exclude_output_prompt = True
    md, _ = exp.from_notebook_node(nb)
    return '# ' + cfg.title + '\n\n<!-- WARNING: THIS FILE WAS AUTOGENERATED FROM nbs/index.ipynb by tools/docs.py! DO NOT EDIT! -->\n\n' \
        + f'> {cfg.description}\n\n' + re.sub(r'\n{3,}', '\n\n', md).strip() + '\n'


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

    c = Config(); c.TagRemovePreprocessor.remove_input_tags = ('hide-input',); c.TagRemovePreprocessor.enabled = True
    exp = HTMLExporter(config=c, template_name='lab')
    exp.exclude_input_prompt = exp.exclude_output_prompt = True
    for fname, nb, title, desc in pages:
        nav = ''.join(f'<a href="{f}"{" class=active" if f == fname else ""}>{html.escape(t)}</a>' for f, _, t, _ in pages)
        body, _ = exp.from_notebook_node(nb)
        body, toc = fix_headings(body)
        (out/fname).write_text(page(body, title, desc, nav, toc, cfg), encoding='utf-8')
        print(f'{out.name}/{fname}')

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
