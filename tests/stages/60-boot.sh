#!/usr/bin/env bash
# The boot test: the .deb installed into a minimal Debian 12 and booted with real systemd.
#  - debootstrap bookworm (minbase + systemd, dbus and dpsd's libraries) into a cached folder
#    ($DPSD_ROOTFS_CACHE, default /var/cache/dpsd-ci/bookworm-rootfs), made in a temp dir and
#    renamed, so a half-made cache is never used; each run works on a copy;
#  - dpkg -i the package (+ apt-get -f if dependencies are missing), a config drop-in and a key
#    (0640 root:dpsd, the group-readable layout) pointing at the DPS emulator on the host's
#    loopback (nspawn shares the host's network);
#  - boot 1: a oneshot checker unit inside writes results to a bound folder: dpsd.service active,
#    busctl State=provisioned (Source=dps) within a bounded time, the example consumer
#    (After=dps-provisioned.target) started after dpsd-wait-provisioned.service finished and saw
#    IOTHUB_HOSTNAME; then it powers the container off;
#  - in boot 1, under the running systemd: dpkg -i again restarts dpsd (new MainPID), which
#    serves the kept state from cache without rewriting it;
#  - dpkg -i again (the upgrade path): state, edited conffile, drop-in and key kept;
#  - boot 2, emulator stopped: provisioned from cache (Source=cache), consumer as above;
#  - boot 3, a DPS whose reply names the hub "evil$(id)x.example": dpsd refuses the reply
#    (LastError names assignedHub, no iothub.env with it) and the example consumer never runs
#    `id` (it passes the values as arguments, never through a shell);
#  - dpkg --purge removes every file the package installed, /etc/dpsd and /var/lib/dpsd.
# The container is always stopped by the nspawn PID, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=$(realpath "${DPSD_TEST_BUILD_DIR:-build-test}")
cache=${DPSD_ROOTFS_CACHE:-/var/cache/dpsd-ci/bookworm-rootfs}
boot_timeout=${DPSD_BOOT_TIMEOUT:-150}
sudo=""
[ "$(id -u)" -eq 0 ] || { echo "60-boot.sh needs root (debootstrap, systemd-nspawn)"; exit 1; }
need=()
for p in debootstrap systemd-container; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---- the package
deb=$(ls "$build"/dpsd_*.deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ]; then
  (cd "$build" && cpack -G DEB >/dev/null)
  deb=$(ls "$build"/dpsd_*.deb | head -n 1)
fi
echo "package: $deb"

