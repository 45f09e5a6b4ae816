"""Sphinx glue for the kmt book: derive every repository address from one setting.

``repository.url`` in ``_config.yml`` is the only place the public address of the
repository is written. Jupyter Book passes it to the theme as
``html_theme_options["repository_url"]``; this extension exposes it to the pages as
MyST substitutions, so install instructions and Colab links follow it too:

* ``{{ repository_link }}``: the address, as a link;
* ``{{ clone_command }}``: ``git clone <address>`` as inline code;
* ``{{ pip_install_command }}``: ``pip install "git+<address>"`` as inline code;
* ``{{ colab_base }}``: the Colab address of the book folder on GitHub.

(MyST does not substitute inside code blocks, so the commands come as inline code.)
"""


def _derive(app, config):
    url = (config.html_theme_options or {}).get("repository_url", "").rstrip("/")
    if not url:
        raise ValueError("repository.url must be set in _config.yml: the book derives its links from it.")
    branch = (config.html_theme_options or {}).get("repository_branch", "main")
    github_path = url.split("github.com/", 1)[-1]
    substitutions = dict(config.myst_substitutions or {})
    substitutions.setdefault("repository_link", f"[{url}]({url})")
    substitutions.setdefault("clone_command", f"`git clone {url}`")
    substitutions.setdefault("pip_install_command", f'`pip install "git+{url}"`')
    substitutions.setdefault("colab_base", f"https://colab.research.google.com/github/{github_path}/blob/{branch}/book")
    config.myst_substitutions = substitutions


def setup(app):
    app.connect("config-inited", _derive)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
