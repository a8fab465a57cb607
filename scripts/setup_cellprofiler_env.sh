#!/usr/bin/env bash
# Build .venv-cp: a real CellProfiler (cellprofiler-core 4.2.8.1 on numpy 1.26) with cellseg-hcs
# installed beside it, for the plugin tests (tests/test_cellprofiler_plugin.py).
#
# CellProfiler 4.2.8 pins packages that have no wheels for Python 3.11 (scikit-image 0.18,
# scipy 1.9, wxPython), so its two packages go in with --no-deps and their run-time needs are
# installed here by hand, within numpy<2. python-javabridge is built from source against
# numpy 1.26 and the installed JDK. A stamp file records what was built: a second run with
# nothing changed returns in a second.
#
# Usage: scripts/setup_cellprofiler_env.sh [VENV]     (default: .venv-cp in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-.venv-cp}
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac  # absolute: pip reads files under it
PYTHON=${PYTHON:-python3.11}
STAMP="$VENV/.cellseg-hcs-env"

CP_VERSION=4.2.8.1
JAVABRIDGE_VERSION=4.0.5
BIOFORMATS_VERSION=4.1.0
PROKARYOTE_VERSION=2.4.4

# What the environment is made of: this script and the package's own requirements.
want="$(cat "$0" pyproject.toml | sha256sum | cut -c1-16) $($PYTHON -V 2>&1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && "$VENV/bin/python" -c "import cellprofiler_core.preferences, javabridge, cellseg_hcs" \
      2>/dev/null; then
  echo "CellProfiler environment $VENV is up to date."
  exit 0
fi

if ! command -v javac >/dev/null; then
  echo "No JDK found (javac): install openjdk-17-jdk-headless to build python-javabridge." >&2
  exit 1
fi
export JAVA_HOME=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}

echo "Building the CellProfiler environment in $VENV (JAVA_HOME=$JAVA_HOME)..."
rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { nice -n 10 "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

# Versions every install below must keep: numpy 1 for CellProfiler, the local CPU torch.
constraints="$VENV/constraints.txt"
cat >"$constraints" <<EOF
numpy<2
pyarrow<26
setuptools<81
torch==2.13.0
EOF
build_constraints="$VENV/build-constraints.txt"
echo "numpy==1.26.4" >"$build_constraints"
export PIP_CONSTRAINT="$constraints"
export PIP_BUILD_CONSTRAINT="$build_constraints"

pip install --quiet --upgrade "pip>=25.3"
pip install --quiet "numpy==1.26.4" "setuptools<81" wheel

# python-javabridge: compiled here, against numpy 1.26 (the build constraint) and JDK 17.
pip install --quiet --no-binary python-javabridge "python-javabridge==$JAVABRIDGE_VERSION"

# CellProfiler itself, without its pins; then what it imports at run time.
pip install --quiet --no-deps "cellprofiler-core==$CP_VERSION" "cellprofiler==$CP_VERSION" \
  "python-bioformats==$BIOFORMATS_VERSION" "prokaryote==$PROKARYOTE_VERSION"
pip install --quiet "centrosome>=1.3" "scikit-image<0.25" scipy "h5py>=3.7" "matplotlib<3.9" \
  psutil pyzmq "docutils" boto3 imageio "inflect<7" jinja2 joblib mahotas pillow requests \
  scikit-learn six tifffile deprecation "sentry-sdk<2" future

# cellseg-hcs (editable) with its dependencies, within the same constraints; torch is the
# local CPU wheel, installed first so no other build is resolved.
pip install --quiet "torch==2.13.0"
pip install --quiet -e ".[cellprofiler]" pytest

# The check imports what a headless run imports (cellprofiler_core.preferences pulls in h5py,
# future and the measurement code), not just the top-level packages.
"$VENV/bin/python" - <<'EOF'
import cellprofiler_core, cellprofiler_core.preferences, cellprofiler.modules, javabridge
import numpy, cellseg_hcs
print(f"cellprofiler-core {cellprofiler_core.__version__}, numpy {numpy.__version__}, "
      f"cellseg-hcs {cellseg_hcs.__version__}")
EOF
echo "$want" >"$STAMP"
echo "CellProfiler environment ready: $VENV"
