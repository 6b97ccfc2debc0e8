#!/bin/sh
# Installs weft's system dependencies (Debian 12), then weft itself with luarocks, so that
# `weft` is on the PATH. Run from a checkout, as root or with sudo available.
set -eu
cd "$(dirname "$0")/.."
sh tools/deps.sh
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO luarocks --lua-version 5.4 make --deps-mode=none weft-scm-1.rockspec
