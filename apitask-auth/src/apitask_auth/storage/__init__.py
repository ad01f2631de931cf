"""The database: tables, migrations, and the drivers under SQLAlchemy.

:mod:`.tables` holds the live table definitions, :mod:`.rows` the typed rows
read from them (one ``TypedDict`` a table), :mod:`.migrations` the numbered
steps that bring a database to them (:mod:`.schema_v1` is the frozen first
one), :mod:`.db` the engine for either backend, :mod:`.database_url` how
``DATABASE_URL`` is read, :mod:`.sqlite_driver` and :mod:`.pg_connect` the
connection details of each backend.
"""
