# Sourced by scripts/setup.sh and scripts/setup_cjk.sh: installs the Debian packages that are
# missing (as root, or through sudo), quietly; nothing when all are installed.
# Usage: apt_install_missing TAG PACKAGE... (TAG prefixes the log line, e.g. setup).
apt_install_missing() {
  local tag="$1" p need=0 sudo=""
  shift
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need=1; done
  if [ "$need" = 1 ]; then
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "[$tag] apt-get install $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
  fi
}
