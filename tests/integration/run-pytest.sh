#!/bin/sh
# Runs the integration tests (real PostgreSQL, moto_server, age, dbus-daemon) with Debian's pytest.
# Debian's python3 is used on purpose: the python3 on PATH may be another interpreter without pytest.
# Results: $builddir/tests/integration/junit.xml (tests/run sums them up).
set -e
srcdir=${srcdir:-$(dirname "$0")/../..}
builddir=${SKYFORGE_BUILDDIR:-$(pwd)}
export SKYFORGE_BUILDDIR="$builddir"
mkdir -p "$builddir/tests/integration"
exec /usr/bin/python3 -m pytest -p no:cacheprovider -ra -v \
        --junitxml="$builddir/tests/integration/junit.xml" \
        ${PYTEST_ADDOPTS_EXTRA:-} "$srcdir/tests/integration"
