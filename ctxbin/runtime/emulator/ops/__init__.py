"""One module per kernel (or per family of identical kernels); importing this
package imports them all, which registers them."""

import importlib
import pkgutil

__all__: list[str] = []

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
