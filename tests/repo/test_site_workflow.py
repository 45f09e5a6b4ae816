"""The site's GitHub Pages workflow: valid for actionlint, built from the one repository setting."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
PAGES = WORKFLOWS / "pages.yml"
sys.path.insert(0, str(ROOT / "tools"))

import actionlint  # noqa: E402
import site_address  # noqa: E402


def test_every_workflow_passes_actionlint():
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert PAGES in workflows
    findings = actionlint.lint(workflows)
    assert not findings, "\n".join(f"{f['file']}:{f['line']}: {f['message']}" for f in findings)


def test_actionlint_reports_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(PAGES.read_text().replace("needs: build", "needs: bulid"))
    (finding,) = actionlint.lint([broken])
    assert finding["kind"] == "job-needs" and "bulid" in finding["message"]


def _steps(job):
    return yaml.safe_load(PAGES.read_text())["jobs"][job]["steps"]


def test_pages_workflow_builds_the_laptop_site_and_deploys_it():
    workflow = yaml.safe_load(PAGES.read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on:` as True
    assert triggers["push"]["branches"] == ["main"]
    build = workflow["jobs"]["build"]
    assert build["env"]["KMT_SIZE"] == "laptop"
    runs = [step.get("run", "") for step in build["steps"]]
    assert "make book" in runs
    (upload,) = [s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact")]
    assert upload["with"]["path"] == "_build/html"  # where `make book` writes the laptop-size site
    assert [s["uses"].split("@")[0] for s in _steps("deploy")] == ["actions/deploy-pages"]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}


def test_the_site_address_comes_from_the_repository_setting(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://github.com/Someone/motion-book\n")
    assert site_address.repository(config) == ("Someone", "motion-book")
    assert site_address.site_address("Someone", "motion-book") == "https://someone.github.io/motion-book/"
    assert site_address.site_address("someone", "someone.github.io") == "https://someone.github.io/"
    owner, name = site_address.repository()
    ok = subprocess.run([sys.executable, str(ROOT / "tools" / "site_address.py"), "--check", f"{owner}/{name}"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == site_address.site_address(owner, name)
    fork = subprocess.run([sys.executable, str(ROOT / "tools" / "site_address.py"), "--check", "a-fork/kmt"],
                          capture_output=True, text=True)
    assert fork.returncode == 1 and "set repository.url to https://github.com/a-fork/kmt" in fork.stderr
    assert any("site_address.py --check" in step.get("run", "") for step in _steps("build"))


def test_a_repository_setting_that_is_not_github_is_refused(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://gitlab.com/someone/book\n")
    try:
        site_address.repository(config)
    except ValueError as error:
        assert "repository.url" in str(error) and "gitlab.com" in str(error)
    else:
        raise AssertionError("a non-GitHub repository.url was accepted")
