"""The database: tables, migrations, and the drivers under SQLAlchemy.

:mod:`.db` holds the tables and the migration runner, :mod:`.rows` the typed
rows read from them (one ``TypedDict`` a table), :mod:`.schema_v1` the
frozen first migration, :mod:`.database_url` how ``DATABASE_URL`` is read,
:mod:`.sqlite_driver` and :mod:`.pg_connect` the connection details of each
backend.
"""
