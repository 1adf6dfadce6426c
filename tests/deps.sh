#!/bin/sh
# Installs the Debian packages the build, the demo and the tests need (as root, on Debian 12).
# Safe to rerun: apt-get skips what is there.
set -e
PACKAGES="
 build-essential autoconf automake libtool pkg-config
 libsystemd-dev libcurl4-openssl-dev libpq-dev libssl-dev libarchive-dev libzstd-dev libjson-c-dev zlib1g-dev
 libiniparser-dev libexpat1-dev libyaml-dev libcmocka-dev
 postgresql postgresql-client zstd age openssl tar acl attr
 python3 python3-pytest python3-boto3 python3-dbus python3-gi
 dbus systemd systemd-container debootstrap util-linux iproute2 procps man-db
 debhelper dh-autoreconf devscripts lintian fakeroot git
 time hyperfine valgrind bc bash-completion mandoc
"
missing=""
for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        # shellcheck disable=SC2086
        apt-get install -y -q --no-install-recommends $missing
fi
