# Sourced by scripts/setup-*.sh: install Debian packages, or exit 2 with one line naming what failed.
# Usage: apt_install PACKAGE...   (the caller has checked it runs as root on a machine with apt-get)
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || { echo "apt-get update failed — check that Debian's package registry is reachable" >&2; exit 2; }
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || { echo "apt-get install $* failed — see the apt output above" >&2; exit 2; }
}
