#!/bin/bash
# An unprivileged user on a mount with -o allow_other,default_permissions:
# creation with the caller's ids, EACCES/EPERM, sticky and setgid
# directories, 255-byte names and long paths.
. "$(dirname "$0")/lib.sh" "$1"
HERE=$(cd "$(dirname "$0")" && pwd)
make_image 1G
chmod 0755 "$WORK"
mount_fg -o allow_other,default_permissions
mkdir -m 1777 "$MNT/pub"
mkdir -m 0700 "$MNT/priv"
echo secret >"$MNT/rootfile"
chmod 0600 "$MNT/rootfile"
echo root >"$MNT/pub/root-in-pub"
mkdir "$MNT/setgid"
chgrp 1234 "$MNT/setgid"
chmod 2777 "$MNT/setgid"
setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 "$HERE/nonroot_checks.py" "$MNT" ||
    fail "nonroot_checks.py as nobody"
# A second unprivileged user may not remove nobody's file from the sticky dir.
if setpriv --reuid=65000 --regid=65000 --clear-groups rm -f "$MNT/pub/mine-65534" 2>/dev/null; then
    fail "sticky dir: another user removed nobody's file"
fi
[ -e "$MNT/pub/mine-65534" ] || fail "sticky dir: nobody's file is gone"
finish
