#!/usr/bin/env bash
# ensure-apt.sh PACKAGE [COMMAND]: install PACKAGE with apt-get when COMMAND (or, without one,
# the package itself) is missing. Without root it prints what to run instead and fails.
set -euo pipefail
package=$1 command_name=${2:-}
if [ -n "$command_name" ]; then
  command -v "$command_name" >/dev/null 2>&1 && exit 0
else
  dpkg -s "$package" >/dev/null 2>&1 && exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "missing: $package; install it with: sudo apt-get install -y $package" >&2
  exit 1
fi
echo "installing $package with apt-get" >&2
stamp=/tmp/.liveroom-apt-updated
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +720 2>/dev/null)" ]; then
  apt-get update -qq && touch "$stamp"
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
if [ -n "$command_name" ] && ! command -v "$command_name" >/dev/null 2>&1; then
  echo "$package did not provide $command_name" >&2
  exit 1
fi
