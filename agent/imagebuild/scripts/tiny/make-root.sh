#!/bin/sh
# Lay out the root of the tiny guest's initramfs (run on the build host).
#
#   make-root.sh ROOT BOOT_MODULES CDROM_MODULES
#
# ROOT is an empty directory. BOOT_MODULES and CDROM_MODULES are files listing kernel module paths in load
# order (dependencies first, as `modprobe --show-depends` prints them); the guest's init loads the first set
# at boot and the second only when no seed shows up on a virtio disk. The guest's own scripts (init.sh,
# udhcpc.sh, power-button.sh) are taken from this script's directory. Needs busybox-static, dropbear-bin, ldd.
set -eu
ROOT=$1
BOOT_MODULES=$2
CDROM_MODULES=$3
HERE=$(cd "$(dirname "$0")" && pwd)
BUSYBOX=/bin/busybox

cd "$ROOT"
mkdir -p bin sbin usr/bin usr/sbin proc sys dev run mnt var/log etc/tiny etc/acpi/PWRF etc/dropbear \
  lib/modules lib/x86_64-linux-gnu lib64
mkdir -m 700 root
mkdir -m 1777 tmp
ln -s ../run var/run

# busybox and every applet it offers, where it says the applet belongs
install -m 755 "$BUSYBOX" bin/busybox
for applet in $("$BUSYBOX" --list-full); do
  [ "$applet" = bin/busybox ] && continue
  [ -e "$applet" ] || [ -L "$applet" ] && continue
  up=$(echo "$applet" | sed 's|[^/]*/|../|g; s|[^/]*$||')
  ln -s "${up}bin/busybox" "$applet"
done

# dropbear with its shared libraries and the loader (/usr/lib/... goes to /lib/..., the guest has no /usr/lib)
for binary in /usr/sbin/dropbear /usr/bin/dropbearkey; do
  install -m 755 "$binary" "${binary#/}"
  for lib in $(ldd "$binary" | sed -n 's|.*=> \(/[^ ]*\) .*|\1|p; s|^[[:space:]]*\(/[^ ]*\) (.*|\1|p'); do
    dest=${lib#/}
    dest=${dest#usr/}
    [ -e "$dest" ] || install -m 755 "$(readlink -f "$lib")" "$dest"
  done
done
# A fallback host key; the guest makes its own at boot and uses this one only if that fails.
dropbearkey -t ed25519 -f etc/tiny/dropbear_ed25519_host_key >/dev/null
chmod 600 etc/tiny/dropbear_ed25519_host_key

# kernel modules, flat, with the load order in a list
copy_modules() {  # copy_modules LIST OUT
  : > "$2"
  while read -r path; do
    name=$(basename "$path" | sed 's/\.ko.*$//; s/-/_/g')
    case "$path" in
      *.ko.xz) xz -dc "$path" > "lib/modules/$name.ko" ;;
      *.ko.zst) zstd -qdc "$path" > "lib/modules/$name.ko" ;;
      *.ko.gz) gzip -dc "$path" > "lib/modules/$name.ko" ;;
      *) cp "$path" "lib/modules/$name.ko" ;;
    esac
    echo "$name" >> "$2"
  done < "$1"
}
copy_modules "$BOOT_MODULES" etc/tiny/modules
copy_modules "$CDROM_MODULES" etc/tiny/modules.cdrom
chmod 644 lib/modules/*.ko

install -m 755 "$HERE/init.sh" init
install -m 755 "$HERE/udhcpc.sh" etc/udhcpc.script
install -m 755 "$HERE/power-button.sh" etc/acpi/PWRF/00000080

cat > etc/inittab <<'END'
::ctrlaltdel:/sbin/poweroff
::shutdown:/bin/echo ttstack-tiny: shutting down
::shutdown:/bin/sync
::shutdown:/bin/umount -a -r
ttyS0::respawn:/bin/sh -l
END
cat > etc/profile <<'END'
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PS1='\h:\w\$ '
END
printf 'root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534:sshd:/run:/bin/false\n' > etc/passwd
printf 'root:*:19000:0:99999:7:::\n' > etc/shadow
chmod 600 etc/shadow
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' > etc/group
printf '/bin/sh\n/bin/ash\n' > etc/shells
echo tiny > etc/hostname
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' > etc/nsswitch.conf
