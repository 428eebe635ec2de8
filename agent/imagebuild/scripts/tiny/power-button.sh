#!/bin/sh
# acpid's handler of the ACPI power button (libvirt's graceful shutdown): power off.
echo "ttstack-tiny: power button" > /dev/console
exec /sbin/poweroff
