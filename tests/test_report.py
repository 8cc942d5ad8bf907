"""The HTML report: the answer first, every plot embedded, nothing fetched from elsewhere; two
runs compared with their differences flagged; the page opened in headless Chromium."""
import re
import shutil

import pandas as pd
import pytest

from harness.analysis import pagecheck
from test_old_runs import FIXTURES, cli


@pytest.fixture
def plotted_run(tmp_path):
    """The old run fixture (a real emulated run of scenarios/ci.yaml), its plots drawn."""
    run_dir = tmp_path / "ci" / "20261130T214751Z_321fbe86"
    shutil.copytree(FIXTURES / "old_run_v1", run_dir)
    out = cli("plot", run_dir)
    assert out.returncode == 0, out.stderr
    return run_dir


def test_the_report_answers_first_and_holds_everything_it_shows(plotted_run):
    out = cli("report", plotted_run)
    assert out.returncode == 0, out.stderr
    page = plotted_run / "report.html"
    assert out.stdout.strip() == str(page)
    text = page.read_text()
    heads = re.findall(r"<h2>([^<]+)</h2>", text)
    assert heads[:3] == ["The answer", "Warnings", "Results"] and "Provenance" in heads
    for link, cloud_s, vs in (("3g", "4.4", "-79%"), ("wifi", "2.2", "-38%")):
        assert (f"<b>{link}</b> (vgg16, split conv7): fastest method that keeps raw data on the "
                f"device is <b>hierarchical</b>") in text
        assert (f"cloud-only uploads every raw input to the cloud</b>: {cloud_s} ± n/a s ({vs} "
                f"against hierarchical)") in text
    assert "short-budget accuracy 0.112 (one seed, not converged)" in text
    pngs = sorted(p.name for p in (plotted_run / "plots").glob("*.png"))
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', text)) == len(pngs) >= 6
    outside = re.findall(r'(?:src|href)="(?!data:)[^"]*"|url\(|<script|<link ', text)
    assert outside == []
    assert "321fbe86" in text                                    # provenance: the commit


def test_two_runs_compared_flag_only_what_lies_beyond_their_cis(plotted_run, tmp_path):
    """The fixture's runs are too short for a runtime CI; each is given one of 2%, and run B
    has wifi/split 50% slower: that difference alone lies beyond the CIs."""
    runs = {}
    for name, factor in (("20261201T000000Z_a", 1.0), ("20261201T000000Z_b", 1.5)):
        run = runs[name] = tmp_path / "ci" / name
        shutil.copytree(plotted_run, run)
        summary = pd.read_csv(run / "summary.csv")
        slower = (summary["link"] == "wifi") & (summary["method"] == "split")
        summary.loc[slower, "est_full_wall_s"] *= factor
        summary["est_full_wall_ci_s"] = 0.02 * summary["est_full_wall_s"]
        summary.to_csv(run / "summary.csv", index=False)
        for case in run.glob("0*"):                 # summary.csv alone: not rebuilt from cases
            shutil.rmtree(case)
    out = cli("report", *runs.values(), "--out", tmp_path / "cmp.html")
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "cmp.html").read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", text)
    flagged = [r for r in rows if "<td>YES</td>" in r]
    assert len(flagged) == 1 and "wifi" in flagged[0] and "split" in flagged[0], flagged
    assert "+50.0%" in flagged[0]
    assert "1 difference(s) larger than their CIs" in text


def test_a_missing_run_is_one_line(tmp_path):
    out = cli("report", tmp_path / "nope")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "not found" in out.stderr


def test_the_report_renders_whole_in_headless_chromium(plotted_run, tmp_path):
    """Non-blank, every image loaded, no console error, no request leaving the file."""
    browser = pagecheck.find_browser()
    if browser is None:
        pytest.skip("no Chromium (scripts/bootstrap.sh installs chromium-headless-shell as root)")
    assert cli("report", plotted_run).returncode == 0
    shot = tmp_path / "report.png"
    got = pagecheck.check_page(plotted_run / "report.html", browser, shot)
    pngs = len(list((plotted_run / "plots").glob("*.png")))
    assert got["images"] == pngs and got["broken"] == 0, got
    assert got["errors"] == [] and got["outside_requests"] == [], got
    assert got["text"] > 500 and got["screenshot_spread"] > 0.02, got
    assert got["screenshot_px"][1] > 2000 and shot.stat().st_size > 50_000


