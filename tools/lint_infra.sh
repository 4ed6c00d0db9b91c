#!/usr/bin/env bash
# Lint the infrastructure as code in infra/ (called by `make lint-infra` and CI).
#
#   bash tools/lint_infra.sh
#
# 1. Every infra/**/*.bicep parses with a current pycep-parser (0.7.1, which reads the
#    `extension microsoftGraphV1` alias form).
# 2. Files that use a Bicep extension (Microsoft Graph) live in infra/graph/ and declare
#    nothing but Microsoft.Graph/* resources: they are the only files checkov does not scan,
#    because checkov 3.3.30 pins pycep-parser 0.5.1, which cannot parse `extension` lines.
# 3. Every other file parses with checkov's own pycep-parser, and contains no conditional
#    `resource ... = if (...)` block (checkov evaluates those against the wrong object,
#    so the resource would silently escape its checks: put it in a module instead).
# 4. checkov scans infra/ (offline, no Prisma Cloud calls) and must report no failed check,
#    no parsing error and no crashed check; every skip must carry a written reason
#    (`// checkov:skip=CKV_...:<reason>` inside the resource).
# 5. The azd hook scripts pass `sh -n`.
#
# Tools live in their own virtualenv (.venv-infra, gitignored), created on first run and
# reused while the pinned versions below are unchanged, so re-runs take a few seconds.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${LINT_INFRA_VENV:-.venv-infra}"
INFRA_DIR=infra
GRAPH_DIR=infra/graph
PYCEP_CURRENT=0.7.1
PYCEP_CURRENT_DIR="$VENV/pycep-parser-$PYCEP_CURRENT"
PYCEP_CHECKOV=0.5.1  # what checkov==3.3.30 pins (see REQUIREMENTS)
CHECKOV_TIMEOUT="${CHECKOV_TIMEOUT:-600}"

# checkov and its complete dependency closure, pinned (pip freeze of a clean install).
read -r -d '' REQUIREMENTS <<'PINS' || true
checkov==3.3.30
aiodns==3.6.1
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aiomultiprocess==0.9.1
aiosignal==1.4.0
annotated-types==0.8.0
argcomplete==3.7.2
asteval==1.0.6
attrs==26.1.0
bc-detect-secrets==1.5.52
bc-jsonpath-ng==1.6.1
bc-python-hcl2==0.4.3
beartype==0.23.1
beautifulsoup4==4.15.0
boolean.py==5.0
boto3==1.35.49
botocore==1.35.99
cached-property==2.0.1
cachetools==5.5.2
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
click==8.5.1
click-option-group==0.5.10
cloudsplaining==0.7.0
colorama==0.4.6
ConfigArgParse==1.9.0
contextlib2==21.6.0
cyclonedx-python-lib==7.6.2
decorator==5.3.1
defusedxml==0.7.1
docker==7.2.0
dockerfile-parse==2.0.1
dpath==2.1.3
ecdsa==0.19.2
frozenlist==1.8.0
gitdb==4.0.12
GitPython==3.2.1
idna==3.20
importlib_metadata==7.2.1
Jinja2==3.1.6
jmespath==1.1.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
junit-xml==1.9
lark==1.3.1
license-expression==30.4.4
Markdown==3.11.3
MarkupSafe==3.0.4
multidict==7.2.1
networkx==2.6.3
numpy==2.4.6
orjson==3.13.0
packageurl-python==0.13.4
packaging==23.2
platformdirs==4.14.8
ply==3.11
policy_sentry==0.13.2
prettytable==3.18.0
propcache==0.5.4
py-serializable==1.1.2
pycares==4.11.0
pycep-parser==0.5.1
pycparser==3.12
pydantic==2.14.4
pydantic_core==2.50.5
pyparsing==3.3.3
python-dateutil==2.9.0.post0
PyYAML==6.0.4
rdflib==7.6.0
referencing==0.37.0
regex==2026.11.19
requests==2.34.2
rpds-py==2026.9.1
rustworkx==0.18.1
s3transfer==0.10.4
schema==0.7.5
semantic-version==2.10.0
six==1.17.0
smmap==5.0.3
sortedcontainers==2.4.0
soupsieve==4.1.3
spdx-tools==0.8.5
tabulate==0.9.0
termcolor==2.3.0
tqdm==4.70.1
typing-inspection==0.4.5
typing_extensions==4.16.0
unidiff==1.0.1
uritools==6.1.5
urllib3==2.8.0
wcwidth==0.9.4
xmltodict==1.0.4
yarl==1.25.1
zipp==4.1.2
PINS

