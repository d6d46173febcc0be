"""Plain-text and Markdown tables of the benchmark scripts."""


def render(head, body, right, markdown=False):
    """Lines of a table with column titles ``head`` and rows ``body`` (lists of strings);
    ``right``: indices of the right-aligned (numeric) columns."""
    if markdown:
        def esc(c):
            return c.replace("|", "\\|")
        return (["| " + " | ".join(map(esc, head)) + " |",
                 "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
                + ["| " + " | ".join(map(esc, b)) + " |" for b in body])
    width = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, width)))
    return [line(head), "  ".join("-" * w for w in width)] + [line(b) for b in body]