# ---- the cached root file system
if [ ! -d "$cache" ]; then
  mkdir -p "$(dirname "$cache")"
  tmp=$(mktemp -d "$(dirname "$cache")/.rootfs-XXXXXX")
  # The host's configured Debian mirror (a proxy or a local mirror may be all that is reachable),
  # deb.debian.org only when the host names none.
  mirror=$(grep -hsE '^(deb |URIs:)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
             /etc/apt/sources.list.d/*.sources 2>/dev/null |
           grep -oE 'https?://[^ ]+' | grep -v -e security -e updates | head -n 1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "debootstrap bookworm from $mirror into $cache (about a minute)"
  if ! debootstrap --variant=minbase \
      --include=systemd,systemd-sysv,dbus,libmosquitto1,libsdbus-c++1,libtomlplusplus3,libssl3 \
      bookworm "$tmp/root" "$mirror" >"$tmp.log" 2>&1; then
    tail -n 20 "$tmp.log"; rm -rf "$tmp" "$tmp.log"; echo "FAIL: debootstrap"; exit 1
  fi
  mv "$tmp/root" "$cache" && rm -rf "$tmp" "$tmp.log"
fi

work=$(mktemp -d /var/tmp/dpsd-boot.XXXXXX)
root="$work/root"
results="$work/results"
emulator_pid=""
nspawn_pid=""
stop_container() {
  [ -n "$nspawn_pid" ] || return 0
  if kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid" 2>/dev/null || true   # nspawn asks the container's systemd to power off
    for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
  fi
  wait "$nspawn_pid" 2>/dev/null || true
  nspawn_pid=""
}
stop_emulator() {
  [ -n "$emulator_pid" ] || return 0
  kill "$emulator_pid" 2>/dev/null || true
  wait "$emulator_pid" 2>/dev/null || true
  emulator_pid=""
}
cleanup() {
  stop_container
  stop_emulator
  if [ -n "${DPSD_BOOT_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$results"
echo "copying the root file system"
cp -a --reflink=auto "$cache" "$root"

# debootstrap's minbase has no /etc/hosts; a gateway has one, and "localhost" needs it.
[ -s "$root/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

in_root() { systemd-nspawn -q --register=no --keep-unit -D "$root" --pipe "$@"; }

fail=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}

# ---- install, exactly as on a gateway
cp "$deb" "$root/root/dpsd.deb"
echo "--- dpkg -i dpsd.deb"
in_root sh -c 'dpkg -i /root/dpsd.deb || { apt-get update -qq && apt-get -f install -y -qq; }' \
  >"$results/install.log" 2>&1 || { cat "$results/install.log"; echo "FAIL: install"; exit 1; }
in_root dpkg-query -W -f='${Status}\n' dpsd 2>/dev/null | grep -q "install ok installed" \
  || { cat "$results/install.log"; echo "FAIL: dpsd is not installed"; exit 1; }
echo "ok: dpkg -i installed dpsd"
in_root dpkg -L dpsd 2>/dev/null | sort >"$results/dpkg-L.txt"
check "user dpsd created by systemd-sysusers" in_root getent passwd dpsd
check "/var/lib/dpsd 0750 dpsd:dpsd" test "$(in_root stat -c '%a %U:%G' /var/lib/dpsd)" = "750 dpsd:dpsd"
# Owned by root: the dpsd account must not be able to plant keys/device.key -> /etc/<root file>.
check "/etc/dpsd/keys 0750 root:dpsd" test "$(in_root stat -c '%a %U:%G' /etc/dpsd/keys)" = "750 root:dpsd"
check "dpsd.service enabled" test -L "$root/etc/systemd/system/multi-user.target.wants/dpsd.service"

# ---- the DPS emulator on the host's loopback
scope=0ne00BOOT01
regid=gateway-boot-0001
key=$(openssl rand -base64 32)
mkdir -p "$work/emulator"
"$build/tests/emulator/dps-emulator-run" --dir "$work/emulator" --scope "$scope" \
  --device "$regid=$key" --scenario "$regid={\"name\":\"normal\",\"polls\":1,\"retry_after\":1}" \
  >"$work/emulator.json" 2>"$work/emulator.err" &
emulator_pid=$!
for _ in $(seq 100); do [ -s "$work/emulator.json" ] && break; sleep 0.1; done
[ -s "$work/emulator.json" ] || { echo "FAIL: the DPS emulator did not start"; cat "$work/emulator.err"; exit 1; }
port=$(sed -E 's/.*"port":([0-9]+).*/\1/' "$work/emulator.json")
ca=$(sed -E 's/.*"ca":"([^"]+)".*/\1/' "$work/emulator.json")
echo "DPS emulator on localhost:$port"

# ---- configuration and key, as a vendor would drop them in
cp "$ca" "$root/etc/dpsd/dps-test-ca.pem"
chmod 644 "$root/etc/dpsd/dps-test-ca.pem"
mkdir -p "$root/etc/dpsd/config.d"
cat >"$root/etc/dpsd/config.d/10-device.toml" <<TOML
[provisioning]
global_endpoint = "localhost:$port"
id_scope = "$scope"
registration_id = "$regid"
[tls]
trust_bundle = "/etc/dpsd/dps-test-ca.pem"
TOML
# The documented install: install(1) replaces the destination, never writes through a symlink.
(umask 077 && printf '%s\n' "$key" >"$root/root/device.key")
in_root install -m 0640 -o root -g dpsd /root/device.key /etc/dpsd/keys/device.key
rm -f "$root/root/device.key"
check "key installed 0640 root:dpsd" \
  test "$(in_root stat -c '%a %U:%G' /etc/dpsd/keys/device.key)" = "640 root:dpsd"
check "dpsd --check-config as user dpsd" in_root setpriv --reuid=dpsd --regid=dpsd --init-groups dpsd --check-config

# ---- the example consumer and the checker
cp systemd/examples/iothub-consumer.service "$root/etc/systemd/system/"
ln -sf /etc/systemd/system/iothub-consumer.service "$root/etc/systemd/system/multi-user.target.wants/"
cat >"$root/usr/local/sbin/dpsd-boot-check" <<'SH'
#!/bin/sh
# Runs inside the booted container; writes KEY=VALUE lines to /results/boot-$BOOT.txt.
. /etc/dpsd-boot-check.conf
out=/results/boot-$BOOT.txt
: >"$out"
say() { echo "$1=$2" >>"$out"; }
prop() { busctl get-property io.dpsd.Provisioning1 /io/dpsd/Provisioning1 io.dpsd.Provisioning1 "$1" 2>/dev/null | sed -E 's/^s "(.*)"$/\1/'; }
if [ "$BOOT" = 3 ]; then
  # A hostile hub name: dpsd must refuse the reply; nothing may ever run `id`.
  err=""
  i=0
  while [ $i -lt 600 ]; do   # 60 s, bounded
    err=$(prop LastError)
    case "$err" in *assignedHub*) break ;; esac
    sleep 0.1; i=$((i + 1))
  done
  say LAST_ERROR_NAMES_HUB "$(case "$err" in *assignedHub*) echo 1 ;; *) echo 0 ;; esac)"
  say STATE "$(prop State)"
  say ENV_HAS_EVIL "$(if grep -qs evil /run/dpsd/iothub.env; then echo 1; else echo 0; fi)"
  sleep 2   # the consumer's own attempt (it is not ordered before this checker when the wait fails)
  say CONSUMER_RAN_ID "$(journalctl -b -u iothub-consumer.service -o cat | grep -c 'uid=')"
  {
    systemctl status --no-pager dpsd.service iothub-consumer.service
    journalctl -b --no-pager -u dpsd.service -u dpsd-wait-provisioned.service -u iothub-consumer.service
  } >/results/boot-$BOOT.journal 2>&1
  say DONE 1
  systemctl --no-block poweroff
  exit 0
