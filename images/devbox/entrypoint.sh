#!/bin/bash
# devbox-entrypoint: make the box's user, install the SSH key and host key devbox copied in,
# start sshd, say so on one line, then run Jupyter (or the given command) as that user.
#
# In (environment, not secret):  DEVBOX_USER_NAME DEVBOX_UID DEVBOX_GID  (absent: root)
#                                DEVBOX_SSH_PASSWORD=1 (password login as well as keys)
# In (files devbox copies in before start; never in `docker inspect` or on a command line):
#   /run/devbox/authorized_keys   /run/devbox/jupyter_token   /run/devbox/ssh_host_key (any type)
# Out (stdout, one line each, parsed by devbox; format documented in docs/image.md):
#   devbox-ready ssh user=NAME uid=UID port=22 hostkey=SHA256:... [password=...]
#   devbox-warning shm: ...
set -euo pipefail

secrets=/run/devbox
name=${DEVBOX_USER_NAME:-root}

# --- started as the user (`--user UID:GID`: lab mode, docs/lab.md) -------------------------------
# No root at any moment: the user's entry comes from nss_wrapper (the image's passwd cannot be
# written), sshd runs as the user on port 22 (Docker lets containers bind low ports), and the
# files devbox copied into /run/devbox are the user's own.
if [ "$(id -u)" != 0 ]; then
  uid=$(id -u)
  gid=$(id -g)
  [ "$name" = root ] && name=user
  if ! getent passwd "$uid" >/dev/null; then
    nss=/tmp/devbox-nss
    mkdir -p -m 700 "$nss"
    cp /etc/passwd "$nss/passwd"
    cp /etc/group "$nss/group"
    if getent passwd "$name" >/dev/null; then name="${name}_$uid"; fi
    echo "$name:x:$uid:$gid::/home/$name:/bin/bash" >> "$nss/passwd"
    getent group "$gid" >/dev/null || echo "$name:x:$gid:" >> "$nss/group"
    export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD=$nss/passwd NSS_WRAPPER_GROUP=$nss/group
  else
    name=$(getent passwd "$uid" | cut -d: -f1)
  fi
  home=/home/$name
  mkdir -p "$home" 2>/dev/null || home=/tmp/home-$uid
  mkdir -p -m 700 "$home/.ssh"
  export HOME=$home USER=$name LOGNAME=$name
  if [ -s "$secrets/authorized_keys" ]; then
    install -m 600 "$secrets/authorized_keys" "$home/.ssh/authorized_keys"
  fi
  run=/tmp/devbox-sshd
  mkdir -p -m 700 "$run"
  if [ -s "$secrets/ssh_host_key" ]; then
    install -m 600 "$secrets/ssh_host_key" "$run/host_key"
  else
    ssh-keygen -q -t ed25519 -N '' -f "$run/host_key"
  fi
  ssh-keygen -y -f "$run/host_key" > "$run/host_key.pub"
  {
    echo "Port 22"
    echo "HostKey $run/host_key"
    echo "PidFile $run/sshd.pid"
    echo "PasswordAuthentication no"
    echo "KbdInteractiveAuthentication no"
    echo "AllowUsers $name"
    echo "UsePAM no"
    echo "PrintMotd no"
    if [ -n "${LD_PRELOAD:-}" ]; then
      echo "SetEnv LD_PRELOAD=$LD_PRELOAD NSS_WRAPPER_PASSWD=$NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP=$NSS_WRAPPER_GROUP"
    fi
  } > "$run/sshd_config"
  /usr/sbin/sshd -f "$run/sshd_config" -e
  fingerprint=$(ssh-keygen -lf "$run/host_key.pub" | awk '{print $2}')
  echo "devbox-ready ssh user=$name uid=$uid port=22 hostkey=$fingerprint"
  shm_kb=$(df -Pk /dev/shm | awk 'NR==2 {print $2}')
  if [ "${shm_kb:-0}" -lt 1048576 ]; then
    echo "devbox-warning shm: /dev/shm is $((shm_kb / 1024)) MiB; PyTorch DataLoader workers need more (shm_size: 8g)"
  fi
  if [ "$#" -gt 0 ]; then
    exec "$@"
  fi
  config=$home/.devbox-jupyter_config.py
  umask 077
  if [ -s "$secrets/jupyter_token" ]; then
    printf 'c.NotebookApp.token = %s\n' "'$(tr -dc 'A-Za-z0-9' < "$secrets/jupyter_token")'" > "$config"
  else
    : > "$config"
  fi
  umask 022
  exec python3 -m notebook --config="$config" --ip=0.0.0.0 --port=8888 --no-browser --notebook-dir="$PWD"
