"""The JSON parser of every role: DRF's, plus a clear 400 for JSON nested too deeply to decode.

Python's decoder recurses once per level, so `[[[[...]]]]` 100 000 deep raises RecursionError, which DRF's
parser (it catches ValueError only) would let through as a 500.
"""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