fi
state=""
i=0
while [ $i -lt 600 ]; do   # 60 s, bounded
  state=$(busctl get-property io.dpsd.Provisioning1 /io/dpsd/Provisioning1 io.dpsd.Provisioning1 State 2>/dev/null | sed -E 's/^s "(.*)"$/\1/')
  [ "$state" = provisioned ] && break
  sleep 0.1; i=$((i + 1))
done
say STATE "$state"
say STATE_WAIT_DS "$i"
say SOURCE "$(busctl get-property io.dpsd.Provisioning1 /io/dpsd/Provisioning1 io.dpsd.Provisioning1 Source 2>/dev/null | sed -E 's/^s "(.*)"$/\1/')"
say HUB "$(busctl get-property io.dpsd.Provisioning1 /io/dpsd/Provisioning1 io.dpsd.Provisioning1 AssignedHub 2>/dev/null | sed -E 's/^s "(.*)"$/\1/')"
say DPSD_ACTIVE "$(systemctl is-active dpsd.service)"
pid=$(systemctl show -P MainPID dpsd.service)
say DPSD_USER "$(stat -c %U "/proc/$pid" 2>/dev/null)"
say WAIT_RESULT "$(systemctl show -P Result dpsd-wait-provisioned.service)"
say WAIT_EXIT_MONO "$(systemctl show -P ExecMainExitTimestampMonotonic dpsd-wait-provisioned.service)"
say CONSUMER_ACTIVE "$(systemctl is-active iothub-consumer.service)"
say CONSUMER_START_MONO "$(systemctl show -P ExecMainStartTimestampMonotonic iothub-consumer.service)"
say CONSUMER_SAW "$(journalctl -b -u iothub-consumer.service -o cat | sed -n 's/^IoT Hub \([^,]*\),.*/\1/p' | tail -n 1)"
say ENV_HOSTNAME "$(sed -n 's/^IOTHUB_HOSTNAME=//p' /run/dpsd/iothub.env 2>/dev/null)"
say TARGET_ACTIVE "$(systemctl is-active dps-provisioned.target)"
{
  systemctl status --no-pager dpsd.service dpsd-wait-provisioned.service iothub-consumer.service
  journalctl -b --no-pager -u dpsd.service -u dpsd-wait-provisioned.service -u iothub-consumer.service
  systemctl --failed --no-pager
} >/results/boot-$BOOT.journal 2>&1
if [ "$BOOT" = 1 ]; then
  # The upgrade path under a running systemd: postinst must restart dpsd (try-restart) and the
  # restarted daemon must serve the kept state without rewriting it.
  old_pid=$(systemctl show -P MainPID dpsd.service)
  sum_before=$(sha256sum /var/lib/dpsd/state.json | cut -d' ' -f1)
  DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold /root/dpsd.deb >/results/upgrade-live.log 2>&1
  say UPGRADE_DPKG "$?"
  restarted=0
  i=0
  while [ $i -lt 300 ]; do   # 30 s, bounded
    new_pid=$(systemctl show -P MainPID dpsd.service)
    if [ "$new_pid" != 0 ] && [ "$new_pid" != "$old_pid" ] && \
       busctl get-property io.dpsd.Provisioning1 /io/dpsd/Provisioning1 io.dpsd.Provisioning1 State 2>/dev/null | grep -q provisioned; then
      restarted=1; break
    fi
    sleep 0.1; i=$((i + 1))
  done
  say UPGRADE_RESTARTED "$restarted"
  say UPGRADE_SOURCE "$(busctl get-property io.dpsd.Provisioning1 /io/dpsd/Provisioning1 io.dpsd.Provisioning1 Source 2>/dev/null | sed -E 's/^s "(.*)"$/\1/')"
  sum_after=$(sha256sum /var/lib/dpsd/state.json | cut -d' ' -f1)
  say UPGRADE_STATE_SAME "$([ "$sum_before" = "$sum_after" ] && echo 1 || echo 0)"