say() { printf '== %s\n' "$*"; }
die() { printf 'lint-infra: FAIL: %s\n' "$*" >&2; exit 1; }

# --- 0. tools ---------------------------------------------------------------------------
python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin="$candidate"; break; fi
  done
fi
[ -n "$python_bin" ] || die "no python3 found (set PYTHON=...)"

stamp_value="$(printf '%s\npycep-parser==%s\n%s\n' "$REQUIREMENTS" "$PYCEP_CURRENT" \
  "$("$python_bin" -c 'import sys; print(sys.version_info[:2])')" | sha256sum | cut -d' ' -f1)"
stamp_file="$VENV/.lint-infra-stamp"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$stamp_file" ] || [ "$(cat "$stamp_file")" != "$stamp_value" ]; then
  say "installing checkov 3.3.30 and pycep-parser $PYCEP_CURRENT into $VENV (first run only)"
  rm -rf "$VENV"
  "$python_bin" -m venv "$VENV"
  printf '%s\n' "$REQUIREMENTS" > "$VENV/requirements-lint-infra.txt"
  "$VENV/bin/python" -m pip install -qq --disable-pip-version-check \
    -r "$VENV/requirements-lint-infra.txt"
  # The current parser goes into its own directory, put first on PYTHONPATH only for step 1:
  # checkov keeps importing its pinned 0.5.1. (lark and regex, its only dependencies, are
  # already pinned above at versions both parser releases accept.)
  "$VENV/bin/python" -m pip install -qq --disable-pip-version-check --no-deps \
    --target "$PYCEP_CURRENT_DIR" "pycep-parser==$PYCEP_CURRENT"
  printf '%s\n' "$stamp_value" > "$stamp_file"
fi

mapfile -t bicep_files < <(find "$INFRA_DIR" -name '*.bicep' -type f | LC_ALL=C sort)
[ "${#bicep_files[@]}" -gt 0 ] || die "no .bicep files under $INFRA_DIR"

# --- 1-3. parse every file with both parsers --------------------------------------------
read -r -d '' PARSE_CHECK <<'PY' || true
import json, sys
from pathlib import Path
from importlib.metadata import version

from pycep import BicepParser

mode, graph_dir, expected_version, *files = sys.argv[1:]
graph_dir = Path(graph_dir)
parser = BicepParser()
pycep_version = version("pycep-parser")
if pycep_version != expected_version:
    sys.exit(f"lint-infra: FAIL: expected pycep-parser {expected_version}, imported {pycep_version}")
errors = []
for name in files:
    path = Path(name)
    in_graph_dir = graph_dir in path.parents
    if mode == "checkov" and in_graph_dir:
        continue
    try:
        parsed = parser.parse(file_path=path)
    except Exception as exc:  # noqa: BLE001 - report every file, then fail
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        errors.append(f"{path}: does not parse with pycep-parser ({pycep_version}): {first_line}")
        continue
    resources = parsed.get("resources") or {}
    if mode == "current":
        if parsed.get("extensions") and not in_graph_dir:
            errors.append(f"{path}: uses a Bicep extension; such files must live in {graph_dir}/ (checkov cannot parse them)")
        if in_graph_dir:
            for symbol, resource in resources.items():
                if not str(resource.get("type", "")).startswith("Microsoft.Graph/"):
                    errors.append(f"{path}: {symbol} ({resource.get('type')}) is not a Microsoft.Graph resource; "
                                  f"only Graph resources may skip the checkov scan in {graph_dir}/")
            if parsed.get("modules"):
                errors.append(f"{path}: modules are not allowed in {graph_dir}/ (they would skip the checkov scan)")
    else:
        for symbol, resource in resources.items():
            config = resource.get("config") or {}
            if isinstance(config, dict) and "condition" in config and "loop_type" not in config:
                errors.append(f"{path}: resource {symbol} is conditional (`= if (...)`); checkov would evaluate it "
                              "against the wrong object: move it into a module and make the module conditional")
    print(f"   ok  {path}")
