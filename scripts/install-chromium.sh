#!/usr/bin/env bash
# The browser tests drive Debian's chromium (never a downloaded browser) through playwright-core,
# and the failover test puts Debian's haproxy in front of two replicas. Installs whichever is
# missing; does nothing when both are there.
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ "${#missing[@]}" -eq 0 ]; then
  echo "chromium and haproxy are installed"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
echo "installing ${missing[*]} from Debian's packages"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
/usr/bin/chromium --version
