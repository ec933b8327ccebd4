#!/usr/bin/env bash
# Builds actshard's native pieces into native/build/ (gitignored):
#   libpjrt_test_plugin.so — the PJRT C API TEST DOUBLE used by tests/pjrt_*.test.ts (see docs/pjrt.md).
# Usage: native/build.sh   (needs a C compiler: `cc`; Debian: apt-get install gcc)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$here/build"
cc -shared -fPIC -O2 -pthread -Wall -Wextra -Wno-unused-parameter \
  -o "$here/build/libpjrt_test_plugin.so.tmp$$" "$here/pjrt_test_plugin/plugin.c"
mv "$here/build/libpjrt_test_plugin.so.tmp$$" "$here/build/libpjrt_test_plugin.so"
echo "built $here/build/libpjrt_test_plugin.so"
