#!/usr/bin/env bash
# What an installed (or packaged) mqtt-presence holds, checked as an operator and a packager would.
#   check_package.sh installed PREFIX          the tools, the unit (naming PREFIX/bin), docs, man pages, .pc
#   check_package.sh pkg-config PREFIX README OUT   README's quick start built and linked with pkg-config alone
#   check_package.sh unit PREFIX               systemd-analyze: the unit verifies, exposure 2.0 ("OK") at most
#   check_package.sh deb BUILD OUT             cpack -G DEB: its contents, and lintian reports no error
set -euo pipefail
fail() { echo "check_package: $*" >&2; exit 1; }

case ${1:-} in
installed)
  prefix=$2
  for f in bin/mqtt-presence-scanner bin/mqtt-presence-sensor lib/systemd/system/mqtt-presence.service \
           share/doc/mqtt-presence/README.md share/doc/mqtt-presence/docs/operations.md \
           share/doc/mqtt-presence/docs/architecture.md share/doc/mqtt-presence/docs/conventions.md \
           share/doc/mqtt-presence/docs/tools.md share/doc/mqtt-presence/docs/service.md \
           share/doc/mqtt-presence/docs/performance.md share/doc/mqtt-presence/docs/dashboard.png \
           share/doc/mqtt-presence/copyright \
           share/doc/mqtt-presence/examples/config.toml \
           share/man/man1/mqtt-presence-scanner.1.gz share/man/man1/mqtt-presence-sensor.1.gz \
           lib/pkgconfig/mqtt_presence.pc include/mqtt_presence/version.hpp; do
    [[ -e "$prefix/$f" ]] || fail "not installed: $f"
  done
  grep -qx "ExecStart=$prefix/bin/mqtt-presence-scanner serve" "$prefix/lib/systemd/system/mqtt-presence.service" ||
    fail "the unit does not start $prefix/bin/mqtt-presence-scanner: $(grep ExecStart= "$prefix/lib/systemd/system/mqtt-presence.service")"
  zcat "$prefix/share/man/man1/mqtt-presence-scanner.1.gz" | grep -qF -- '\-\-require' ||
    fail "the scanner's man page lacks its options"
  echo "installed: tools, unit, docs, man pages, pkg-config file"
  ;;
pkg-config)
  prefix=$2 readme=$3 out=$4
  mkdir -p "$out"
  sed -n '/<!-- quickstart:begin -->/,/<!-- quickstart:end -->/p' "$readme" | sed '1,2d;$d' | sed '$d' > "$out/quickstart.cpp"
  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
  version=$(pkg-config --modversion mqtt_presence) || fail "pkg-config does not find mqtt_presence"
  # shellcheck disable=SC2046
  ${CXX:-c++} -std=c++17 -Wall -Werror "$out/quickstart.cpp" -o "$out/quickstart" \
    $(pkg-config --cflags --libs mqtt_presence) || fail "the quick start does not build with pkg-config"
  echo "the quick start builds and links with pkg-config alone (mqtt_presence $version)"
  ;;
unit)
  unit=$2/lib/systemd/system/mqtt-presence.service
  systemd-analyze verify --man=no "$unit" || fail "systemd-analyze verify refuses the unit"
  report=$(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1) ||
    fail "exposure above 2.0: $(tail -1 <<<"$report")"
  tail -1 <<<"$report"
  ;;
deb)
  build=$2 out=$3
  rm -rf "$out" && mkdir -p "$out"
  (cd "$build" && cpack -G DEB -B "$out" >"$out/cpack.log" 2>&1) || { cat "$out/cpack.log" >&2; fail "cpack failed"; }
  deb=$(ls "$out"/*.deb)
  contents=$(dpkg-deb -c "$deb")
  for f in ./usr/bin/mqtt-presence-scanner ./usr/bin/mqtt-presence-sensor ./usr/lib/systemd/system/mqtt-presence.service \
           ./usr/share/doc/mqtt-presence/copyright ./usr/share/doc/mqtt-presence/changelog.gz \
           ./usr/share/man/man1/mqtt-presence-scanner.1.gz ./usr/lib/pkgconfig/mqtt_presence.pc; do
    grep -q " $f\$" <<<"$contents" || fail "the .deb lacks $f"
  done
  dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./control | grep -q '^Depends: .*libpaho-mqttpp3' ||
    fail "the .deb does not depend on Paho: $(dpkg-deb -f "$deb" Depends)"
  tmp=$(mktemp -d) && dpkg-deb -x "$deb" "$tmp"
  grep -qx 'ExecStart=/usr/bin/mqtt-presence-scanner serve' "$tmp/usr/lib/systemd/system/mqtt-presence.service" ||
    fail "the packaged unit does not start /usr/bin/mqtt-presence-scanner"
  rm -rf "$tmp"
  lintian --fail-on error --suppress-tags-from-file /dev/null "$deb" >"$out/lintian.txt" 2>&1 ||
    { cat "$out/lintian.txt" >&2; fail "lintian reports errors"; }
  echo "$(basename "$deb"): $(grep -c . <<<"$contents") entries; lintian: $(grep -c '^E:' "$out/lintian.txt" || true) errors, $(grep -c '^W:' "$out/lintian.txt" || true) warnings"
  ;;
*) fail "usage: check_package.sh installed|pkg-config|unit|deb ..." ;;
esac
