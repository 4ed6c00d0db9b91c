#!/usr/bin/env bash
# Supply-chain audit: every package the Function App deploys (requirements.txt and everything it
# pulls in) checked with pip-audit against a vulnerability database.
#
#   bash tools/audit.sh            # PyPI's vulnerability data (pip-audit's default service)
#   AUDIT_SERVICE=osv bash tools/audit.sh
#
# Exit status: 0 clean; 1 a known vulnerability that is not an exception below; 2 the audit could
# not be done (vulnerability service unreachable, or a package it could not look up): never a
# silent pass; 3 the audit environment could not be set up.
#
# Everything lives in .venv-audit (gitignored by `.venv-*/`): pip-audit itself (requirements-audit.txt)
# and, apart from it, a venv with exactly the runtime requirements, whose frozen list is what is
# audited. Both are rebuilt only when requirements.txt or requirements-audit.txt change, so a re-run
# costs only the lookups.
set -euo pipefail
cd "$(dirname "$0")/.."

# Accepted vulnerabilities, one per line: "<ID>  # <why it does not apply, who decided, until when>".
# An ID without a reason is refused. Keep this list empty unless a fix is impossible for now.
EXCEPTIONS=(
)

SERVICE="${AUDIT_SERVICE:-pypi}"
VENV=.venv-audit
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
STAMP="$VENV/.stamp"
FROZEN="$VENV/runtime-frozen.txt"
REPORT="$VENV/report.json"

fail() { echo "audit: $2" >&2; exit "$1"; }

ignore_args=()
for entry in "${EXCEPTIONS[@]}"; do
  id="${entry%%#*}"; id="${id//[[:space:]]/}"
  reason="${entry#*#}"
  [[ -n "$id" && "$entry" == *"#"* && -n "${reason//[[:space:]]/}" ]] || fail 3 "exception '$entry' needs an ID and a reason: \"ID  # reason\""
  ignore_args+=(--ignore-vuln "$id")
done

wanted="$(cat requirements.txt requirements-audit.txt | sha256sum | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$wanted" || ! -s "$FROZEN" ]]; then
  echo "audit: preparing $VENV (pip-audit, and the runtime requirements in a venv of their own)"
  rm -rf "$VENV"
  mkdir -p "$VENV" && log="$VENV/install.log" && : > "$log"
  install() { "$1" -m pip install --quiet --disable-pip-version-check -r "$2" >> "$log" 2>&1 || { tail -n 20 "$log" >&2; fail 3 "cannot install $2 (log: $log)"; }; }
  "$PYTHON" -m venv "$VENV" || fail 3 "cannot create $VENV with $PYTHON"
  install "$VENV/bin/python" requirements-audit.txt
  "$PYTHON" -m venv "$VENV/runtime" || fail 3 "cannot create $VENV/runtime"
  install "$VENV/runtime/bin/python" requirements.txt
  "$VENV/runtime/bin/python" -m pip freeze --all --exclude pip --exclude setuptools --exclude wheel > "$FROZEN.tmp"
  mv "$FROZEN.tmp" "$FROZEN"
  echo "$wanted" > "$STAMP"
fi
echo "audit: $(wc -l < "$FROZEN") runtime packages (requirements.txt and what it pulls in), service: $SERVICE"

# --no-deps --disable-pip: the frozen list is already complete and exactly pinned, so pip-audit only
# looks each package up. Its exit status is not trusted alone: a package it could not look up is
# "skipped" and, without --strict, does not fail it; the JSON report is read below instead.
rm -f "$REPORT"
set +e
"$VENV/bin/pip-audit" --requirement "$FROZEN" --no-deps --disable-pip --vulnerability-service "$SERVICE" \
  --format json --output "$REPORT" --progress-spinner off --timeout 20 ${ignore_args[@]+"${ignore_args[@]}"} 2> "$VENV/pip-audit.log"
status=$?
set -e
if [[ ! -s "$REPORT" ]]; then
  tail -n 5 "$VENV/pip-audit.log" >&2
  fail 2 "FAILED: pip-audit produced no report (exit $status): the vulnerability service ($SERVICE) is unreachable from here; nothing was audited"
fi

"$VENV/bin/python" - "$REPORT" "$FROZEN" "$SERVICE" <<'PY'
import json, sys

report, frozen, service = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
expected = sum(1 for line in open(frozen) if line.strip() and not line.startswith("#"))
deps = report.get("dependencies", [])
skipped = [d for d in deps if d.get("skip_reason")]
audited = [d for d in deps if not d.get("skip_reason")]
vulnerable = [d for d in audited if d.get("vulns")]
for d in vulnerable:
    for v in d["vulns"]:
        fixes = ", ".join(v.get("fix_versions") or []) or "no fixed release"
        print(f"VULNERABLE {d['name']} {d['version']}: {v['id']} ({', '.join(v.get('aliases') or [])}) fixed in: {fixes}")
if skipped:
    for d in skipped[:10]:
        print(f"NOT AUDITED {d['name']}: {d['skip_reason']}", file=sys.stderr)
    print(f"audit: FAILED: {len(skipped)} of {len(deps)} packages could not be looked up in the {service} vulnerability "
          "service (unreachable from this network, or it does not know them); this is not a pass", file=sys.stderr)
    sys.exit(2)
if len(audited) != expected:
    print(f"audit: FAILED: {len(audited)} packages audited, {expected} expected", file=sys.stderr)
    sys.exit(2)
if vulnerable:
    print(f"audit: FAILED: known vulnerabilities in {len(vulnerable)} runtime package(s); upgrade, or add an exception with a reason in tools/audit.sh")
    sys.exit(1)
print(f"audit: OK: {len(audited)} runtime packages, no known vulnerabilities ({service})")
PY
