#!/bin/sh
# mmdebstrap customize hook of the debian-12 qemu image: runs on the build host, the image's root is $1.
# The guest is configured by cloud-init from the NoCloud seed the agent attaches (hostname, SSH keys for
# root and the default user); this file sets what every VM of the image shares.
set -eu
ROOT=$1

# cloud-init: only the NoCloud seed (no network probing of other datasources), root may log in with the
# seed's keys, the default user "debian" gets them too and may sudo without a password, the partition and
# the filesystem grow to the VM's disk. The network is cloud-init's fallback: DHCP on the first NIC.
# Host keys: ed25519 and ECDSA only (an RSA key takes tens of seconds to make under TCG); C.UTF-8 is built
# into glibc, so no locale has to be generated at first boot.
cat > "$ROOT/etc/cloud/cloud.cfg.d/90_ttstack.cfg" <<'END'
# ttstack debian-12 image
datasource_list: [ NoCloud, None ]
disable_root: false
ssh_genkeytypes: [ed25519, ecdsa]
manage_etc_hosts: true
locale: C.UTF-8
system_info:
  default_user:
    name: debian
    lock_passwd: true
    gecos: Debian
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
growpart:
  mode: auto
  devices: ["/"]
resize_rootfs: true
END

# The root filesystem is the disk's first partition; the kernel is booted directly with root=/dev/vda1 rw.
cat > "$ROOT/etc/fstab" <<'END'
/dev/vda1  /  ext4  defaults,discard,errors=remount-ro  0  0
END
rm -f "$ROOT/etc/hostname"
echo debian > "$ROOT/etc/hostname"

# sshd offers exactly the host keys cloud-init makes, and takes keys only. Passwords are turned off here, not
# with cloud-init's ssh_pwauth: that rewrites sshd's config and restarts sshd in cloud-init's config stage,
# after sshd first answered, resetting the connections of whoever saw the VM ready (docs/readiness.md).
cat > "$ROOT/etc/ssh/sshd_config.d/10-ttstack.conf" <<'END'
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PasswordAuthentication no
KbdInteractiveAuthentication no
END

# Per-VM identity is made at first boot: SSH host keys by cloud-init, the machine id by systemd.
rm -f "$ROOT"/etc/ssh/ssh_host_*
: > "$ROOT/etc/machine-id"
rm -rf "$ROOT/var/lib/cloud"
# The build host's resolver means nothing in a guest; DHCP writes the guest's own.
rm -f "$ROOT/etc/resolv.conf"
