"""Templates: GoTrue's mail types, rendered from Go template syntax into Messages.

* ``_gotemplate``: Go template text translated into Jinja2 source.
* ``_htmlcontext``: the HTML context tracking Go's ``html/template`` escapes by.
* ``_compile``: compiling and rendering the translation in a Jinja2 sandbox.
* ``_defaults``: GoTrue's mail types and their default subjects and bodies.
* ``_source``: where a custom template is loaded from (URL or file).
* ``_cache``: the template cache and its background reloader.
* ``_mailer``: the template mailer, which renders a mail type into a Message.

Private: the public names are re-exported by :mod:`apitask.mail`.
"""
