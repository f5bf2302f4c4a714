"""``nastk dashboard``: a local, read-only web view of run, study and supernet folders, read
live from their stores while searches write to them. Needs the ``dashboard`` extra
(``pip install -e ".[dashboard]"``: starlette, uvicorn, bokeh); nothing here is imported by
the engine."""
