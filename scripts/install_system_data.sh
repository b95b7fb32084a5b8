#!/usr/bin/env bash
# Debian packages the toolkit and its tests need: WordNet for caption augmentation, and Chromium, in
# which the tests open report.html (playwright drives it; its own browser download is not used).
# (Open Clip Art is fetched by `cli.py demo-data` itself with `apt-get download`, which needs no root.)
set -euo pipefail
needed=(wordnet-base wordnet-sense-index chromium)
missing=()
for pkg in "${needed[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "note: no apt-get here; install WordNet for nltk yourself: python -c \"import nltk; nltk.download('wordnet')\"" >&2
    echo "note: the tests also need Chromium at /usr/bin/chromium" >&2
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
