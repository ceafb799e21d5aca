#!/usr/bin/env bash
# Installs every Debian CJK font package the many-class CJK benchmark renders with
# (mrl_keras.training.cjk.FACES: 35 faces in 20 packages, about 450 MB installed).
# scripts/setup.sh installs only the four small packages the tests need. Safe to run again.
set -euo pipefail
PACKAGES="fonts-noto-cjk fonts-noto-cjk-extra fonts-arphic-gbsn00lp fonts-arphic-gkai00mp \
fonts-wqy-microhei fonts-droid-fallback fonts-arphic-uming fonts-arphic-ukai fonts-arphic-bsmi00lp \
fonts-arphic-bkai00mp fonts-wqy-zenhei fonts-hanazono fonts-lxgw-wenkai fonts-ipafont-gothic \
fonts-ipaexfont-gothic fonts-ipafont-mincho fonts-ipaexfont-mincho fonts-vlgothic fonts-umeplus \
fonts-motoya-l-cedar fonts-motoya-l-maruberi"
need=0
for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || need=1; done
if [ "$need" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "[setup_cjk] apt-get install $PACKAGES"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $PACKAGES >/dev/null
fi
echo "[setup_cjk] CJK fonts ready"
