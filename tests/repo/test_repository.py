"""Repository checks that do not depend on the Keras backend (run once, not per backend)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("*.ipynb"))
# The preface (00_) animates in one cell and explains how to run the book: no exercises.
ASSIGNMENTS = [path for path in CHAPTERS if not path.name.startswith("00_")]
sys.path.insert(0, str(ROOT / "tools"))

import sync_chapters  # noqa: E402


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files += [section["file"] for section in chapter.get("sections", [])]
    return files


def test_there_are_chapters():
    assert CHAPTERS, "book/ holds no notebooks"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    """Chapters are stored clean: the site build and nbval execute them, git stores only sources."""
    notebook = nbformat.read(path, as_version=4)
    dirty = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"
    assert "widgets" not in notebook.metadata, f"{path.name}: saved widget state in the metadata"


def test_chapter_code_is_in_sync_with_kmt(capsys):
    status = sync_chapters.main(["--check"])
    assert status == 0, capsys.readouterr().out


def test_every_page_is_in_the_table_of_contents_and_exists():
    listed = toc_files()
    pages = {p.relative_to(BOOK).with_suffix("").as_posix() for p in BOOK.glob("*") if p.suffix in {".md", ".ipynb"}}
    assert set(listed) == pages, f"in _toc.yml but missing: {set(listed) - pages}; not listed: {pages - set(listed)}"


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.name)
def test_chapters_are_assignments(path):
    """Objectives at the top, a summary, at least three exercises, solutions marked for nbgrader."""
    notebook = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    assert "Learning objectives" in markdown
    assert re.search(r"^## Summary", markdown, re.M)
    exercises = re.findall(r"```\{exercise\}", markdown)
    assert len(exercises) >= 3, f"{path.name} has {len(exercises)} exercises"
    starts = re.findall(r"```\{solution-start\} (\S+)", markdown)
    labels = re.findall(r"^:label: (\S+)", markdown, re.M)
    assert set(starts) <= set(labels) and len(starts) >= 3
    assert markdown.count("{solution-start}") == markdown.count("{solution-end}")
    for source in code:
        assert source.count("### BEGIN SOLUTION") == source.count("### END SOLUTION")
    assert sum("### BEGIN SOLUTION" in source for source in code) >= 3


def test_ci_runs_the_readme_test_command_and_nothing_else():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert commands[-1] == "make test"
    assert all(c.startswith(("set ", "cd ")) for c in commands[:-1])


WORKFLOW = ROOT / ".github" / "workflows" / "gpu-notebooks.yml"


def test_gpu_workflow_is_a_valid_github_workflow():
    executable = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run(
        [executable, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _workflow_job():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    return workflow, job


def _run_workflow_step(name, cwd, path_dirs):
    """Run the step called ``name`` as GitHub's runner does: its script in the shell the workflow names.

    GitHub documents the Linux templates: ``shell: bash`` runs ``bash --noprofile --norc -eo pipefail
    {0}``; with no ``shell`` it runs ``bash -e {0}`` (no pipefail).
    """
    workflow, job = _workflow_job()
    (step,) = [s for s in job["steps"] if s.get("name") == name]
    shell = step.get("shell") or job.get("defaults", {}).get("run", {}).get("shell") or \
        workflow.get("defaults", {}).get("run", {}).get("shell")
    flags = ["--noprofile", "--norc", "-eo", "pipefail"] if shell == "bash" else ["-e"]
    script = Path(cwd) / "step.sh"
    script.write_text(step["run"])
    env = dict(os.environ, PATH=os.pathsep.join([*map(str, path_dirs), os.environ["PATH"]]), **job.get("env", {}))
    return subprocess.run(["bash", *flags, str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def _stub(folder, name, body):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(0o755)


def test_gpu_workflow_runs_the_full_size_chapters_on_a_gpu_runner():
    _, job = _workflow_job()
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    assert job["env"]["KMT_SIZE"] == "full"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test-notebooks:.*\n.*run_tests\.sh notebooks", makefile, re.M)


@pytest.mark.parametrize("make_status", [0, 1])
def test_gpu_workflow_fails_when_a_chapter_fails(tmp_path, make_status):
    """The nbval step pipes make into tee: a failing make must fail the step, a passing one pass it."""
    stubs = tmp_path / "bin"
    _stub(stubs, "make", f'echo "make $*"; echo "1 failed, 24 passed" >&2; exit {make_status}')
    result = _run_workflow_step("Chapters under nbval at the full size", tmp_path, [stubs])
    assert (result.returncode != 0) == (make_status != 0), result.stdout + result.stderr
    log = next(tmp_path.glob("*.log")).read_text()
    assert "make test-notebooks KMT_SIZE=full" in log and "1 failed" in log


def test_gpu_workflow_fails_without_a_gpu(tmp_path):
    """No driver: nvidia-smi fails the step. A driver but no GPU visible to TensorFlow: the GPU check fails it."""
    stubs = tmp_path / "bin"
    _stub(stubs, "nvidia-smi", 'echo "NVIDIA-SMI has failed because it could not communicate with the driver"; exit 9')
    result = _run_workflow_step("Require a GPU", tmp_path, [stubs])
    assert result.returncode == 9, result.stdout + result.stderr

    _stub(stubs, "nvidia-smi", 'echo "GPU 0: stub"')
    _stub(tmp_path / ".venv" / "bin", "python", f'exec "{sys.executable}" "$@"')  # this machine has no GPU
    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "require_gpu.py", tmp_path / "tools")
    result = _run_workflow_step("Require a GPU", tmp_path, [stubs])
    assert result.returncode != 0, result.stdout + result.stderr
    assert "sees no GPU" in result.stderr


def test_kmt_configs_and_package_metadata():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'name = "keras-motion-transfer"' in pyproject
    requirements = (ROOT / "requirements-dev.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", requirements, re.M), "torch must stay pinned to the local CPU build"
    assert "torch" not in (ROOT / "requirements.txt").read_text()


def test_repository_address_is_written_in_one_place():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    hits = []
    for path in ROOT.rglob("*"):
        if any(part in {".git", ".venv", "_build", "node_modules"} for part in path.parts) or not path.is_file():
            continue
        if path.suffix not in {".md", ".py", ".yml", ".yaml", ".toml", ".txt", ".ipynb", ".cff", ".cfg"}:
            continue
        if url in path.read_text(errors="ignore"):
            hits.append(path.relative_to(ROOT).as_posix())
    assert hits == ["_config.yml"], f"the repository address is written outside _config.yml: {hits}"


def test_notebook_metadata_uses_the_python3_kernel():
    for path in CHAPTERS:
        kernelspec = json.loads(path.read_text())["metadata"]["kernelspec"]
        assert kernelspec["name"] == "python3", path.name


def run_pytest_with_the_no_skip_plugin(tmp_path, body):
    (tmp_path / "test_sample.py").write_text(body)
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT / "tools")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "-p", "pytest_no_skips",
         str(tmp_path / "test_sample.py")], capture_output=True, text=True, env=env, cwd=tmp_path)


def test_a_skipped_test_fails_the_run(tmp_path):
    """CI's pytest runs load tools/pytest_no_skips.py: a skip (a broken import, say) turns the run red."""
    skipped = run_pytest_with_the_no_skip_plugin(tmp_path, (
        "import pytest\n\ndef test_runs():\n    assert 1 + 1 == 2\n\n"
        "def test_needs_a_module():\n    pytest.importorskip('a_module_that_is_not_installed')\n"))
    assert skipped.returncode == 1, skipped.stdout
    assert "1 skipped: every test must run" in skipped.stdout
    assert "could not import 'a_module_that_is_not_installed'" in skipped.stdout  # -rs lists the reason
    passing = run_pytest_with_the_no_skip_plugin(tmp_path, "def test_runs():\n    assert 1 + 1 == 2\n")
    assert passing.returncode == 0, passing.stdout


