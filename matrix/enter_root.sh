#!/bin/sh
# Run a command inside a runtime root (see matrix/runtime.py, which builds the command line).
#
# Usage: unshare --mount --propagation private -- sh enter_root.sh ROOT CWD CA_BUNDLE UV BIND... -- NAME=VALUE... COMMAND [ARG...]
#    or: ... BIND... -- --inherit-env COMMAND [ARG...]
#
# It runs in a private mount namespace, so every mount made here disappears with the command, however it ends;
# the host's mount table never shows them. The command then runs chrooted in ROOT, in CWD, with exactly the
# NAME=VALUE environment (or, with --inherit-env, the one this script was started with: the caller gives a clean
# one, and secrets stay off the command line), and keeps this process (exec): signals reach it directly.
set -eu
root=$1 cwd=$2 ca=$3 uv=$4
shift 4
mount --rbind /proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /tmp "$root/tmp"
# Files: the host's resolver configuration, CA bundle and uv binary (their mount points are regular files).
mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
mount --bind "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
mount --bind "$uv" "$root/usr/local/bin/uv"
# Directories at the same path as on the host (the repository), so paths in output match.
while [ "$1" != -- ]; do
    mkdir -p "$root$1"
    mount --rbind "$1" "$root$1"
    shift
done
shift
if [ "${1:-}" = --inherit-env ]; then
    shift
    exec chroot "$root" /usr/bin/env -C "$cwd" "$@"
fi
exec chroot "$root" /usr/bin/env -i -C "$cwd" "$@"
