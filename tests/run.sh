#!/usr/bin/env bash
# The whole test suite, with its own set-up: `bash tests/run.sh [pytest args]`.
# As root it installs the Debian packages the real-filesystem tests need
# (xfsprogs, btrfs-progs, fuse3; gcc, pkg-config, libfuse3-dev to build
# tests/latencyfs.c); elsewhere those tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  command -v mkfs.xfs >/dev/null || missing+=(xfsprogs)
  command -v mkfs.btrfs >/dev/null || missing+=(btrfs-progs)
  command -v fusermount3 >/dev/null || missing+=(fuse3)
  command -v filefrag >/dev/null || missing+=(e2fsprogs)
  # tests/latencyfs.c is compiled on first use (mountutil.latencyfs_binary)
  command -v gcc >/dev/null || missing+=(gcc)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  pkg-config --exists fuse3 2>/dev/null || missing+=(libfuse3-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v -e '^WARNING' -e 'pip as the .root. user' || true

set +e
"$PYTHON" -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