for error in errors:
    print(f"lint-infra: FAIL: {error}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

say "1. every .bicep file parses with pycep-parser $PYCEP_CURRENT; extension files only in $GRAPH_DIR/"
PYTHONPATH="$PYCEP_CURRENT_DIR${PYTHONPATH:+:$PYTHONPATH}" \
  "$VENV/bin/python" -c "$PARSE_CHECK" current "$GRAPH_DIR" "$PYCEP_CURRENT" "${bicep_files[@]}" || die "bicep parse (pycep-parser $PYCEP_CURRENT)"

say "2. files checkov scans parse with checkov's pycep-parser and have no conditional resources"
"$VENV/bin/python" -c "$PARSE_CHECK" checkov "$GRAPH_DIR" "$PYCEP_CHECKOV" "${bicep_files[@]}" || die "bicep parse (checkov's pycep-parser)"

# --- 4. checkov -----------------------------------------------------------------------------
say "3. checkov (bicep) on $INFRA_DIR/, skipping only $GRAPH_DIR/"
report_dir="$(mktemp -d)"
trap 'rm -rf "$report_dir"' EXIT
# Offline: --skip-download (no policy metadata / guidelines from Prisma Cloud; no API key is
# ever given), BC_SKIP_MAPPING (no check-id mapping download), CKV_SKIP_PACKAGE_UPDATE_CHECK
# (no PyPI version check). `timeout` guarantees it cannot hang CI.
set +e
BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true LOG_LEVEL=WARNING \
  timeout "$CHECKOV_TIMEOUT" "$VENV/bin/checkov" \
    --directory "$INFRA_DIR" \
    --framework bicep \
    --skip-path "$GRAPH_DIR" \
    --skip-download \
    --output json \
    >"$report_dir/checkov.json" 2>"$report_dir/checkov.err"
checkov_rc=$?
set -e
if [ "$checkov_rc" -ne 0 ] && [ "$checkov_rc" -ne 1 ]; then
  cat "$report_dir/checkov.err" >&2
  die "checkov exited with $checkov_rc (124 = timed out after ${CHECKOV_TIMEOUT}s)"
fi

read -r -d '' REPORT_CHECK <<'PY' || true
import json, re, sys

report_path, stderr_path = sys.argv[1:]
with open(report_path) as fh:
    text = fh.read()
try:
    report = json.loads(text)
except json.JSONDecodeError:
    print("lint-infra: FAIL: checkov did not produce a JSON report:\n" + text[-2000:], file=sys.stderr)
    sys.exit(1)
reports = report if isinstance(report, list) else [report]
problems = []
totals = {"passed": 0, "failed": 0, "skipped": 0}
for rep in reports:
    summary = rep.get("summary", rep)
    for key in totals:
        totals[key] += int(summary.get(key, 0))
    results = rep.get("results", {})
    for path in results.get("parsing_errors", []):
        problems.append(f"checkov could not parse {path}")
    for check in results.get("failed_checks", []):
        lines = "-".join(str(n) for n in check.get("file_line_range") or [])
        problems.append(f"{check['check_id']} {check['check_name']}: {check['resource']} "
                        f"({check.get('repo_file_path') or check.get('file_path')}:{lines})")
    for check in results.get("skipped_checks", []):
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        where = f"{check['resource']} ({check.get('repo_file_path') or check.get('file_path')})"
        if not reason.strip() or reason.strip() == "No comment provided":
            problems.append(f"{check['check_id']} skipped without a written reason: {where}")
        else:
            print(f"   skipped {check['check_id']} on {where}: {reason}")
with open(stderr_path) as fh:
    for line in fh:
        # A check that crashes is silently dropped from the report: treat it as a failure.
        if re.search(r"Failed to run check|Traceback|\[ERROR\]", line):
            problems.append("checkov error: " + line.strip())
print(f"   checkov bicep: passed {totals['passed']}, failed {totals['failed']}, skipped {totals['skipped']}, "
      f"parsing errors {sum(len(r.get('results', {}).get('parsing_errors', [])) for r in reports)}")
if totals["passed"] == 0:
    problems.append("checkov ran no check at all (nothing scanned?)")
for problem in problems:
    print(f"lint-infra: FAIL: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
"$VENV/bin/python" -c "$REPORT_CHECK" "$report_dir/checkov.json" "$report_dir/checkov.err" || die "checkov"

# --- 5. hook scripts ------------------------------------------------------------------------
say "4. azd hook scripts: sh -n"
for hook in "$INFRA_DIR"/hooks/*.sh; do
  [ -e "$hook" ] || continue
  sh -n "$hook" || die "$hook: shell syntax"
  printf '   ok  %s\n' "$hook"
done

say "lint-infra: OK"