def test_every_pytest_run_of_ci_refuses_skips():
    script = (ROOT / "tools" / "run_tests.sh").read_text()
    runs = [line for line in script.splitlines() if "pytest" in line.lower() and not line.lstrip().startswith("#")]
    definition = [line for line in runs if line.startswith("PYTEST=(")]
    runs = [line for line in runs if "pytest_no_skips.py" not in line]
    assert definition == ["PYTEST=(python -m pytest -q -p no:cacheprovider -rs -p pytest_no_skips)"]
    others = [line for line in runs if line not in definition]
    assert others and all('"${PYTEST[@]}"' in line for line in others), others


def _dict_literal(path, name):
    """The dict literal ``NAME = {...}`` at the top level of a test module, read without importing it."""
    import ast

    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} defines no {name}")


def _readme_rows(text, first_header):
    """``{first cell: [other cells as floats]}`` of the Markdown table whose header starts with ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header}"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        try:
            rows[cells[0].strip("`")] = [float(cell) for cell in cells[1:]]
        except ValueError:
            continue  # a row of counts, not of floors
    return rows


def test_the_tests_tolerances_are_the_fixture_readmes_tables():
    """The parity tests derive their tolerances from tests/fixtures/README.md's float32 floors: same numbers."""
    readme = (ROOT / "tests" / "fixtures" / "README.md").read_text()
    forward = _dict_literal(ROOT / "tests" / "fomm_reference.py", "FLOOR")
    table = _readme_rows(readme, "output (`fomm_tiny.npz`)")
    assert table == {key: [forward["eval"][key], forward["train"][key]] for key in forward["eval"]}
    step = _dict_literal(ROOT / "tests" / "unit" / "test_train_step_fixture.py", "FLOOR")
    table = _readme_rows(readme, "group | float32 vs float64")
    losses = [value for key, (value,) in table.items() if key.startswith("losses/")]
    assert step["losses"] == max(losses)
    assert {key: value for key, value in step.items() if key != "losses"} == {
        key: value for key, (value,) in table.items() if key in step}
    assert set(step) - {"losses"} <= set(table)