fi

uid=${DEVBOX_UID:-}
if [ -z "$uid" ]; then
  # A name without a uid (profile `user: NAME`): the image's user of that name, or a new one.
  getent passwd "$name" >/dev/null || useradd -l -M -s /bin/bash "$name"
  uid=$(id -u "$name")
fi
gid=${DEVBOX_GID:-$(id -g "$name" 2>/dev/null || echo "$uid")}

# --- the user --------------------------------------------------------------------------------
if [ "$uid" != 0 ] && [ "$(getent passwd "$name" | cut -d: -f3)" != "$uid" ]; then
  if existing=$(getent passwd "$uid" | cut -d: -f1) && [ -n "$existing" ]; then
    name=$existing                      # the image already has this uid: reuse it
  else
    getent group "$gid" >/dev/null || groupadd -g "$gid" "$name" 2>/dev/null || groupadd -g "$gid" "devbox$gid"
    if getent passwd "$name" >/dev/null; then name="${name}_$uid"; fi
    # -l: no lastlog/faillog entries, which are sparse files sized by the largest uid.
    useradd -l -M -u "$uid" -g "$gid" -d "/home/$name" -s /bin/bash "$name"
  fi
fi
home=$(getent passwd "$name" | cut -d: -f6)
mkdir -p "$home"
if [ "$uid" != 0 ]; then chown "$uid:$gid" "$home"; fi
# '*' = no password but not locked: sshd without PAM refuses key logins to locked accounts.
usermod -p '*' "$name"

# --- SSH -------------------------------------------------------------------------------------
install -d -m 700 -o "$uid" -g "$gid" "$home/.ssh"
if [ -s "$secrets/authorized_keys" ]; then
  install -m 600 -o "$uid" -g "$gid" "$secrets/authorized_keys" "$home/.ssh/authorized_keys"
fi
# devbox generates the host key and records it before the box starts, so the first login
# is already verified. Without one, make our own (the log line still gives its fingerprint).
if [ -s "$secrets/ssh_host_key" ]; then
  hostkey=/etc/ssh/ssh_host_devbox_key
  install -m 600 "$secrets/ssh_host_key" "$hostkey"
  ssh-keygen -y -f "$hostkey" > "$hostkey.pub"
else
  hostkey=/etc/ssh/ssh_host_ed25519_key
  [ -s "$hostkey" ] || ssh-keygen -q -t ed25519 -N '' -f "$hostkey"
fi
password_line=""
password_auth=no
if [ "${DEVBOX_SSH_PASSWORD:-0}" = 1 ]; then
  password=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 20 || true)
  echo "$name:$password" | chpasswd
  password_auth=yes
  password_line=" password=$password"
fi
cat > /etc/ssh/sshd_config.d/devbox.conf <<CONF
HostKey $hostkey
PasswordAuthentication $password_auth
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $name
UsePAM no
PrintMotd no
CONF
if [ "$password_auth" = yes ] && [ "$name" = root ]; then
  sed -i 's/^PermitRootLogin .*/PermitRootLogin yes/' /etc/ssh/sshd_config.d/devbox.conf
fi
/usr/sbin/sshd -e
fingerprint=$(ssh-keygen -lf "$hostkey.pub" | awk '{print $2}')
echo "devbox-ready ssh user=$name uid=$uid port=22 hostkey=$fingerprint$password_line"

# --- warnings --------------------------------------------------------------------------------
shm_kb=$(df -Pk /dev/shm | awk 'NR==2 {print $2}')
if [ "${shm_kb:-0}" -lt 1048576 ]; then
  echo "devbox-warning shm: /dev/shm is $((shm_kb / 1024)) MiB; PyTorch DataLoader workers need more (shm_size: 8g)"
fi

# --- the user's program ----------------------------------------------------------------------
export HOME=$home USER=$name LOGNAME=$name
drop=(setpriv --reuid="$uid" --regid="$gid" --init-groups)
if [ "$#" -gt 0 ]; then
  exec "${drop[@]}" "$@"
fi
# The token goes in a config file only the user can read: not argv (host `ps` shows it), not env.
config=$secrets/jupyter_config.py
umask 077
if [ -s "$secrets/jupyter_token" ]; then
  printf 'c.NotebookApp.token = %s\n' "'$(tr -dc 'A-Za-z0-9' < "$secrets/jupyter_token")'" > "$config"
else
  : > "$config"
fi
chown "$uid:$gid" "$config"
umask 022
exec "${drop[@]}" python3 -m notebook --config="$config" --ip=0.0.0.0 --port=8888 --no-browser \
  --allow-root --notebook-dir="$PWD"
