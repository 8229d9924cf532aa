"""Plain-text and markdown tables for the results every step prints at the end."""


MISSING = "—"  # a number that is not there: None (null in strict JSON) or NaN


def _fmt(value):
    if value is None or (isinstance(value, float) and value != value):
        return MISSING
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def format_table(rows, headers=None) -> str:
    """Rows (lists or dicts) as an aligned text table."""
    if rows and isinstance(rows[0], dict):
        headers = headers or list(rows[0])
        rows = [[row.get(h, "") for h in headers] for row in rows]
    cells = [[_fmt(c) for c in row] for row in rows]
    headers = [str(h) for h in headers] if headers else None
    widths = [max(len(x) for x in column) for column in zip(*(([headers] if headers else []) + cells))]
    lines = []
    if headers:
        lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def markdown_table(rows, headers=None) -> str:
    if rows and isinstance(rows[0], dict):
        headers = headers or list(rows[0])
        rows = [[row.get(h, "") for h in headers] for row in rows]
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
