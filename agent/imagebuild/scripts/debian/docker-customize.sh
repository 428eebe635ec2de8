#!/bin/sh
# mmdebstrap customize hook of the debian-12 docker image: runs on the build host, the image's root is $1.
set -eu
ROOT=$1
HERE=$(cd "$(dirname "$0")" && pwd)

install -m 755 "$HERE/docker-entry.sh" "$ROOT/usr/local/sbin/ttstack-entry"

# The default user, as on the qemu image: "debian", sudo without a password, no password login.
chroot "$ROOT" useradd --create-home --shell /bin/bash --groups sudo --comment Debian debian
chroot "$ROOT" passwd --lock debian >/dev/null
echo 'debian ALL=(ALL) NOPASSWD:ALL' > "$ROOT/etc/sudoers.d/90-ttstack-debian"
chmod 440 "$ROOT/etc/sudoers.d/90-ttstack-debian"

# Keys only; the entry makes the host keys of each container on its first start.
cat > "$ROOT/etc/ssh/sshd_config.d/10-ttstack.conf" <<'END'
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
END
rm -f "$ROOT"/etc/ssh/ssh_host_*
# docker writes these per container.
rm -f "$ROOT/etc/hostname" "$ROOT/etc/resolv.conf"
: > "$ROOT/etc/machine-id"
