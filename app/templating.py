"""Templates that fail loudly in tests.

A variable a template prints but nobody passed (a typo, a renamed key) renders as an empty
string by default, and the page silently loses a figure or a link. Under test it raises
instead. Testing whether an optional variable was given (``{% if alert %}``) stays allowed:
that is how the templates say « shown only when there is one ».
"""

from __future__ import annotations

from jinja2 import Undefined


class LoudUndefined(Undefined):
    """Falsy and empty when tested or looped over; an error when printed or called."""

    __slots__ = ()
    __str__ = Undefined._fail_with_undefined_error
    __call__ = Undefined._fail_with_undefined_error
