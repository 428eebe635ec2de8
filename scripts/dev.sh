#!/usr/bin/env bash
# Set up a Debian machine (as root) for ttstack and run it or its tests.
#
#   bash scripts/dev.sh up     install what is missing, start dockerd/libvirtd, build the demo images,
#                              run controller + worker + local agent (Ctrl-C stops them)
#   bash scripts/dev.sh test   the same set-up (plus PostgreSQL and Redis), builds the images the tests
#                              boot (debian-12 for qemu and docker), then lint, schema checks and the whole
#                              test suite; stops the daemons it started
#
# Idempotent: packages, the venv and images are only installed/built when missing. Images are built into
# the build cache (TTSTACK_CACHE_DIR, default /var/cache/ttstack, outside the clone): the first run of
# `test` takes a few minutes more, later runs reuse the cache until an image's recipe or build scripts
# change (the cache entry's name carries their hash; docs/images.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-}
case "$MODE" in up|test|setup) ;; *) echo "usage: $0 up|test|setup" >&2; exit 2 ;; esac

log() { printf '\033[1m== %s\033[0m\n' "$*"; }

PACKAGES=(python3 python3-venv python3-dev gcc pkg-config libvirt-dev libvirt-daemon-system qemu-system-x86
          qemu-utils docker.io iptables genisoimage busybox-static dropbear-bin cpio openssh-client
          ca-certificates procps iproute2
          kmod mmdebstrap e2fsprogs fdisk)  # image builds: module order, Debian roots, ext4, partitions
[ "$MODE" = test ] && PACKAGES+=(chromium postgresql redis-server)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- daemons: start what is not running, remember it, stop it again on exit ------------------------
STARTED=()
stop_started() {
  for name in "${STARTED[@]}"; do
    case "$name" in
      dockerd) pkill -x dockerd || true ;;
      libvirtd) pkill -x libvirtd || true ;;
      virtlogd) pkill -x virtlogd || true ;;
      redis) redis-cli -h 127.0.0.1 shutdown nosave >/dev/null 2>&1 || true ;;
      postgres) pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main stop || true ;;
    esac
  done
}
trap stop_started EXIT

wait_until() {  # wait_until SECONDS CMD...
  local limit=$1; shift
  for _ in $(seq "$((limit * 5))"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  nohup dockerd >/var/log/ttstack-dockerd.log 2>&1 &
  STARTED+=(dockerd)
  wait_until 60 docker info || { tail -20 /var/log/ttstack-dockerd.log; exit 1; }
fi
# Debian's udev would make /dev/kvm root:kvm 0660; without it libvirt re-probes qemu on every call.
if [ -e /dev/kvm ] && getent group kvm >/dev/null; then chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; fi
if ! pgrep -x virtlogd >/dev/null; then virtlogd -d; STARTED+=(virtlogd); fi
if ! virsh -c qemu:///system version >/dev/null 2>&1; then
  log "starting libvirtd"
  pgrep -x libvirtd >/dev/null || { libvirtd -d; STARTED+=(libvirtd); }
  wait_until 30 virsh -c qemu:///system version || { echo "libvirtd did not come up" >&2; exit 1; }
fi

if [ "$MODE" = test ]; then
  if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    log "starting redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    STARTED+=(redis)
    wait_until 10 redis-cli -h 127.0.0.1 ping
  fi
  if ! pg_isready -q -h 127.0.0.1; then
    log "starting postgresql"
    cluster=$(ls /etc/postgresql | head -1)
    hba=/etc/postgresql/$cluster/main/pg_hba.conf
    # A fresh install asks for passwords on 127.0.0.1; the tests use the local trust setup.
    grep -q "ttstack-test" "$hba" || sed -i '1i host all all 127.0.0.1/32 trust # ttstack-test' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
    STARTED+=(postgres)
    wait_until 30 pg_isready -q -h 127.0.0.1
    psql -h 127.0.0.1 -U postgres -tc "select 1 from pg_database where datname='test'" | grep -q 1 \
      || psql -h 127.0.0.1 -U postgres -c "create database test" >/dev/null
  fi
fi

# --- the venv -------------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  log "installing ttstack and its dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi
export PATH="$ROOT/.venv/bin:$PATH"

# The Debian images take their mirror from apt's view of its sources, which needs package lists.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  log "apt-get update (the image builds read the Debian mirror from apt)"
  apt-get update -qq
fi

if [ "$MODE" = up ]; then
  DATA=${TTSTACK_DATA_DIR:-/var/lib/ttstack}
  # Private from the start (keys and databases live here); the image build below would make it 0755.
  [ -d "$DATA" ] || install -d -m 0700 "$DATA"
  [ -d "$DATA/agent" ] || install -d -m 0700 "$DATA/agent"
  log "building the demo images of the README (cached after the first run)"
  TTSTACK_DATA_DIR=$DATA/agent ttstack image build docker-tiny
  TTSTACK_DATA_DIR=$DATA/agent ttstack image build tiny
  log "starting controller + worker + local agent"
  TTSTACK_DATA_DIR=$DATA ttstack up
elif [ "$MODE" = test ]; then
  # Into the build cache only: the tests install them into their own image dirs (hard links, instant).
  log "building the test images into the build cache (minutes the first time, then cached)"
  scratch=$(mktemp -d)
  TTSTACK_DATA_DIR=$scratch ttstack image build docker-tiny
  TTSTACK_DATA_DIR=$scratch ttstack image build debian-12
  rm -rf "$scratch"
  log "ruff"
  ruff check .
  log "OpenAPI schemas"
  for role in controller agent localvm; do
    TTSTACK_DATA_DIR=$(mktemp -d) ttstack manage "$role" spectacular --validate --fail-on-warn \
      --file /dev/null
  done
  log "test suite (SQLite)"
  mkdir -p artifacts
  pytest -p no:cacheprovider --durations=40
  log "database-sensitive tests on PostgreSQL"
  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test pytest -p no:cacheprovider -m postgres
fi
