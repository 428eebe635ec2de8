#!/bin/sh
# PID 1 of the tiny guest (busybox ash). It loads the virtio modules, reads the cloud-init NoCloud seed
# (hostname, root SSH keys), gets an address with DHCP, starts dropbear and acpid, then hands over to
# busybox init, which reaps orphans and powers off cleanly.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
exec </dev/console >/dev/console 2>&1
say() { echo "ttstack-tiny: $*"; }
say "init started, kernel $(uname -r)"

load_modules() {
    for m in $(cat "$1"); do
        insmod "/lib/modules/$m.ko" 2>/dev/null || say "insmod $m failed"
    done
}
load_modules /etc/tiny/modules

SEED=/run/seed
mkdir -p "$SEED"
try_seed() {
    for dev in /dev/vd[a-z] /dev/sr[0-9]; do
        [ -b "$dev" ] || continue
        if mount -t iso9660 -o ro "$dev" "$SEED" 2>/dev/null; then
            if [ -f "$SEED/meta-data" ]; then
                say "seed found on $dev"
                return 0
            fi
            umount "$SEED"
        fi
    done
    return 1
}
poll_seed() {  # poll_seed N: try N times, 0.2 s apart
    i=0
    while [ $i -lt "$1" ]; do
        try_seed && return 0
        usleep 200000
        i=$((i + 1))
    done
    return 1
}
# The seed is a virtio disk, or else an IDE cdrom whose drivers are loaded only then.
find_seed() {
    poll_seed 10 && return 0
    load_modules /etc/tiny/modules.cdrom
    poll_seed 15
}

# First value of "key: value" in a flat YAML file, without quotes.
yaml_value() {
    sed -n "s/^$1:[[:space:]]*//p" "$2" | head -n 1 | tr -d '\r' | sed -e 's/^"\(.*\)"[[:space:]]*$/\1/' \
        -e "s/^'\(.*\)'[[:space:]]*\$/\1/" -e 's/[[:space:]]*$//'
}

HOSTNAME=tiny
mkdir -p /root/.ssh
chmod 700 /root /root/.ssh
: > /root/.ssh/authorized_keys
if find_seed; then
    name=$(yaml_value local-hostname "$SEED/meta-data")
    [ -n "$name" ] || name=$(yaml_value instance-id "$SEED/meta-data")
    [ -n "$name" ] && HOSTNAME=$name
    if [ -f "$SEED/user-data" ]; then
        # Every YAML list item that is an OpenSSH public key, wherever it is nested.
        tr -d '\r' < "$SEED/user-data" \
            | grep -E "^[[:space:]]*-[[:space:]]*[\"']?(ssh-|ecdsa-|sk-)" \
            | sed -e 's/^[[:space:]]*-[[:space:]]*//' -e 's/^"\(.*\)"[[:space:]]*$/\1/' \
                  -e "s/^'\(.*\)'[[:space:]]*\$/\1/" \
            | sort -u > /root/.ssh/authorized_keys
    fi
    umount "$SEED"
else
    say "no cidata seed found"
fi
chmod 600 /root/.ssh/authorized_keys
say "authorized keys: $(grep -c . /root/.ssh/authorized_keys)"

hostname "$HOSTNAME"
echo "$HOSTNAME" > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$HOSTNAME" > /etc/hosts

ifconfig lo 127.0.0.1 up
IP=
if [ -e /sys/class/net/eth0 ]; then
    ifconfig eth0 up
    udhcpc -i eth0 -s /etc/udhcpc.script -t 20 -T 1 -A 2 -b -p /run/udhcpc.pid >/dev/null 2>&1
    [ -f /run/ip ] && IP=$(cat /run/ip)
else
    say "no eth0"
fi

mkdir -p /etc/dropbear
dropbearkey -t ed25519 -f /etc/dropbear/dropbear_ed25519_host_key >/dev/null 2>&1 \
    || cp /etc/tiny/dropbear_ed25519_host_key /etc/dropbear/dropbear_ed25519_host_key
dropbear -r /etc/dropbear/dropbear_ed25519_host_key -p 22 -s -P /run/dropbear.pid
acpid -c /etc/acpi -l /run/acpid.log -p /run/acpid.pid

say "ready ip=${IP:-none} hostname=$HOSTNAME"
exec /sbin/init