fi
say DONE 1
systemctl --no-block poweroff
SH
chmod 755 "$root/usr/local/sbin/dpsd-boot-check"
cat >"$root/etc/systemd/system/dpsd-boot-check.service" <<'UNIT'
[Unit]
Description=dpsd boot test checker
Wants=dps-provisioned.target
After=dps-provisioned.target iothub-consumer.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/dpsd-boot-check
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/dpsd-boot-check.service "$root/etc/systemd/system/multi-user.target.wants/"

boot() {  # boot N: boots the container until the checker powers it off (bounded)
  local n=$1
  echo "BOOT=$n" >"$root/etc/dpsd-boot-check.conf"
  systemd-nspawn -q --register=no --keep-unit --boot -D "$root" --bind="$results:/results" \
    --console=passive >"$results/console-$n.log" 2>&1 &
  nspawn_pid=$!
  local start=$SECONDS
  while kill -0 "$nspawn_pid" 2>/dev/null && [ $((SECONDS - start)) -lt "$boot_timeout" ]; do
    grep -qs '^DONE=1' "$results/boot-$n.txt" && break
    sleep 0.5
  done
  for _ in $(seq 40); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done  # poweroff
  stop_container
  echo "boot $n: $((SECONDS - start)) s"
  [ -f "$results/boot-$n.txt" ] && sed 's/^/  /' "$results/boot-$n.txt"
}
value() { sed -n "s/^$2=//p" "$results/boot-$1.txt" 2>/dev/null; }
after() { [ -n "$1" ] && [ -n "$2" ] && [ "$1" -gt 0 ] && [ "$2" -ge "$1" ]; }

assert_boot() {  # assert_boot N SOURCE
  local n=$1 source=$2 hub
  hub=$(value "$n" HUB)
  check "boot $n: checker ran" test "$(value "$n" DONE)" = 1
  check "boot $n: dpsd.service active" test "$(value "$n" DPSD_ACTIVE)" = active
  check "boot $n: dpsd runs as user dpsd" test "$(value "$n" DPSD_USER)" = dpsd
  check "boot $n: busctl State=provisioned" test "$(value "$n" STATE)" = provisioned
  check "boot $n: Source=$source" test "$(value "$n" SOURCE)" = "$source"
  check "boot $n: /run/dpsd/iothub.env names the hub" test -n "$hub" -a "$(value "$n" ENV_HOSTNAME)" = "$hub"
  check "boot $n: dpsd-wait-provisioned.service succeeded" test "$(value "$n" WAIT_RESULT)" = success
  check "boot $n: dps-provisioned.target active" test "$(value "$n" TARGET_ACTIVE)" = active
  check "boot $n: consumer started after the wait finished" \
    after "$(value "$n" WAIT_EXIT_MONO)" "$(value "$n" CONSUMER_START_MONO)"
  check "boot $n: consumer saw IOTHUB_HOSTNAME=$hub" test -n "$hub" -a "$(value "$n" CONSUMER_SAW)" = "$hub"
}

echo "--- boot 1: DPS emulator up"
boot 1
assert_boot 1 dps
check "upgrade under systemd: dpkg -i of the package succeeded" test "$(value 1 UPGRADE_DPKG)" = 0
check "upgrade under systemd: postinst restarted dpsd (new MainPID, provisioned)" test "$(value 1 UPGRADE_RESTARTED)" = 1
check "upgrade under systemd: restarted dpsd serves the kept state (Source=cache)" test "$(value 1 UPGRADE_SOURCE)" = cache
check "upgrade under systemd: state.json untouched by the upgrade" test "$(value 1 UPGRADE_STATE_SAME)" = 1

echo "--- reinstall over the provisioned system (the upgrade path): state and edited conffile kept"
echo "# edited by the operator" >>"$root/etc/dpsd/config.toml"
sum_before=$(sha256sum <"$root/etc/dpsd/config.toml")
in_root sh -c 'DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold /root/dpsd.deb' >"$results/upgrade.log" 2>&1 \
  || { cat "$results/upgrade.log"; fail=1; }
