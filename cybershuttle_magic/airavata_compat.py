"""Lets notebooks written for Airavata's magic run unchanged on Cybershuttle.

Those notebooks start with `import airavata_jupyter_magic`. Where Airavata's
own package is installed, that import finds it as usual. Where it is absent,
the finder below (appended *last* to `sys.meta_path` by the
`cybershuttle-airavata-compat.pth` file the package installs) answers
instead with a module that registers the Cybershuttle magics, which accept
the same forms (`%request_runtime NAME --file=... --use=R:P`, ...).

Kept free of heavy imports: the .pth runs it at every interpreter start. The
.pth loads this file by its path, without importing the `cybershuttle_magic`
package: that import must happen in the notebook, where it registers the magics.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import ModuleType

MODULE = "airavata_jupyter_magic"


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):  # default module creation
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__doc__ = "Cybershuttle's stand-in for airavata_jupyter_magic: the same magics, served locally."
        module.SERVED_BY = "cybershuttle"
        import cybershuttle_magic  # registers the magics in a running IPython

        module.load_ipython_extension = cybershuttle_magic.load_ipython_extension


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != MODULE:
            return None
        return importlib.util.spec_from_loader(name, _Loader(), origin="cybershuttle (compatibility)")


def install() -> None:
    """Append the finder once; being last, a real Airavata package always wins."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
