"""The browser app through Starlette's test client, on tiny run folders and a tiny model."""

import re

import pytest
from serve_runs import make_runs

from greyglass.runs import write_config, write_results

@pytest.fixture(scope="module")
def client(tiny_llama, tmp_path_factory):
    from starlette.testclient import TestClient

    from greyglass.serve.app import create_app

    root = make_runs(tmp_path_factory.mktemp("runs"), tiny_llama)
    client = TestClient(create_app(root, load=lambda spec: tiny_llama))
    client.runs_root = root
    return client


def ok(client, url, **params):
    r = client.get(url, params=params)
    assert r.status_code == 200, (url, r.status_code, r.text[:500])
    assert "<style>" in r.text and "http://" not in r.text and "https://" not in r.text  # nothing fetched from outside
    return r.text


def refused(client, url, status, words, **params):
    r = client.get(url, params=params)
    assert r.status_code == status, (url, r.status_code, r.text[:300])
    assert "Traceback" not in r.text and words in r.text
    return r.text


def latent_with_label(client):
    page = ok(client, "/features/sae/s1/features/index.html")
    return int(re.search(r'latent_(\d+)\.html', page).group(1))


def test_run_list_shows_every_run_with_its_report_headline(client):
    from markupsafe import escape

    from greyglass.report.build import section_for

    page = ok(client, "/")
    for rid in ("capture/c1", "eval/e1", "sae/s1/features"):
        assert f'href="/run/{rid}"' in page
    for rid in ("capture/c1", "sae/s1/features"):  # what the report says of the run, not numbers picked from its files
        assert str(escape(section_for(client.runs_root / rid).headline)) in page
    assert "1,234 tokens" in page and "accuracy 0.75" not in page
    assert "so nothing is claimed from it" in page  # e1's hand-made results.json does not fit an eval's Results


def test_a_run_an_older_greyglass_wrote_says_how_to_refresh_it(tmp_path, tiny_llama):
    from serve_runs import write_old_sweep
    from starlette.testclient import TestClient

    from greyglass.serve.app import create_app

    write_old_sweep(tmp_path / "probe_sweep" / "old")
    client = TestClient(create_app(tmp_path, load=lambda spec: tiny_llama))
    said = "written by greyglass 0.1.0 (older results layout); re-run `greyglass probe sweep --data cities` to refresh it"
    for url in ("/", "/run/probe_sweep/old"):
        page = ok(client, url)
        assert said in page and "could not be read" not in page and "the field" not in page


def test_run_page_has_the_report_section_and_raw_results(client):
    page = ok(client, "/run/capture/c1")
    assert "What we recorded inside the model" in page and "1,234 tokens" in page  # the report's capture section
    assert "&#34;n_tokens&#34;: 1234" in page
    assert 'href="/features/sae/s1/features/index.html"' in ok(client, "/run/sae/s1/features")
    assert 'href="/eval/eval/e1"' in ok(client, "/run/eval/e1")


def test_unknown_runs_and_path_traversal_are_404(client):
    refused(client, "/run/nope", 404, "no run")
    refused(client, "/run/../../etc/passwd", 404, "")
    refused(client, "/run/%2e%2e/%2e%2e/etc", 404, "no run")
    refused(client, "/features/capture/c1/index.html", 404, "no feature database")
    refused(client, "/eval/capture/c1", 404, "no items.jsonl")
    refused(client, "/no/such/page", 404, "That did not work")
    assert client.post("/").status_code == 405


def test_eval_table_pages_and_items(client):
    page = ok(client, "/eval/eval/e1")
    assert "60 items" in page and "Is 0 even?" in page and "Is 49 even?" in page and "Is 50 even?" not in page
    assert "&lt;script&gt;" in page and "<script>" not in page  # item text is escaped
    assert "Is 50 even?" in ok(client, "/eval/eval/e1", page=2)
    item = ok(client, "/item/eval/e1/7")
    assert "Is 7 even?" in item and "q7" in item and 'href="/item/eval/e1/8"' in item
    refused(client, "/item/eval/e1/60", 404, "items 0 to 59")
    refused(client, "/eval/eval/e1", 400, "page must be between 1 and 2", page=3)
    refused(client, "/eval/eval/e1", 400, "page must be a whole number", page="x")
    wrong = ok(client, "/eval/eval/e1", field="correct", value="false")
    assert "15 of 60 items" in wrong and 'href="/item/eval/e1/3"' in wrong and 'href="/item/eval/e1/4"' not in wrong
    refused(client, "/eval/eval/e1", 400, "no item has a field", field="nope", value="x")


def test_broken_items_file_is_a_4xx_naming_the_line(tmp_path, tiny_llama):
    from starlette.testclient import TestClient

    from greyglass.serve.app import create_app

    ev = tmp_path / "eval" / "bad"
    write_config(ev, "eval")
    write_results(ev, {"accuracy": 0.5})
    (ev / "items.jsonl").write_text('{"a": 1}\n{not json\n')
    client = TestClient(create_app(tmp_path, load=lambda spec: tiny_llama))
    refused(client, "/eval/eval/bad", 400, "line 2")


