"""JupyterHub for a site shared by many people, with Cybershuttle in every user's server.

Read by `jupyterhub -f` (start.sh runs it so; see README.md). Everything a site may change comes
from the environment start.sh exports, so this file stays the same from site to site:

  CS_HUB_ENV       the shared install (a venv made from a system python, readable by every user)
                   with `cybershuttle[hub]`: the hub and every user's server run from it
  CS_HUB_STATE     the hub's own state (database, cookie secret, pid files), root-only
  CS_HUB_PORT      the public port on 127.0.0.1 (a site puts its TLS front end before it)
  CS_HUB_API_PORT, CS_HUB_PROXY_API_PORT   the hub's and the proxy's internal ports
  CS_HUB_PROXY     the configurable-http-proxy command
  CS_HUB_USERS / CS_HUB_GROUPS   who may log in (comma-separated OS users / groups)
  CYBERSHUTTLE_SITE_CATALOG      the site catalog every user's server shares (PostgreSQL)
"""
import os

c = get_config()  # noqa: F821 - provided by JupyterHub when it reads this file

env = os.environ
state = env["CS_HUB_STATE"]
site_bin = os.path.join(env["CS_HUB_ENV"], "bin")

# -- where it listens: loopback only ---------------------------------------------------------------
c.JupyterHub.bind_url = f"http://127.0.0.1:{env.get('CS_HUB_PORT', '8000')}/"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{env.get('CS_HUB_API_PORT', '8081')}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env.get('CS_HUB_PROXY_API_PORT', '8001')}"
c.ConfigurableHTTPProxy.command = [env.get("CS_HUB_PROXY", "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = os.path.join(state, "proxy.pid")
# The hub starts the proxy and stops it (and every user's server) when it stops.
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

# -- its own state: root-only files ----------------------------------------------------------------
c.JupyterHub.db_url = "sqlite:///" + os.path.join(state, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(state, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(state, "jupyterhub.pid")

# -- who logs in: the machine's own accounts, through PAM --------------------------------------------
c.JupyterHub.authenticator_class = "pam"
users = {u.strip() for u in env.get("CS_HUB_USERS", "").split(",") if u.strip()}
groups = {g.strip() for g in env.get("CS_HUB_GROUPS", "").split(",") if g.strip()}
c.Authenticator.allowed_users = users
c.PAMAuthenticator.allowed_groups = groups
# root's server would run as root: never, whatever the lists say.
c.Authenticator.blocked_users = {"root"}
c.Authenticator.admin_users = {u.strip() for u in env.get("CS_HUB_ADMINS", "").split(",") if u.strip()}

# -- each user's server: that OS user, the shared install, Cybershuttle on ---------------------------
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [os.path.join(site_bin, "jupyterhub-singleuser")]
# The server extension and the sidebar, whatever a user's own Jupyter config says.
c.Spawner.args = ["--ServerApp.jpserver_extensions=cybershuttle_server=True",
                  "--LabApp.news_url=None",
                  "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
# Nothing of root's environment (its PATH, venv, PYTHONPATH) reaches a user's server.
c.Spawner.env_keep = ["LANG", "LC_ALL"]
c.Spawner.environment = {
    "PATH": f"{site_bin}:/usr/local/bin:/usr/bin:/bin",
    "CYBERSHUTTLE_SITE_CATALOG": env.get("CYBERSHUTTLE_SITE_CATALOG", "postgresql:///cybershuttle"),
}
# A first start on a busy login node imports JupyterLab from a shared filesystem: allow it time.
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 60
