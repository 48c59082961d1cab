#!/usr/bin/env bash
# One command: set up this Debian 12 machine for testbed (as root) and run the quickstart suite.
#   ./setup.sh            set up, then run suites/quickstart.yaml
#   ./setup.sh --no-run   set up only
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: run as root (testbed creates network namespaces, containers and VMs)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# 1. What the Python environment needs to build: libvirt-python compiles against libvirt-dev.
#    Everything else is installed by the project's Ansible playbook in step 3.
need=(python3 python3-venv python3-dev gcc pkg-config libvirt-dev)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# 2. testbed's own Python environment (Debian's python3, so the venv works on any Debian 12 host).
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# 3. Debian packages (non-free enabled for netperf), libvirtd, runtimes, workloads, load generators:
#    playbooks/site.yml run through ansible-runner against this machine.
.venv/bin/testbed provision

# 4. The main job.
if [ "${1:-}" != "--no-run" ]; then
    .venv/bin/testbed run suites/quickstart.yaml
fi
