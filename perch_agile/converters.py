"""URL path converters shared by the API and the pages."""


class IdConverter:
    """Database ids: at most 18 digits, so no path can overflow PostgreSQL's bigint."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
