"""Emitters: each turns a build context into files (relative path -> bytes), rendered through the
Jinja templates in ``templates/``. Writing them to disk is the build's job."""
