#!/bin/sh
# deps.sh - check for, and on Debian install, what pochta needs to build and
# test. "check" only reports; "ensure" installs what is missing when run as
# root and otherwise names the packages to install and fails.
set -u

# pkg-config module -> Debian package
LIBS="libuv:libuv1-dev ldns:libldns-dev lmdb:liblmdb-dev cmocka:libcmocka-dev
openssl:libssl-dev libcrypt:libcrypt-dev"
# command -> Debian package
TOOLS="gcc:gcc pkg-config:pkg-config mandoc:mandoc python3:python3 swaks:swaks
ldns-testns:ldnsutils drill:ldnsutils openssl:openssl socat:socat fetchmail:fetchmail
ip:iproute2 unshare:util-linux"

missing=""
have_pkgconfig=1
command -v pkg-config >/dev/null 2>&1 || have_pkgconfig=0
for pair in $LIBS; do
	mod=${pair%%:*}; pkg=${pair#*:}
	if [ $have_pkgconfig = 0 ] || ! pkg-config --exists "$mod"; then
		missing="$missing $pkg"
	fi
done
for pair in $TOOLS; do
	cmd=${pair%%:*}; pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || missing="$missing $pkg"
done
missing=$(echo $missing | tr ' ' '\n' | sort -u | tr '\n' ' ')
[ -z "${missing% }" ] && exit 0

case "${1:-ensure}" in
check)
	echo "missing packages: $missing" >&2
	exit 1 ;;
esac

if [ "$(id -u)" != 0 ]; then
	echo "pochta needs these Debian packages: $missing" >&2
	echo "install them as root: apt-get install $missing" >&2
	exit 1
fi
echo "installing missing packages: $missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || exit 1
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >&2 || exit 1
exit 0
