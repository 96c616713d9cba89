#!/usr/bin/env bash
# Gates on the systemd units as the package installs them:
#  - systemd-analyze security --offline: dpsd.service exposure at most 1.5 (threshold 15);
#  - systemd-analyze verify --man=no on every unit, with nothing at all on stderr (verify exits 0
#    on unknown keys, so stderr is the real signal).
# verify also checks that ExecStart= binaries exist, so the build is installed into a staging
# tree, and that tree is laid over /usr in a private mount namespace (read-only overlayfs): the
# units are verified by name, in the unit directory, against the real binaries and the host's
# own units (sysinit.target, dbus.socket, ...), exactly as systemd would load them.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=$(realpath "${DPSD_TEST_BUILD_DIR:-build-test}")
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

units=(dpsd.service dps-provisioned.target dpsd-wait-provisioned.service)
fail=0

echo "--- systemd-analyze security (threshold 15 = exposure 1.5)"
for unit in dpsd.service; do
  if ! out=$(systemd-analyze security --offline=true --threshold=15 "systemd/$unit" 2>&1); then
    echo "$out"
    echo "FAIL: $unit exposure above 1.5"
    fail=1
  else
    echo "$out" | tail -n 1
  fi
done

echo "--- systemd-analyze verify --man=no (installed layout)"
stage=$(mktemp -d /tmp/dpsd-units.XXXXXX)
trap 'rm -rf "$stage"' EXIT
DESTDIR="$stage/root" cmake --install "$build" --prefix /usr >/dev/null
root="$stage/root"
# Debian 12 is merged-/usr: /lib is /usr/lib, so the unit directory goes below usr/ for the overlay.
unitdir=$(pkg-config --variable=systemdsystemunitdir systemd)
if [ "${unitdir#/usr/}" = "$unitdir" ]; then
  mkdir -p "$root/usr$unitdir"
  cp -a "$root$unitdir/." "$root/usr$unitdir/"
fi
for unit in "${units[@]}"; do
  [ -f "$root/usr${unitdir#/usr}/$unit" ] || { echo "FAIL: $unit is not installed"; fail=1; }
done
# The example consumer is not installed; verify it by path, with the packaged units visible.
cp systemd/examples/iothub-consumer.service "$stage/"
$sudo unshare --mount --propagation private -- sh -c '
  mount -t overlay overlay -o "lowerdir=$1/usr:/usr" /usr || exit 99
  shift
  exec systemd-analyze verify --man=no "$@"
' sh "$root" "${units[@]}" "$stage/iothub-consumer.service" >"$stage/verify.out" 2>"$stage/verify.err" \
  || echo "(verify exit status $?)" >>"$stage/verify.err"
if [ -s "$stage/verify.err" ]; then
  cat "$stage/verify.out" "$stage/verify.err"
  echo "FAIL: systemd-analyze verify printed the above"
  fail=1
else
  echo "verify: ${units[*]} iothub-consumer.service: no diagnostics"
fi
exit $fail
