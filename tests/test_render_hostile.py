"""Any token text, through the whole render path: the HTML stays well-formed and runs no script.

Hypothesis generates token strings (control characters, markup, quotes, entities, any script); they replace
the synthetic work dir's vocabulary and its graph tokens, the site is rendered, and every page fragment is
parsed: tags must nest and close, only the tags our templates write may appear (so no <script>), and no
attribute may be an event handler.
"""

from html.parser import HTMLParser
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from n2g_site.config import Config
from n2g_site.render import render_site
from n2g_site.store import read_json, write_json
from render_fixtures import VOCAB, make_workdir

VOID = {
    "br",
    "hr",
    "img",
    "input",
    "meta",
    "link",
    "col",
    "wbr",
    "circle",
    "rect",
    "path",
    "line",
    "ellipse",
    "polygon",
    "polyline",
    "stop",
}
ALLOWED = {
    "div",
    "p",
    "span",
    "i",
    "b",  # an example's cut mark: <b>…</b>
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "code",
    "strong",
    "em",
    "small",
    "h2",
    "h3",
    "ul",
    "ol",
    "li",
    "svg",
    "g",
    "title",
    "desc",
    "text",
    "details",
    "summary",
    "sub",
    "sup",
    "input",
    "label",
    "button",
    "figure",
    "figcaption",
    "br",
    "caption",
    "colgroup",
    "col",
    "nav",
    "abbr",
    "defs",
    "marker",
    "tspan",
    "object",
} | VOID


class Checker(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in ALLOWED:
            self.errors.append(f"unexpected <{tag}>")
        for name, _ in attrs:
            if name.lower().startswith("on"):
                self.errors.append(f"event handler {name} on <{tag}>")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        if tag not in ALLOWED:
            self.errors.append(f"unexpected <{tag}/>")

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


tokens = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12) | st.sampled_from(
    [
        "<script>alert(1)</script>",
        "</div>",
        "<svg onload=alert(1)>",
        "&amp;",
        "&lt;",
        '"',
        "'",
        "\\",
        "\\N",
        "{{ x }}",
        "{% if %}",
        "]]>",
        "<!--",
        "-->",
        "\r\n",
        "\u202e",
        "\x00",
    ]
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vocab=st.lists(tokens, min_size=len(VOCAB), max_size=len(VOCAB)))
def test_any_token_text_renders_as_text(tmp_path_factory, vocab):
    work = make_workdir(Path(tmp_path_factory.mktemp("w")))
    write_json(work.vocab, vocab)
    for path in (work.root / "fit").rglob("N*.json"):  # graph labels come from the fit files
        fit = read_json(path)
        for i, node in enumerate(fit["graph"]["nodes"]):
            if node["key"] is not None:
                node["token"] = vocab[i % len(vocab)]
        write_json(path, fit)
    render_site(Config(), work, jobs=1)
    import re

    from n2g_site.publish.pages import rendered_pages
    from n2g_site.render.svg import _FILE_STYLE, standalone_svg

    files = [(url, body) for url, body, _ in rendered_pages(work.fragments)]
    files += [
        (url + name, text)
        for url, _, extra in rendered_pages(work.fragments)
        for name, text in extra.items()
        if name.endswith(".svg")
    ]
    # Each inline graph as the file it becomes when its page is too large (pages.PAGE_BODY_BUDGET).
    files += [
        (url + "graph.svg", standalone_svg(m.group(0)))
        for url, body in list(files)
        for m in re.finditer(r'<svg class="n2g-graph".*?</svg>', body, re.S)
    ]
    assert any(name.endswith(".svg") for name, _ in files)
    for name, text in files:  # pages, and the graphs too large to inline (graph.svg, its constant <style> aside)
        checker = Checker()
        checker.feed(text.replace(_FILE_STYLE, ""))
        checker.close()
        assert not checker.errors, (name, checker.errors[:3])
        assert not checker.stack, (name, "unclosed", checker.stack)


def test_the_checker_catches_what_it_must():
    for bad in ("<div><script>alert(1)</script></div>", "<div><span></div>", '<svg onload="x"></svg>', "<p>"):
        checker = Checker()
        checker.feed(bad)
        checker.close()
        assert checker.errors or checker.stack, bad