def test_feature_list_search_and_dashboards(client):
    assert 'href="/features/sae/s1/features/index.html"' in ok(client, "/features")
    j = latent_with_label(client)
    dash = ok(client, f"/features/sae/s1/features/latent_{j}.html")
    assert f"Latent {j}" in dash and "Top activations" in dash and 'href="/steer"' in dash
    from greyglass.latents.db import FeatureDB

    db = FeatureDB(client.runs_root / "sae" / "s1" / "features")
    word = db.latent(j)["top"][0]["tokens"][db.latent(j)["top"][0]["centre_index"]][0]
    fires = ok(client, "/features/sae/s1/features/index.html", fires_on=word)
    assert f"latent_{j}.html" in fires and "Latents firing on" in fires
    label_word = re.findall(r"\w+", db.latent(j)["label"])[0]
    found = ok(client, "/features/sae/s1/features/index.html", q=f'"{label_word}"')
    assert "Latents matching" in found and re.search(r"latent_\d+\.html", found)
    on_text = ok(client, "/features/sae/s1/features/index.html", text="the quick brown fox")
    assert "Latents most active on the text" in on_text and re.search(r"latent_\d+\.html", on_text.split("Latents most active on the text")[1])


def test_feature_errors(client):
    refused(client, "/features/sae/s1/features/latent_32.html", 404, "latents 0 to 31")
    refused(client, "/features/sae/s1/features/latent_x.html", 404, "")
    refused(client, "/features/sae/s1/features/latent_-1.html", 404, "")
    refused(client, "/features/sae/s1/features/index.html", 400, "not valid full-text syntax", q='"unbalanced')
    refused(client, "/features/sae/s1/features/index.html", 413, "the limit is 200", fires_on="a" * 201)
    refused(client, "/features/sae/s1/features/index.html", 400, "limit must be between", limit=10_000)


def test_text_page_shows_latents_and_probes_per_token(client):
    page = ok(client, "/text", text="hello world", features="sae/s1/features")
    assert page.count('class="tok"') == 2 * len("hello world")  # byte tokens: one row of latents, one per probe
    assert "probe/p1/direction" in page and "logistic at blocks.1.hook_resid_post" in page
    assert "skipped probe/other_model" in page and "d_model 7" in page
    refused(client, "/text", 413, "the limit is 2,000", text="x" * 2001)
    refused(client, "/text", 404, "no run", text="hi", features="../x")
    refused(client, "/text", 400, "empty", text="   ")


def test_steering_changes_the_generation(client):
    page = ok(client, "/steer", prompt="hello", vector="direction:probe/p1/direction", coef=200, max_tokens=8)
    base = re.search(r'id="baseline">(.*?)</span>', page, re.S).group(1)
    steered = re.search(r'id="steered">(.*?)</span>', page, re.S).group(1)
    assert base != steered
    page = ok(client, "/steer", prompt="hello", vector="features:sae/s1/features", latent=3, coef=50, max_tokens=8)
    assert 'id="steered"' in page and "latent 3 at blocks.1.hook_resid_post" in page
    page = ok(client, "/steer", prompt="hello", vector="features:sae/s1/features", latent=3, coef=50, mode="clamp", max_tokens=8)
    assert "so that the latent reads 50" in page
    assert "<select" in ok(client, "/steer")


def test_steering_errors(client):
    refused(client, "/steer", 400, "max_tokens must be between 1 and 64", prompt="hi", vector="direction:probe/p1/direction",
            max_tokens=10_000)
    refused(client, "/steer", 400, "coef must be a finite number", prompt="hi", coef="nan")
    refused(client, "/steer", 400, "coef must be a number", prompt="hi", coef="lots")
    refused(client, "/steer", 404, "no saved direction", prompt="hi", vector="direction:../../etc")
    refused(client, "/steer", 400, "latent must be between 0 and 31", prompt="hi", vector="features:sae/s1/features", latent=99)
    refused(client, "/steer", 400, "latent must be a whole number", prompt="hi", vector="features:sae/s1/features", latent="")
    refused(client, "/steer", 400, "choose a vector", prompt="hi", vector="bogus")
    refused(client, "/steer", 400, "mode must be add or clamp", prompt="hi", mode="multiply")
    refused(client, "/steer", 400, "direction at blocks.1.hook_resid_post has d_model 7", prompt="hi",
            vector="direction:probe/other_model")


def test_cli_refuses_a_missing_runs_folder(tmp_path, capsys):
    from greyglass.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and len(err.strip().splitlines()) == 1


def test_runs_appear_after_the_rescan_interval(tmp_path, tiny_llama):
    from starlette.testclient import TestClient

    from greyglass.serve.app import create_app
    from greyglass.serve.catalog import Catalog

    catalog = Catalog(tmp_path, ttl=0.0)
    assert catalog.runs() == []
    write_config(tmp_path / "eval" / "late", "eval")
    write_results(tmp_path / "eval" / "late", {"accuracy": 0.5})
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{")  # a run still being written is not listed
    (tmp_path / "half" / "results.json").write_text("{}")
    assert [r.id for r in catalog.runs()] == ["eval/late"]
    assert "eval/late" in TestClient(create_app(tmp_path, load=lambda spec: tiny_llama)).get("/").text


def test_host_check_refuses_other_host_names(tmp_path, tiny_llama):
    from starlette.testclient import TestClient

    from greyglass.serve.app import create_app

    app = create_app(tmp_path, load=lambda spec: tiny_llama, hosts=["127.0.0.1", "localhost"])
    assert TestClient(app, base_url="http://127.0.0.1:8765").get("/").status_code == 200
    assert TestClient(app, base_url="http://rebound.example").get("/").status_code == 400


def test_generation_stops_at_the_time_bound(tiny_llama):
    from greyglass.models.generate import reply

    lm = tiny_llama
    unbounded = lm.tokenizer(reply(lm, "hello", 40), add_special_tokens=False).input_ids
    bounded = lm.tokenizer(reply(lm, "hello", 40, max_time=0.0), add_special_tokens=False).input_ids
    assert len(bounded) <= 4 < len(unbounded)  # one new token (up to 4 UTF-8 bytes) instead of 40
