#!/usr/bin/env bash
# A real JupyterLab for the browser tests: its own CYBERSHUTTLE_HOME, notebook folder, settings and
# workspaces (nothing of the user's is touched), the loopback test cluster's settings, and 10,000
# datasets in the catalog for the timing of the sidebar. Playwright starts it and stops it (SIGTERM).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${CS_VENV:-$root/.venv}"
work="$(mktemp -d /tmp/cs-ui-tests.XXXXXX)"
export PATH="$venv/bin:$PATH"
export CYBERSHUTTLE_HOME="$work/home"
export JUPYTERLAB_SETTINGS_DIR="$work/lab-settings" JUPYTERLAB_WORKSPACES_DIR="$work/lab-workspaces"
export JUPYTER_RUNTIME_DIR="$work/runtime" IPYTHONDIR="$work/ipython"
mkdir -p "$work/notebooks" "$work/lab-settings/@jupyterlab/apputils-extension"
# No "get news?" toast over the screenshots.
echo '{"fetchNews": "false"}' > "$work/lab-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
eval "$(bash "$root/tests/cluster/cluster.sh" env)"

stop_runtimes() {
  # A runtime the test could not stop (it failed half way) must not keep a Slurm job.
  "$venv/bin/python" - <<'PY' || true
from cybershuttle import runtime
for rt in runtime.list_all():
    if rt.state in runtime.LIVE_STATES:
        runtime.stop(rt.name)
PY
}
cleanup() {
  [ -n "${lab:-}" ] && kill "$lab" 2>/dev/null && wait "$lab" 2>/dev/null
  stop_runtimes
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' TERM INT

CS_ROOT="$root" "$venv/bin/python" - "${CS_UI_DATASETS:-10000}" <<'PY'
import os, sys, time
from cybershuttle import compute, dataset, storage
start = time.perf_counter()
for i in range(int(sys.argv[1])):
    dataset.register(f"ds-{i:05d}", f"https://data.example.org/samples/{i:05d}.csv",
                     description=f"sample table {i}")
compute.register_local()
storage.register("samples", os.path.join(os.environ["CS_ROOT"], "binder", "samples"), read_only=True)
# A template to run from the sidebar: a notebook with a `parameters` cell and its input spec.
import nbformat
from cybershuttle import template
folder = os.path.join(os.environ["CYBERSHUTTLE_HOME"], "..", "template")
os.makedirs(folder)
nb = nbformat.v4.new_notebook()
params = nbformat.v4.new_code_cell("side = 2")
params.metadata["tags"] = ["parameters"]
area = nbformat.v4.new_code_cell("area = side * side\narea")
area.metadata["tags"] = ["output"]
nb.cells = [params, area]
nbformat.write(nb, os.path.join(folder, "square.ipynb"))
with open(os.path.join(folder, "square.toml"), "w") as spec:
    spec.write('[[parameters]]\nname = "side"\ntype = "int"\ndefault = 2\nmin = 1\nmax = 100\nhelp = "length of a side"\n')
template.add("square", notebook=os.path.join(folder, "square.ipynb"), spec=os.path.join(folder, "square.toml"))
print(f"seeded {sys.argv[1]} datasets in {time.perf_counter() - start:.1f} s", flush=True)
PY

"$venv/bin/jupyter" lab --no-browser --allow-root --ip 127.0.0.1 --port "${CS_UI_PORT:?}" \
  --IdentityProvider.token="${CS_UI_TOKEN:?}" --ServerApp.root_dir="$work/notebooks" \
  --LabApp.expose_app_in_browser=True --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate &
lab=$!
wait "$lab"
