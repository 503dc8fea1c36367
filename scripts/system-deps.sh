#!/usr/bin/env bash
# Install the system packages citypulse needs (Debian 12). Idempotent.
#   scripts/system-deps.sh            # services: mosquitto, postgresql (+postgis)
#   scripts/system-deps.sh --browser  # also chromium + chromium-driver (dashboard tests)
# As root it installs with apt-get; otherwise it prints the exact command to run.
set -euo pipefail
want=(mosquitto mosquitto-clients postgresql-15 postgresql-client-15 postgresql-15-postgis-3)
# the collector's C pass (ingest/_fastrows.c) is compiled on install: a C compiler, and the
# Python headers when the Python in use is Debian's own
want+=(gcc libc6-dev)
py=${PYTHON:-python3}
if ! "$py" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
  want+=(python3-dev)
fi
if [[ "${1:-}" == "--browser" ]]; then
  want+=(chromium chromium-driver fonts-dejavu-core libegl-mesa0 libgl1-mesa-dri)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "citypulse needs these Debian packages: ${missing[*]}" >&2
  echo "run:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/citypulse-update-stamp
if [[ ! -f $stamp ]] || [[ -n $(find "$stamp" -mmin +1440 2>/dev/null) ]]; then
  apt-get update -qq && mkdir -p "$(dirname $stamp)" && touch "$stamp"
fi
# Never let package scripts start or restart system services (the machine's own
# PostgreSQL and Mosquitto keep running as they are).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; created_policy=1; fi
apt-get install -y -qq --no-install-recommends "${missing[@]}"
[[ $created_policy -eq 1 ]] && rm -f $policy
exit 0
