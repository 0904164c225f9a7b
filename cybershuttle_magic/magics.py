"""The notebook magics. Each parses its line and calls the core; no logic lives here."""
from __future__ import annotations

from IPython.core.magic import Magics, line_magic, magics_class


@magics_class
class CybershuttleMagics(Magics):
    @line_magic
    def cybershuttle(self, line: str = "") -> None:
        """Show the active Cybershuttle profile and catalogs: `%cybershuttle`."""
        from cybershuttle import __version__, profile

        prof = profile.active()
        print(f"cybershuttle {__version__}: user {prof.user}, profile {prof.root}, site catalog {prof.site_catalog}")
