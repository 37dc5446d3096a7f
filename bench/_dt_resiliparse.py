"""A datatrove extractor backed by resiliparse (the extractor assay uses), so that the
pipeline benchmark can compare pipelines with the same extractor. Importable by name,
because datatrove's worker processes unpickle it."""

from datatrove.pipeline.extractors.base import BaseExtractor


class ResiliparseExtractor(BaseExtractor):
    name = "resiliparse"

    def __init__(self, timeout: float = 1.0):
        super().__init__(timeout)

    def extract(self, text: str) -> str:
        from resiliparse.extract.html2text import extract_plain_text

        return extract_plain_text(text, main_content=True)
