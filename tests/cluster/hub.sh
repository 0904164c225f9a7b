# Sourced by cluster.sh: what the JupyterHub tests (deploy/jupyterhub/) need of the test cluster.
#
# The hub logs people in through PAM, so the two test users get real passwords: random, made
# once, kept root-only (0600 files in a 0700 directory) and handed to chpasswd on its standard
# input, never on a command line.  The browser test reads them from there to type them into the
# hub's login page.  sshd is unaffected: it allows keys only.
#
# Relies on cluster.sh's helpers (say) and settings (STATE, TEST_USER, OTHER_USER).

HUB_PASSWORDS=$STATE/hub-passwords

ensure_hub_passwords() {
    local user file hash
    install -d -m 0700 -o root -g root "$HUB_PASSWORDS"
    for user in "$TEST_USER" "$OTHER_USER"; do
        file=$HUB_PASSWORDS/$user
        hash=$(getent shadow "$user" | cut -d: -f2)
        if [[ ! -s $file ]]; then
            (umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$file")
        elif [[ -n $hash && $hash != '*'* && $hash != '!'* ]]; then
            continue  # set before, from this file
        fi
        chmod 0600 "$file"
        printf '%s:%s\n' "$user" "$(<"$file")" | chpasswd ||
            die "could not set the hub password of $user (chpasswd failed)"
        say "hub: password of $user set (kept in $file)"
    done
}

hub_env() {
    printf 'export %s=%q\n' CS_TEST_HUB_PASSWORDS "$HUB_PASSWORDS"
}
