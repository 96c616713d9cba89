#!/usr/bin/env bash
# Fuzzing stage: builds the libFuzzer targets in tests/fuzz/ with clang, ASan and UBSan (dpsd_core
# instrumented too), replays every saved regression input in tests/fuzz/regressions/<target>/,
# then fuzzes each target for FUZZ_SECONDS (default 26: eight targets, about the 3.5 min the
# stage took with seven at 30 s) from its seed corpus
# tests/fuzz/corpus/<target>/ (new inputs go to a temp dir; the committed corpus is not touched).
# Prints executions and coverage per target and in total. A crash fails the stage; its input is
# copied to tests/fuzz/regressions/<target>/ so it replays from then on once committed.
# Usage: tests/stages/70-fuzz.sh   (scripts/test runs it)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-26}
build=${DPSD_FUZZ_BUILD_DIR:-build-fuzz}

if ! command -v clang++-14 >/dev/null || ! dpkg -s libclang-rt-14-dev >/dev/null 2>&1; then
  echo "installing clang-14 and libclang-rt-14-dev"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    clang-14 libclang-rt-14-dev >/dev/null
fi

CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDPSD_FUZZ=ON -DDPSD_BUILD_TESTS=OFF \
  "-DCMAKE_C_FLAGS=-fsanitize=address,undefined -fsanitize=fuzzer-no-link" \
  "-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined -fsanitize=fuzzer-no-link" >/dev/null
# One target per tests/fuzz/fuzz_*.cpp (the WebSocket ones appear once their sources exist).
mapfile -t targets < <(cd tests/fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//')
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
work=$(mktemp -d /tmp/dpsd-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=()
total_execs=0
printf '%-24s %12s %8s %8s %s\n' target executions cov ft result
for t in "${targets[@]}"; do
  exe="$build/tests/fuzz/$t"
  mkdir -p "$work/$t/new" "$work/$t/artifacts"
  # 1. Every saved regression input, as a plain input (no fuzzing).
  regressions=(tests/fuzz/regressions/"$t"/*)
  if [ -e "${regressions[0]}" ]; then
    if ! "$exe" "${regressions[@]}" >"$work/$t/regressions.log" 2>&1; then
      echo "$t: a regression input crashes again:"; tail -40 "$work/$t/regressions.log"
      failed+=("$t(regression)")
      continue
    fi
  fi
  # 2. Fuzz for a bounded time from the seed corpus. The targets whose input has a size cap in
  # dpsd (payload_file 64 KiB, config files 1 MiB, DPS messages 128 KiB) get inputs beyond the
  # payload and message caps, so the caps and the depth bounds are what stops them, not
  # libFuzzer's default max_len (4096 at most from these small seeds). -len_control=0 lets
  # long inputs appear from the start instead of after a ramp longer than this stage runs.
  max_len=()
  case "$t" in
    fuzz_payload | fuzz_config | fuzz_dps_messages) max_len=(-max_len=200000 -len_control=0) ;;
  esac
  rc=0
  "$exe" "${max_len[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/$t/artifacts/" "$work/$t/new" "tests/fuzz/corpus/$t" \
    >"$work/$t/fuzz.log" 2>&1 || rc=$?
  execs=$(sed -nE 's/^stat::number_of_executed_units: ([0-9]+)/\1/p' "$work/$t/fuzz.log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$work/$t/fuzz.log" | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  total_execs=$(( total_execs + ${execs:-0} ))
  if [ "$rc" -ne 0 ]; then
    printf '%-24s %12s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "CRASH (exit $rc)"
    grep -E 'ERROR|SUMMARY|#[0-9]+ 0x.* in ' "$work/$t/fuzz.log" | head -25
    mkdir -p "tests/fuzz/regressions/$t"
    for a in "$work/$t/artifacts"/*; do
      [ -e "$a" ] || continue
      cp "$a" "tests/fuzz/regressions/$t/"
      echo "crash input saved as tests/fuzz/regressions/$t/$(basename "$a"):"
      echo "  reproduce: $exe tests/fuzz/regressions/$t/$(basename "$a")"
      echo "  fix the bug, then commit the input: it replays first in every later run"
    done
    failed+=("$t")
  else
    printf '%-24s %12s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "ok (${seconds} s)"
  fi
done
echo "total executions: $total_execs across ${#targets[@]} targets, ASan+UBSan"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}"
  exit 1
fi
