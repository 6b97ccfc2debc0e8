#!/bin/sh
# Installs the Debian 12 packages weft builds, tests and benchmarks with (as root or via sudo).
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
  build-essential cmake pkg-config ca-certificates procps \
  lua5.4 liblua5.4-dev libuv1-dev node-llhttp \
  lua-cjson lua-busted lua-socket lua-check luarocks \
  curl wrk