def test_the_answer_ranks_only_methods_that_keep_raw_data_and_states_converged_accuracy():
    """Cloud-only is fastest here, yet the answer names edge-only (the fastest of the methods
    that keep raw data on the device) and shows cloud-only only as the reference; converged
    accuracy and hierarchical's paired gap come from the study columns when present."""
    from harness.analysis.answer import answer
    rows = [{"arch": "vgg16", "link": "3g", "method": m, "split": "conv7", "status": "ok",
             "est_full_wall_s": t, "est_full_wall_ci_s": 0.5, "final_acc": 0.7}
            for m, t in (("hierarchical", 30.0), ("split", 60.0), ("cloud", 5.0), ("edge", 20.0))]
    rows[0].update(conv_final_acc=0.915, conv_final_acc_ci=0.004, conv_seeds=3,
                   conv_gap=-0.006, conv_gap_ci=0.003)
    rows[3].update(conv_final_acc=0.921, conv_final_acc_ci=0.002, conv_seeds=3)
    text = answer(pd.DataFrame(rows))[0]
    assert "keeps raw data on the device is <b>edge</b>, 20.0 ± 0.5 s" in text
    assert "converged accuracy 0.921 ± 0.002 across 3 seeds" in text
    assert "cloud-only uploads every raw input to the cloud</b>: 5.0 ± 0.5 s (-75% against edge)" in text
    rows[3]["est_full_wall_s"] = 40.0
    text = answer(pd.DataFrame(rows))[0]
    assert "is <b>hierarchical</b>, 30.0 ± 0.5 s, converged accuracy 0.915 ± 0.004 across 3 " \
           "seeds, -0.60 ± 0.30 points against end-to-end training (paired by seed)" in text


def test_each_warning_appears_when_its_cause_is_present_and_not_otherwise(tmp_path):
    """Partial run, failed case, link calibration out of tolerance, compute calibration out of
    tolerance, a model miss beyond 10%, a gain across cluster nodes, estimated runtimes: each
    cause added alone gives its warning; a clean run gives none."""
    import json

    from harness.analysis.report import warnings
    from harness.analysis.summary import build_summary
    from test_compare import fake_run
    run = fake_run(tmp_path / "clean", reps=1)
    summary = build_summary(run, "quick")
    summary["predicted_err"] = 0.02
    summary["extrapolated"] = False
    assert warnings(run, summary) == []

    def only(text, s=summary, r=run):
        found = warnings(r, s)
        assert len(found) == 1 and text in found[0], found
    partial = fake_run(tmp_path / "partial", reps=1, partial_after=7)
    found = warnings(partial, build_summary(partial, "quick"))
    assert found[0].startswith("Partial run (partial: test)")
    assert any(w.startswith("Case edge on wifi rep 0: failed") for w in found)
    link = run / "links" / "3g"
    link.mkdir(parents=True)
    (link / "linkcheck.json").write_text(json.dumps({"checks": {
        "goodput_up": {"ok": False, "measured": 0.8, "rule": ">= 0.9"},
        "rtt": {"ok": True}}}))
    only("Link 3g: calibration check goodput_up out of tolerance (measured 0.8, rule >= 0.9)")
    (link / "linkcheck.json").unlink()
    (link / "computecheck.json").write_text(json.dumps({"ok": False}))
    only("Link 3g: compute calibration out of tolerance")
    (link / "computecheck.json").write_text(json.dumps({"ok": True}))
    assert warnings(run, summary) == []
    missed = summary.copy()
    missed.loc[missed.index[0], "predicted_err"] = -0.135
    only(f"Model: {missed.loc[missed.index[0], 'method']} on 3g predicted -13.5%", missed)
    nodes = summary.copy()
    nodes["gain_nodes"] = ""
    nodes.loc[nodes.index[0], "gain_nodes"] = "split on node-b; "
    only("compares runs on different cluster nodes (split on node-b)", nodes)
    paced = summary.copy()
    paced["paced_steps"], paced["pace_overruns"] = 40, 2             # 5%: within the bound
    assert warnings(run, paced) == []
    paced.loc[paced.index[0], "pace_overruns"] = 3
    only(f"Paced compute: 3 of 40 steps of {paced.loc[paced.index[0], 'method']} on 3g overran",
         paced)
    est = summary.copy()
    est.loc[est.index[0], "extrapolated"] = True
    only("Runtimes are estimated for the full budget", est)
