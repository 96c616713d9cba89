#!/usr/bin/env bash
# Memory and undefined-behaviour checks:
#  1. a separate build with AddressSanitizer + UndefinedBehaviorSanitizer (every finding fatal)
#     runs the whole ctest suite (unit, adapter and integration tests; the integration tests run
#     the sanitized dpsd binary against the emulator);
#  2. valgrind memcheck runs the regular build's dpsd --once against the DPS emulator: a fresh
#     registration (TLS, MQTT, a poll) and then a run served from the cached state. Any error or
#     definite leak fails.
# valgrind does not run the whole integration suite: ctest's per-test timeouts and the tests'
# timing assertions (backoff, SIGTERM within a second) do not hold at valgrind's 20-50x slowdown,
# and the sanitizer build already covers those paths.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=$(realpath "${DPSD_TEST_BUILD_DIR:-build-test}")
asan=${DPSD_ASAN_BUILD_DIR:-build-asan}
if ! command -v valgrind >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
fail=0

echo "--- ASan + UBSan build ($asan) and the whole ctest suite"
cmake -S . -B "$asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DDPSD_WERROR=ON \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
  -DCMAKE_C_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$asan" -j "$(nproc)"
# verify_asan_link_order=0: the emulator plugin is built sanitized too and is dlopen()ed by the
# distribution's (uninstrumented) mosquitto, which would otherwise refuse to start.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:verify_asan_link_order=0"
# fast_unwind_on_malloc=0: full allocation stacks, so the suppressions (third-party leaks only,
# each explained in the file) match by function name.
export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
export LSAN_OPTIONS="suppressions=$PWD/tests/stages/lsan-suppressions.txt"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
if ctest --test-dir "$asan" --output-on-failure -j "$(nproc)" --timeout 600; then
  echo "ok: sanitizer suite clean"
else
  echo "FAIL: sanitizer suite"
  fail=1
fi
unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS

echo "--- valgrind memcheck: dpsd --once against the DPS emulator"
work=$(mktemp -d /tmp/dpsd-valgrind.XXXXXX)
emulator_pid=""
cleanup() {
  if [ -n "$emulator_pid" ]; then kill "$emulator_pid" 2>/dev/null || true; wait "$emulator_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
scope=0ne00VALGRN
regid=valgrind-0001
key=$(openssl rand -base64 32)
mkdir -p "$work/emulator" "$work/etc/keys" "$work/state" "$work/run"
"$build/tests/emulator/dps-emulator-run" --dir "$work/emulator" --scope "$scope" \
  --device "$regid=$key" --scenario "$regid={\"name\":\"normal\",\"polls\":1,\"retry_after\":1}" \
  >"$work/emulator.json" 2>"$work/emulator.err" &
emulator_pid=$!
for _ in $(seq 100); do [ -s "$work/emulator.json" ] && break; sleep 0.1; done
[ -s "$work/emulator.json" ] || { echo "FAIL: the DPS emulator did not start"; cat "$work/emulator.err"; exit 1; }
port=$(sed -E 's/.*"port":([0-9]+).*/\1/' "$work/emulator.json")
ca=$(sed -E 's/.*"ca":"([^"]+)".*/\1/' "$work/emulator.json")
printf '%s\n' "$key" >"$work/etc/keys/device.key"
chmod 600 "$work/etc/keys/device.key"
cat >"$work/etc/config.toml" <<TOML
[provisioning]
global_endpoint = "localhost:$port"
id_scope = "$scope"
registration_id = "$regid"
[provisioning.attestation]
symmetric_key = "file://$work/etc/keys/device.key"
[tls]
trust_bundle = "$ca"
[paths]
state_dir = "$work/state"
runtime_dir = "$work/run"
TOML
for run in register cached; do
  if timeout 300 valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
       --show-leak-kinds=definite --track-origins=yes \
       "$build/daemon/dpsd" --once --timeout 120 --config "$work/etc/config.toml" \
       >"$work/valgrind-$run.out" 2>&1; then
    echo "ok: valgrind clean ($run): $(tail -n 1 "$work/valgrind-$run.out")"
  else
    cat "$work/valgrind-$run.out"
    echo "FAIL: valgrind ($run)"
    fail=1
  fi
done
grep -q '"status": *"assigned"' "$work/state/state.json" || { echo "FAIL: no assigned state after valgrind run"; fail=1; }
exit $fail
