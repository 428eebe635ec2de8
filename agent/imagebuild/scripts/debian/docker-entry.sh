#!/bin/sh
# Entry of the ttstack debian-12 docker image (installed as /usr/local/sbin/ttstack-entry).
#
# The contract with whoever runs it (docs/images.md, "The docker image contract"):
#   - SSH public keys, one per line, in the file /run/ttstack/authorized_keys (the agent bind-mounts it
#     read-only) and/or in the environment variable TTSTACK_SSH_KEYS. They are installed for root and for
#     the default user "debian" at every start. With neither, keys already in /root/.ssh/authorized_keys
#     are kept (and given to "debian" too).
#   - sshd listens on port 22 (label io.ttstack.ssh-port) and runs in the foreground as PID 1, logging to
#     stderr; SIGTERM (docker stop) ends it.
#   - The container's SSH host keys are made on its first start and kept across restarts.
set -eu
KEY_FILE=/run/ttstack/authorized_keys
USER_NAME=debian

keys=$(mktemp)
trap 'rm -f "$keys"' EXIT
[ -r "$KEY_FILE" ] && cat "$KEY_FILE" >> "$keys"
[ -n "${TTSTACK_SSH_KEYS:-}" ] && printf '%s\n' "$TTSTACK_SSH_KEYS" >> "$keys"
if [ ! -s "$keys" ] && [ -s /root/.ssh/authorized_keys ]; then
  cat /root/.ssh/authorized_keys >> "$keys"
fi
# one key per line, no blank lines or carriage returns
tr -d '\r' < "$keys" | grep -v '^[[:space:]]*$' > "$keys.clean" || true
mv "$keys.clean" "$keys"

install_keys() {  # install_keys USER HOME
  install -d -m 700 -o "$1" -g "$1" "$2/.ssh"
  install -m 600 -o "$1" -g "$1" "$keys" "$2/.ssh/authorized_keys"
}
install_keys root /root
install_keys "$USER_NAME" "/home/$USER_NAME"
echo "ttstack-entry: $(grep -c . "$keys" || true) SSH key(s) installed for root and $USER_NAME" >&2

for type in ed25519 ecdsa; do
  [ -f "/etc/ssh/ssh_host_${type}_key" ] || ssh-keygen -q -t "$type" -N '' -f "/etc/ssh/ssh_host_${type}_key"
done
mkdir -p /run/sshd
chmod 755 /run/sshd
exec /usr/sbin/sshd -D -e
