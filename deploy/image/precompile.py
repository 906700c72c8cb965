"""Writes bytecode for the modules the image's roles import, and only those.

pip compiles every module of every package; most are never imported (other SQL dialects,
pygments' hundreds of lexers). Importing each module of the gateway, plus what uvicorn and
SQLAlchemy load by name at run time, leaves `.pyc` files for exactly what starts fast.
"""

import importlib
import pkgutil

import stox_gateway

LOADED_BY_NAME = (
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.websockets.websockets_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvicorn.protocols.websockets.wsproto_impl",
    "uvicorn.lifespan.on",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "alembic.runtime.migration",
    "alembic.ddl.postgresql",
    "alembic.ddl.sqlite",
)

for module in pkgutil.walk_packages(stox_gateway.__path__, "stox_gateway."):
    if not module.name.endswith("__main__"):  # that one runs the CLI
        importlib.import_module(module.name)
for name in LOADED_BY_NAME:
    try:
        importlib.import_module(name)
    except ImportError:
        pass  # an optional implementation that is not installed (wsproto)
