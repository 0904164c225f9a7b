# Sourced by cluster.sh: the test cluster's local conda channels (issue 17).
#
# A site without network serves conda packages from its own filesystem.  Here that is
# $STATE/conda/channels/{conda-forge,cstools}: a handful of real conda packages made on this
# machine by conda_channel.py (the cluster's own Python as a `python` package, pip, two small
# libraries one of which depends on the other, a command-line tool), indexed into repodata.json,
# world-readable.  Tests point a resource's `conda: {channel_alias: ...}` at CS_TEST_CONDA_CHANNELS.
#
# The builder runs in a venv of its own ($STATE/conda/tools, py-rattler for the indexer), made
# once; the channels are rebuilt only when conda_channel.py or the Python changes.
#
# Relies on cluster.sh's helpers (say, die) and settings (STATE, LOGS).

CONDA_DIR=$STATE/conda
CONDA_CHANNELS=$CONDA_DIR/channels
CONDA_TOOLS=$CONDA_DIR/tools
CONDA_RATTLER=0.28.0   # the same py-rattler the resources get (cybershuttle/compute/condaenv.py)

ensure_conda_channel() {
    install -d -m 0755 "$CONDA_DIR"
    if [[ ! -e $CONDA_TOOLS/.ready-$CONDA_RATTLER ]]; then
        say "conda: making the channel builder's venv ($CONDA_TOOLS, py-rattler $CONDA_RATTLER)"
        rm -rf -- "$CONDA_TOOLS"
        { /usr/bin/python3 -m venv "$CONDA_TOOLS" &&
          "$CONDA_TOOLS/bin/python" -m pip install -q --disable-pip-version-check --root-user-action=ignore \
              "py-rattler==$CONDA_RATTLER"; } 9>&- >>"$LOGS/conda.log" 2>&1 ||
            die "installing py-rattler for the conda channel failed (see $LOGS/conda.log)"
        touch -- "$CONDA_TOOLS/.ready-$CONDA_RATTLER"
    fi
    "$CONDA_TOOLS/bin/python" "$(dirname -- "${BASH_SOURCE[0]}")/conda_channel.py" "$CONDA_CHANNELS" 9>&- \
        2>>"$LOGS/conda.log" || die "building the local conda channels failed (see $LOGS/conda.log)"
}

conda_env() {
    printf 'export %s=%q\n' CS_TEST_CONDA_CHANNELS "file://$CONDA_CHANNELS"
}
