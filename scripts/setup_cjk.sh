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
. "$(dirname "$0")/apt_install.sh"
# shellcheck disable=SC2086 # one word a package
apt_install_missing setup_cjk $PACKAGES
echo "[setup_cjk] CJK fonts ready"
