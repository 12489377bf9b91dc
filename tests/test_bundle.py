"""The offline bundle's zip: one folder named like the site, every file, the same bytes twice."""

from __future__ import annotations

import zipfile

from n2g_site.publish.bundle import zip_site


def test_zip_holds_the_site_under_its_name_and_is_deterministic(tmp_path, monkeypatch) -> None:
    site = tmp_path / "site"
    (site / "neurons" / "L0" / "N1").mkdir(parents=True)
    (site / "index.html").write_text("<p>home</p>")
    (site / "neurons" / "L0" / "N1" / "index.html").write_text("<p>neuron</p>")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = zip_site(site).read_bytes()
    (site / "index.html").touch()  # a newer mtime must not change the archive
    archive = zip_site(site)
    assert archive == tmp_path / "site.zip" and archive.read_bytes() == first
    with zipfile.ZipFile(archive) as z:
        assert z.namelist() == ["site/index.html", "site/neurons/L0/N1/index.html"]
        assert z.read("site/neurons/L0/N1/index.html") == b"<p>neuron</p>"
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert not list(tmp_path.glob(".site.zip.*"))  # no temporary file left behind
