#!/usr/bin/env bash
# Puts policies/demo.json, on one line, into envoy/envoy.yaml's plugin configuration (the e2e tests
# check that the two agree).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
python3 - "$ROOT/policies/demo.json" "$ROOT/envoy/envoy.yaml" <<'PY'
import json, re, sys
doc = json.dumps(json.load(open(sys.argv[1])), separators=(",", ":"))
yaml_path = sys.argv[2]
text = open(yaml_path).read()
new, n = re.subn(r'^(\s*value: )".*"$', lambda m: m.group(1) + json.dumps(doc), text, count=1, flags=re.M)
if n != 1:
    sys.exit("envoy.yaml: no `value: \"...\"` line found")
open(yaml_path, "w").write(new)
PY
