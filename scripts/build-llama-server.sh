#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (the OpenAI-compatible inference server the endpoint
# judge is tested against) from the llama.cpp that the `llama-cpp-python` sdist on PyPI
# vendors, pinned by version and sha256, CPU only, into a cache outside the clone.
# Prints the binary's path. A second run finds the cached binary and builds nothing.
#
#   scripts/build-llama-server.sh            -> ~/.cache/rlfc/llama-server/<version>/llama-server
#
# The build is portable, not -march=native: this machine kind reports AMX but dies on
# it ("Illegal instruction"), so AVX2/FMA/F16C are on and every AMX and AVX-512 path off.
set -euo pipefail
version="0.3.36"
sha256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
root="${RLFC_LLAMA_SERVER_CACHE:-$HOME/.cache/rlfc/llama-server}/$version"
bin="$root/llama-server"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$root"
work="$(mktemp -d "$root/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
command -v cmake >/dev/null || python3 -m pip install --quiet cmake >&2
# The sdist's URL from PyPI's JSON API (the file name is fixed by the version).
python3 - "$version" "$sha256" "$work/sdist.tar.gz" >&2 <<'EOF'
import hashlib, json, sys, urllib.parse, urllib.request
version, want, out = sys.argv[1:]
api = "https://pypi.org/pypi/llama-cpp-python/json"
meta = json.load(urllib.request.urlopen(api))
files = meta.get("releases", {}).get(version) or meta["urls"]
sdist = next(u for u in files if u["packagetype"] == "sdist" and version in u["filename"])
url = urllib.parse.urljoin(api, sdist["url"])
urllib.request.urlretrieve(url, out)
got = hashlib.sha256(open(out, "rb").read()).hexdigest()
if got != want:
    sys.exit(f"llama-cpp-python {version} sdist: sha256 {got}, expected {want}")
print(f"fetched {sdist['filename']} (sha256 verified)")
EOF
tar -xzf "$work/sdist.tar.gz" -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF \
  -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DGGML_OPENMP=OFF >&2
cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
cp "$work/build/bin/llama-server" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$bin"
