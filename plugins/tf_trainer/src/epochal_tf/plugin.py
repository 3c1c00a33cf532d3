"""Entry point of `epochal-tf` in the group `epochal`.

No hooks yet: the package is discovered and listed by `epochal plugins`; its
issue adds the registrations (lazily, as `"module:attr"` strings, so that
listing plugins never imports the framework).
"""
