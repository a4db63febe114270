"""
Tests for content negotiation between the HTML and JSON forms.
"""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tailmirror.web._negotiate import HTML_V1, JSON_V1, TEXT_HTML, contentType, negotiate

from ..harness import PIP_ACCEPT, UV_ACCEPT


class NegotiateTests(SynchronousTestCase):
    """
    Tests for L{negotiate}.
    """

    def test_clients(self) -> None:
        """
        pip and uv, which prefer JSON, get JSON.
        """
        self.assertEqual(negotiate(PIP_ACCEPT), ("json", JSON_V1))
        self.assertEqual(negotiate(UV_ACCEPT), ("json", JSON_V1))

    def test_noAccept(self) -> None:
        """
        No C{Accept}, or an empty one, means HTML named as text/html.
        """
        self.assertEqual(negotiate(None), ("html", TEXT_HTML))
        self.assertEqual(negotiate("  "), ("html", TEXT_HTML))

    def test_namesWhatWasAsked(self) -> None:
        """
        The response names the exact media type asked for; the C{latest}
        aliases name v1.
        """
        self.assertEqual(negotiate("text/html"), ("html", TEXT_HTML))
        self.assertEqual(negotiate(HTML_V1), ("html", HTML_V1))
        self.assertEqual(negotiate("application/vnd.pypi.simple.latest+html"), ("html", HTML_V1))
        self.assertEqual(negotiate("application/vnd.pypi.simple.latest+json"), ("json", JSON_V1))
        self.assertEqual(negotiate("Application/Vnd.PyPI.Simple.V1+JSON"), ("json", JSON_V1))

    def test_qValues(self) -> None:
        """
        Quality values decide; q=0 refuses a type; wildcards take HTML.
        """
        self.assertEqual(negotiate(f"{JSON_V1};q=0.5, text/html;q=0.9"), ("html", TEXT_HTML))
        self.assertEqual(negotiate(f"{JSON_V1};q=0.9, text/html;q=0.5"), ("json", JSON_V1))
        self.assertEqual(negotiate("text/html;q=0, */*;q=0.1"), ("html", HTML_V1))
        self.assertEqual(negotiate("*/*"), ("html", TEXT_HTML))

    def test_unsupported(self) -> None:
        """
        Only unsupported types: L{None} (406).
        """
        self.assertIsNone(negotiate("application/xml"))
        self.assertIsNone(negotiate("application/vnd.pypi.simple.v2+json"))
        self.assertIsNone(negotiate(f"{JSON_V1};q=0"))

    def test_formatOverrides(self) -> None:
        """
        C{?format=} overrides C{Accept}; an unknown format is refused.
        """
        self.assertEqual(negotiate("text/html", JSON_V1), ("json", JSON_V1))
        self.assertEqual(negotiate(JSON_V1, "text/html"), ("html", TEXT_HTML))
        self.assertIsNone(negotiate(JSON_V1, "application/xml"))

    def test_contentType(self) -> None:
        """
        HTML names its charset; JSON is named bare, as uv compares it.
        """
        self.assertEqual(contentType(JSON_V1), JSON_V1)
        self.assertEqual(contentType(TEXT_HTML), "text/html; charset=utf-8")

    @settings(deadline=None, max_examples=300)
    @given(st.text(max_size=80))
    def test_anyHeader(self, accept: str) -> None:
        """
        Any header at all gives a supported answer or L{None}, never an error.
        """
        result = negotiate(accept)
        self.assertIn(result, [None, ("html", TEXT_HTML), ("html", HTML_V1), ("json", JSON_V1)])
