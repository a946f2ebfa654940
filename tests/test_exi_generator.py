"""The committed grammar tables are exactly what the generator makes from the project's schemas/."""

import importlib
import os

import pytest

pytest.importorskip("xmlschema")

from evpilot_host import exigen  # noqa: E402

from vectors import SCHEMAS  # noqa: E402

TABLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "firmware", "evpilot", "exi")


@pytest.fixture(scope="module")
def generated():
    return exigen.generate(SCHEMAS)


def test_no_drift(generated):
    assert sorted(generated) == ["apphand", "din", "iso2", "xmldsig"]
    for name, src in generated.items():
        with open(os.path.join(TABLES, "tables_%s.py" % name), encoding="utf-8") as f:
            assert f.read() == src, "tables_%s.py differs from the XSDs: run python -m evpilot_host.exigen" % name


def test_default_schemas_are_the_projects():
    assert os.path.samefile(exigen.default_schemas_dir(), SCHEMAS)
    assert os.path.isfile(os.path.join(SCHEMAS, exigen.SCHEMA_SETS["iso2"]))


def test_deterministic(generated):
    assert exigen.generate(SCHEMAS, ["iso2"])["iso2"] == generated["iso2"]


def test_check_mode_reports_drift(tmp_path, generated):
    out = tmp_path / "tables"
    out.mkdir()
    for name, src in generated.items():
        (out / ("tables_%s.py" % name)).write_text(src, encoding="utf-8")
    assert exigen.main(["--schemas", SCHEMAS, "--out", str(out), "--check"]) == 0
    (out / "tables_din.py").write_text(generated["din"].replace("'V2G_Message'", "'V2G_Massage'"), encoding="utf-8")
    assert exigen.main(["--schemas", SCHEMAS, "--out", str(out), "--check"]) == 1


def test_known_grammar_figures():
    # Event-code facts every deployed codec agrees on (../shared/reference/exi.md).
    iso2 = importlib.import_module("evpilot.exi.tables_iso2")
    din = importlib.import_module("evpilot.exi.tables_din")
    xmldsig = importlib.import_module("evpilot.exi.tables_xmldsig")

    def name_at(t, entries, code):
        return t.NAMES[t.ELEMS[entries[code]] & 1023]

    assert name_at(iso2, iso2.DOC, 76) == "V2G_Message" and len(iso2.DOC).bit_length() == 7
    assert name_at(din, din.DOC, 77) == "V2G_Message"
    assert len(iso2.FRAG) + 1 == 244  # End Fragment code
    assert [name_at(iso2, iso2.FRAG, c) for c in (4, 15, 17, 121, 174, 236)] == [
        "AuthorizationReq", "CertificateInstallationReq", "CertificateUpdateReq", "MeteringReceiptReq",
        "SalesTariff", "eMAID"]
    assert name_at(xmldsig, xmldsig.FRAG, 32) == "SignedInfo" and len(xmldsig.FRAG) + 1 == 46
