#!/usr/bin/env bash
# The whole test suite, with its own set-up: `bash tests/run.sh [pytest args]`.
# As root it installs the Debian packages the real-filesystem tests need
# (xfsprogs, btrfs-progs, fuse3, strace; gcc, pkg-config, libfuse3-dev to build
# tests/latencyfs.c); elsewhere those tests skip with a reason.
#
# As root it then runs the non-root part of the suite (`-m "not root and not dist"`) a
# second time as an unprivileged user (LINKSTRATEGY_TEST_USER, default
# `lsuser`, created if missing) with `ulimit -n 1024`, in a copy of the
# repository that user owns: permission errors, EACCES on someone else's
# files and a small fd limit are what users see.  Either run failing fails
# the script.  LINKSTRATEGY_UNPRIVILEGED=0 skips the second run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TEST_USER=${LINKSTRATEGY_TEST_USER:-lsuser}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  command -v mkfs.xfs >/dev/null || missing+=(xfsprogs)
  command -v mkfs.btrfs >/dev/null || missing+=(btrfs-progs)
  command -v fusermount3 >/dev/null || missing+=(fuse3)
  command -v filefrag >/dev/null || missing+=(e2fsprogs)
  # the modes mkdir is given, read by strace (test_place_safety)
  command -v strace >/dev/null || missing+=(strace)
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

# The unprivileged user exists before the root run too: tests/test_uninstall.py's
# races between two users (lsuser, nobody) run as root and skip without it.
if [ "$(id -u)" = 0 ] && [ "${LINKSTRATEGY_UNPRIVILEGED:-1}" != 0 ] && ! id -u "$TEST_USER" >/dev/null 2>&1; then
  echo "creating user $TEST_USER for the unprivileged run" >&2
  useradd --create-home --shell /bin/sh "$TEST_USER"
fi

"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v -e '^WARNING' -e 'pip as the .root. user' || true

# pytest's own temporary root for this run only: sessions sharing
# /tmp/pytest-of-$USER clean up each other's old numbered directories, and a
# concurrent session's directory may hold live mounts.
if [ -z "${PYTEST_DEBUG_TEMPROOT:-}" ]; then
  PYTEST_DEBUG_TEMPROOT=$(mktemp -d /tmp/linkstrategy-pytest.XXXXXX)
  export PYTEST_DEBUG_TEMPROOT
  own_temproot=1
fi

set +e
"$PYTHON" -m pytest "$@"
rc=$?
set -e
if [ "${own_temproot:-0}" = 1 ] && [ "$rc" = 0 ]; then
  rm -rf --one-file-system "$PYTEST_DEBUG_TEMPROOT" # kept after a failure, to look at
fi
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  rc=1
fi

# ------------------------------------------------------------ unprivileged run
if [ "$(id -u)" != 0 ] || [ "${LINKSTRATEGY_UNPRIVILEGED:-1}" = 0 ]; then
  exit "$rc"
fi

user_home=$(getent passwd "$TEST_USER" | cut -d: -f6)

# The interpreter may live where the user cannot reach it (pyenv under /root,
# mode 0700).  Grant search (o+x, not read) on the directories leading to the
# venv and to the base interpreter, and say so.
for prefix in $("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix))'); do
  d=$prefix
  while [ "$d" != / ]; do
    d=$(dirname "$d")
    if [ "$(stat -c %A "$d" | cut -c10)" != x ] && [ "$(stat -c %A "$d" | cut -c10)" != t ]; then
      echo "granting o+x on $d so that $TEST_USER can run $PYTHON" >&2
      chmod o+x "$d"
    fi
  done
done
py_real=$("$PYTHON" -c 'import sys; print(sys.executable)')

copy=$(mktemp -d /tmp/linkstrategy-unprivileged.XXXXXX)
trap 'rm -rf "$copy"' EXIT
# The working tree as it is (uncommitted edits and the built C extension
# included), without VCS and caches.
tar -C . --exclude=./.git --exclude=./.tox --exclude='__pycache__' --exclude=./tests/.build \
  --exclude=./.pytest_cache --exclude=./.hypothesis --exclude=./.mypy_cache --exclude=./.ruff_cache \
  -cf - . | tar -C "$copy" -xf -
chown -R "$TEST_USER:" "$copy"
chmod 0755 "$copy"

echo "== unprivileged run: $TEST_USER, ulimit -n 1024, -m 'not root and not dist', in $copy" >&2
set +e
# A fresh environment: only what the suite reads is passed on.  The copy's src/
# comes before the editable install's path (PYTHONPATH precedes site-packages).
runuser -u "$TEST_USER" -- env -i \
  HOME="$user_home" USER="$TEST_USER" LOGNAME="$TEST_USER" PATH="/usr/local/bin:/usr/bin:/bin" \
  LANG="${LANG:-C.UTF-8}" PYTHONPATH="$copy/src" PYTHONDONTWRITEBYTECODE=1 \
  ${LINKSTRATEGY_REQUIRE_SPEEDUPS:+LINKSTRATEGY_REQUIRE_SPEEDUPS="$LINKSTRATEGY_REQUIRE_SPEEDUPS"} \
  ${LINKSTRATEGY_NO_SPEEDUPS:+LINKSTRATEGY_NO_SPEEDUPS="$LINKSTRATEGY_NO_SPEEDUPS"} \
  bash -c 'ulimit -n 1024 && cd "$1" && shift && exec "$@"' unprivileged "$copy" \
  "$py_real" -m pytest -p no:cacheprovider -m "not root and not dist" "$@"
urc=$?
set -e
if [ "$urc" = 5 ] && [ $# -gt 0 ]; then
  urc=0 # the arguments selected only root tests
elif [ "$urc" = 5 ]; then
  echo "unprivileged run collected no tests: that is a failure here" >&2
  urc=1
fi
if [ "$urc" != 0 ]; then
  echo "unprivileged run ($TEST_USER) failed: exit $urc" >&2
fi
if [ "$rc" != 0 ]; then
  exit "$rc"
fi
exit "$urc"
