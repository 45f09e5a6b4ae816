"""The published site's address, derived from the one repository setting (``repository.url`` in _config.yml).

    python tools/site_address.py                    print https://<owner>.github.io/<name>/
    python tools/site_address.py --check OWNER/NAME exit 1, saying what to change, when the setting
                                                    names another repository (the Pages workflow
                                                    runs this before it deploys)
"""

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GITHUB_URL = re.compile(r"^https://github\.com/([A-Za-z0-9-]+)/([A-Za-z0-9._-]+?)/?$")


def repository(config_path=ROOT / "_config.yml"):
    """``("owner", "name")`` from ``repository.url``; ValueError when it is not a GitHub address."""
    config = yaml.safe_load(Path(config_path).read_text())
    url = (config.get("repository") or {}).get("url")
    match = GITHUB_URL.match(url or "")
    if not match:
        raise ValueError(f"repository.url in {config_path}: expected https://github.com/OWNER/NAME, got {url!r}")
    return match.group(1), match.group(2)


def site_address(owner, name):
    """GitHub Pages' address of a project site (a repository called ``<owner>.github.io`` is served at the root)."""
    if name.lower() == f"{owner.lower()}.github.io":
        return f"https://{owner.lower()}.github.io/"
    return f"https://{owner.lower()}.github.io/{name}/"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", metavar="OWNER/NAME", help="the repository that is about to deploy the site")
    parser.add_argument("--config", default=str(ROOT / "_config.yml"))
    args = parser.parse_args(argv)
    owner, name = repository(args.config)
    if args.check is not None:
        if args.check.lower() != f"{owner}/{name}".lower():
            print(f"repository.url in _config.yml names {owner}/{name}, but this is {args.check}: set "
                  f"repository.url to https://github.com/{args.check} (launch buttons, Colab links and install "
                  "lines are derived from it) before publishing the site.", file=sys.stderr)
            return 1
    print(site_address(owner, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
