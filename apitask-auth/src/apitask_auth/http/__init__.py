"""The edge every request crosses before and after its handler.

Middleware (request size and head limits, refused text, CORS, the access log,
the common response deadline of :mod:`.timing`), per-IP and e-mail rate
limits, the per-request dependencies (:mod:`.deps`: the caller, the audience),
the request bodies (:mod:`.models`), the redirect and URL rules, and the
uvicorn protocol ``serve`` runs (:mod:`.server`).
"""
