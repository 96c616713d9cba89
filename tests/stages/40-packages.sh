#!/usr/bin/env bash
# Builds the .deb and the .rpm with CPack from the test build and checks them:
#  - lintian on the .deb: no errors, no warnings (overrides: packaging/deb/lintian-overrides);
#  - the .deb's file list, conffiles, maintainer scripts and permissions;
#  - rpm -qlp lists exactly packaging/rpm-files.txt, and the rpm carries the scriptlets;
#  - both packages depend on ca-certificates;
#  - systemd-analyze security: dpsd.service and the example consumer at most 2.0.
# The packages are left in $DPSD_TEST_BUILD_DIR for the boot test (60-boot.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=$(realpath "${DPSD_TEST_BUILD_DIR:-build-test}")
need=()
for p in lintian rpm dpkg-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

fail=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}

rm -f "$build"/dpsd_*.deb "$build"/dpsd-*.rpm
(cd "$build" && cpack -G "DEB;RPM" >cpack.log 2>&1) || { cat "$build/cpack.log"; echo "FAIL: cpack"; exit 1; }
deb=$(ls "$build"/dpsd_*.deb)
rpmfile=$(ls "$build"/dpsd-*.rpm)
echo "built: $(basename "$deb") $(basename "$rpmfile")"

# lintian refuses nothing as root but says so on stderr; its verdict is the exit status.
echo "--- lintian"
if lintian --fail-on error,warning --display-level '>=warning' "$deb" 2>/dev/null; then
  echo "ok: lintian: no errors or warnings"
  lintian --fail-on none -i --show-overrides "$deb" 2>/dev/null | grep '^O:' || true
else
  echo "FAIL: lintian"
  fail=1
fi

echo "--- .deb contents"
contents=$(dpkg-deb -c "$deb")
for f in ./usr/sbin/dpsd ./usr/bin/dpsctl ./etc/dpsd/config.toml \
         ./lib/systemd/system/dpsd.service ./lib/systemd/system/dps-provisioned.target \
         ./lib/systemd/system/dpsd-wait-provisioned.service \
         ./usr/lib/sysusers.d/dpsd.conf ./usr/lib/tmpfiles.d/dpsd.conf \
         ./usr/lib/systemd/catalog/dpsd.catalog \
         ./usr/share/dbus-1/system.d/io.dpsd.Provisioning1.conf \
         ./usr/share/dbus-1/interfaces/io.dpsd.Provisioning1.xml \
         ./usr/share/man/man8/dpsd.8.gz ./usr/share/man/man1/dpsctl.1.gz \
         ./usr/share/man/man5/dpsd.toml.5.gz \
         ./usr/share/doc/dpsd/copyright ./usr/share/doc/dpsd/changelog.Debian.gz \
         ./usr/share/doc/dpsd/examples/iothub-consumer.service; do
  check "deb has $f" grep -q " $f\$" <<<"$contents"
done
check "deb: every path is root/root" \
  bash -c '! grep -v " root/root " <<<"$1"' _ "$contents"
check "deb: nothing world-writable" bash -c '! awk "{print \$1}" <<<"$1" | grep -q "^.\{8\}w"' _ "$contents"
check "deb: conffiles is exactly /etc/dpsd/config.toml" \
  test "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = "/etc/dpsd/config.toml"
for s in postinst prerm postrm; do
  check "deb: $s present and executable" bash -c \
    'dpkg-deb --ctrl-tarfile "$1" | tar -tv ./"$2" | grep -q "^-rwxr-xr-x"' _ "$deb" "$s"
done
check "deb: Depends names the runtime libraries" \
  bash -c 'dpkg-deb -f "$1" Depends | grep -q libmosquitto1' _ "$deb"
check "deb: Depends names sdbus-c++ (dpsctl)" \
  bash -c 'dpkg-deb -f "$1" Depends | grep -q "libsdbus-c++1"' _ "$deb"
# The default trust bundle is the OS store: without ca-certificates no DPS handshake verifies.
check "deb: Suggests libengine-pkcs11-openssl" \
  bash -c 'dpkg-deb -f "$1" Suggests | grep -qw libengine-pkcs11-openssl' _ "$deb"
check "deb: description names X.509 and PKCS#11" \
  bash -c 'dpkg-deb -f "$1" Description | grep -q X.509 && dpkg-deb -f "$1" Description | grep -q "PKCS#11"' _ "$deb"
check "deb: Depends on ca-certificates" \
  bash -c 'dpkg-deb -f "$1" Depends | grep -qw ca-certificates' _ "$deb"

echo "--- rpm"
expected=packaging/rpm-files.txt
actual=$(rpm -qlp "$rpmfile" 2>/dev/null)
if diff -u "$expected" <(echo "$actual"); then
  echo "ok: rpm -qlp lists exactly $expected"
else
  echo "FAIL: rpm file list differs from $expected (above)"
  fail=1
fi
# The interface XML is what consumers generate their proxies from (README: "Using the interface
# from C++"), so both packages must carry it.
check "rpm has the interface XML" \
  grep -qx /usr/share/dbus-1/interfaces/io.dpsd.Provisioning1.xml <<<"$actual"
scripts=$(rpm -qp --scripts "$rpmfile" 2>/dev/null)
for s in "postinstall scriptlet" "preuninstall scriptlet" "postuninstall scriptlet"; do
  check "rpm has a $s" grep -q "^$s" <<<"$scripts"
done
check "rpm: config.toml is %config(noreplace)" \
  bash -c 'rpm -qp --configfiles "$1" 2>/dev/null | grep -qx /etc/dpsd/config.toml' _ "$rpmfile"
check "rpm: Requires ca-certificates" \
  bash -c 'rpm -qp --requires "$1" 2>/dev/null | grep -qx "ca-certificates"' _ "$rpmfile"
check "rpm and deb carry the same version" \
  test "$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$rpmfile" 2>/dev/null)" = "$(dpkg-deb -f "$deb" Version)"
# Both units as shipped, by systemd's own scoring: exposure at most 2.0 ("--threshold=20" is in
# tenths; systemd-analyze exits non-zero above it). The example consumer is what operators copy,
# so it is held to the same bar as dpsd.
echo "--- systemd-analyze security"
for unit in systemd/dpsd.service systemd/examples/iothub-consumer.service; do
  if out=$(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1); then
    echo "ok: $(grep -o 'Overall exposure level for .*' <<<"$out")"
  else
    grep -o 'Overall exposure level for .*' <<<"$out" || echo "$out" | tail -5
    echo "FAIL: $unit: exposure above 2.0"
    fail=1
  fi
done
exit $fail