rm -f "$root/root/dpsd.deb"
check "upgrade: state.json kept" test -s "$root/var/lib/dpsd/state.json"
check "upgrade: edited config.toml kept" test "$(sha256sum <"$root/etc/dpsd/config.toml")" = "$sum_before"
check "upgrade: drop-in and key kept" test -s "$root/etc/dpsd/config.d/10-device.toml" -a -s "$root/etc/dpsd/keys/device.key"

echo "--- boot 2: DPS emulator stopped, served from cache"
stop_emulator
boot 2
assert_boot 2 cache

echo "--- boot 3: DPS answers with a hostile hub name"
hostile_regid=gateway-hostile-0001
mkdir -p "$work/emulator3"
# Single quotes: "$(id)" is the attack, not something for this script's shell.
"$build/tests/emulator/dps-emulator-run" --dir "$work/emulator3" --scope "$scope" \
  --device "$hostile_regid=$key" \
  --scenario "$hostile_regid="'{"name":"immediate","patch":{"registrationState":{"assignedHub":"evil$(id)x.example"}}}' \
  >"$work/emulator3.json" 2>"$work/emulator3.err" &
emulator_pid=$!
for _ in $(seq 100); do [ -s "$work/emulator3.json" ] && break; sleep 0.1; done
[ -s "$work/emulator3.json" ] || { echo "FAIL: the hostile DPS emulator did not start"; cat "$work/emulator3.err"; exit 1; }
port3=$(sed -E 's/.*"port":([0-9]+).*/\1/' "$work/emulator3.json")
cp "$(sed -E 's/.*"ca":"([^"]+)".*/\1/' "$work/emulator3.json")" "$root/etc/dpsd/dps-test-ca.pem"
sed -i -e "s/^global_endpoint = .*/global_endpoint = \"localhost:$port3\"/" \
  -e "s/^registration_id = .*/registration_id = \"$hostile_regid\"/" "$root/etc/dpsd/config.d/10-device.toml"
rm -f "$root/var/lib/dpsd/state.json"
# dpsctl wait would hold the checker for its full 120 s: dpsd never provisions in this boot.
mkdir -p "$root/etc/systemd/system/dpsd-wait-provisioned.service.d"
printf '[Service]\nExecStart=\nExecStart=/usr/bin/dpsctl wait --timeout 15\n' \
  >"$root/etc/systemd/system/dpsd-wait-provisioned.service.d/boot3.conf"
boot 3
stop_emulator
rm -rf "$root/etc/systemd/system/dpsd-wait-provisioned.service.d"
check "boot 3: checker ran" test "$(value 3 DONE)" = 1
check "boot 3: dpsd refused the reply (LastError names assignedHub)" test "$(value 3 LAST_ERROR_NAMES_HUB)" = 1
check "boot 3: not provisioned" test "$(value 3 STATE)" != provisioned
check "boot 3: iothub.env never held the hostile hub" test "$(value 3 ENV_HAS_EVIL)" = 0
check "boot 3: nothing ran id (no uid= in the consumer's journal)" test "$(value 3 CONSUMER_RAN_ID)" = 0

echo "--- dpkg --purge dpsd"
in_root dpkg --purge dpsd >"$results/purge.log" 2>&1 || { cat "$results/purge.log"; fail=1; }
left=()
while read -r path; do
  [ -n "$path" ] || continue
  [ -e "$root$path" ] || continue
  [ -d "$root$path" ] && [ -n "$(ls -A "$root$path")" ] && continue   # shared directories stay
  [ -d "$root$path" ] && case "$path" in /|/etc|/lib*|/usr*|/var*) continue ;; esac
  left+=("$path")
done <"$results/dpkg-L.txt"
check "purge: no file the package installed is left" test ${#left[@]} -eq 0
[ ${#left[@]} -eq 0 ] || printf '  left: %s\n' "${left[@]}"
check "purge: /etc/dpsd gone" test ! -e "$root/etc/dpsd"
check "purge: /var/lib/dpsd gone" test ! -e "$root/var/lib/dpsd"
check "purge: no enablement symlink left" test ! -e "$root/etc/systemd/system/multi-user.target.wants/dpsd.service"
check "purge: dpkg forgot the package" bash -c '! systemd-nspawn -q --register=no --keep-unit -D "$1" --pipe dpkg-query -W dpsd >/dev/null 2>&1' _ "$root"

if [ $fail -ne 0 ]; then
  for f in "$results"/boot-*.journal; do [ -f "$f" ] && { echo "=== $f"; tail -n 60 "$f"; }; done
fi
exit $fail
