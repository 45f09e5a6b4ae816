"""Sphinx glue for the kmt book: derive every repository address from one setting.

``repository.url`` in ``_config.yml`` is the only place the public address of the
repository is written. Jupyter Book passes it to the theme as
``html_theme_options["repository_url"]``; this extension exposes it to the pages as
MyST substitutions, so install instructions and Colab links follow it too:

* ``{{ repository_link }}``: the address, as a link;
* ``{{ clone_command }}``: ``git clone <address> keras-motion-transfer`` as inline code (a clone
  folder named ``kmt`` would shadow the package for Python run from the folder above it);
* ``{{ pip_install_command }}``: ``pip install "git+<address>"`` as inline code;
* ``{{ colab_base }}``: the Colab address of the book folder on GitHub.

(MyST does not substitute inside code blocks, so the commands come as inline code.)

It also adds the ``{graded-exercises}`` directive: a table of every chapter's graded
exercises, read from the notebooks' grading metadata (see ``tools/autograde.py``), for the
instructors' page.
"""

import sys
from pathlib import Path

import nbformat
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


def _derive(app, config):
    url = (config.html_theme_options or {}).get("repository_url", "").rstrip("/")
    if not url:
        raise ValueError("repository.url must be set in _config.yml: the book derives its links from it.")
    branch = (config.html_theme_options or {}).get("repository_branch", "main")
    github_path = url.split("github.com/", 1)[-1]
    substitutions = dict(config.myst_substitutions or {})
    substitutions.setdefault("repository_link", f"[{url}]({url})")
    substitutions.setdefault("clone_command", f"`git clone {url} keras-motion-transfer`")
    substitutions.setdefault("pip_install_command", f'`pip install "git+{url}"`')
    substitutions.setdefault("colab_base", f"https://colab.research.google.com/github/{github_path}/blob/{branch}/book")
    config.myst_substitutions = substitutions


class GradedExercises(SphinxDirective):
    """A table: the exercise (linked to its chapter), the function the student writes, its checker, points."""

    def run(self):
        tools = Path(self.env.srcdir).parent / "tools"
        sys.path.insert(0, str(tools))
        try:
            from autograde import grading_spec
        finally:
            sys.path.remove(str(tools))
        lines = ["| exercise | you write | checker (`kmt.check.`) | points |", "| --- | --- | --- | --- |"]
        site_map = getattr(self.env, "external_site_map", None)
        listed = set(site_map) if site_map is not None else self.env.found_docs
        for path in sorted(Path(self.env.srcdir).glob("*.ipynb")):
            if path.stem not in listed:
                continue  # a notebook the table of contents does not list is not part of the book
            self.env.note_dependency(str(path))
            notebook = nbformat.read(path, as_version=4)
            exercises, hidden = grading_spec(notebook, path.name)
            for e in exercises:
                extra = " and hidden tests" if e["exercise"] in hidden else ""
                lines.append(f"| [{e['number']}]({path.name}) | `{e['function']}` | `{e['checker']}`{extra} | {e['points']} |")
        node = nodes.container(classes=["kmt-graded-exercises"])
        self.state.nested_parse(StringList(lines), self.content_offset, node)
        return [node]


def setup(app):
    app.connect("config-inited", _derive)
    app.add_directive("graded-exercises", GradedExercises)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
