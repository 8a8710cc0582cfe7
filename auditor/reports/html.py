"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no scripts, no assets.

Prompts are drawn as the records keep them (full words, ``[p3:forbidden]`` placeholders, or players
by index only), with each flagged audit's strongest terms highlighted over its players.
"""

from __future__ import annotations

from collections.abc import Sequence

from auditor.reports.charts import svg_histogram
from auditor.reports.format import escape, number, when
from auditor.reports.schema import FlaggedAudit, PlayerView, ReportModel, TermView

_CSS = """
:root{--ink:#1d2330;--muted:#5b6475;--line:#d9dee7;--bg:#f6f7fa;--card:#fff;--pos:#1f6fd1;--neg:#c63b2f;
--ok:#1a7f37;--bad:#b42318;--accent:#5b3cc4}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;
color:var(--ink);background:var(--bg)}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:32px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:0 0 6px}
.sub{color:var(--muted);margin:0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:150px}
.card .v{font-size:24px;font-weight:600}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse;background:var(--card);width:100%;margin:6px 0}
th,td{border:1px solid var(--line);padding:5px 9px;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff}
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}
.badge.flag{background:#9a3412}.badge.and{background:#334155}.badge.or{background:var(--accent)}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:14px}
.chart{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.chart svg{width:100%;height:auto}
.chart p{margin:4px 0 0;color:var(--muted);font-size:12px}
.audit{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:12px 0}
.audit .meta{color:var(--muted);font-size:12px}
.prompt{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px;line-height:1.9;
white-space:pre-wrap;word-break:break-word;background:#fafbfc;border:1px solid var(--line);border-radius:6px;
padding:6px 10px;margin:6px 0}
.pl{border-bottom:2px solid #9aa3b2}
.pl.forbidden{border-bottom-color:var(--bad)}.pl.irrelevant{border-bottom-color:#d97706}
.pl.relevant{border-bottom-color:var(--ok)}
mark{border-radius:3px;padding:1px 2px;color:#fff}
mark.pos{background:var(--pos)}mark.neg{background:var(--neg)}
mark.pos.or{background:#dce8fb;color:#0f3f80;border:1.5px dashed var(--pos)}
mark.neg.or{background:#fbe3e0;color:#7d1d14;border:1.5px dashed var(--neg)}
.terms td.prompt-cell{padding:3px 8px}
.terms .prompt{margin:0;border:0;background:none;padding:0}
.bar{display:inline-block;height:9px;border-radius:2px;vertical-align:middle}
.legend span{margin-right:14px;font-size:12px;color:var(--muted)}
.note{color:var(--muted);font-style:italic}
dl.methods dt{font-weight:600;margin-top:10px}
dl.methods dd{margin:2px 0 0 0;color:#2f3747;max-width:900px}
code{font-size:12px;background:#eef1f6;padding:1px 4px;border-radius:3px}
footer{margin-top:36px;color:var(--muted);font-size:12px}
@media print{body{background:#fff}.audit,.chart,.card{break-inside:avoid}}
"""


def _prompt_html(audit: FlaggedAudit, highlight: TermView | None = None) -> str:
    labels = {p.index: p.label for p in audit.players}
    members = set(highlight.players) if highlight else set()
    out = []
    for seg in audit.segments:
        text = escape(seg.text)
        if seg.player is None:
            out.append(text)
            continue
        label = labels.get(seg.player, "unlabelled")
        if seg.player in members and highlight is not None:
            sign = "pos" if highlight.value > 0 else "neg"
            out.append(f'<mark class="{sign} {highlight.kind}" data-player="{seg.player}" '
                       f'title="player {seg.player} ({escape(label)})">{text}</mark>')
        else:
            out.append(f'<span class="pl {escape(label)}" data-player="{seg.player}" '
                       f'title="player {seg.player} ({escape(label)})">{text}</span>')
    return "".join(out)


def _audit_html(audit: FlaggedAudit) -> str:
    flags = " ".join(f'<span class="badge flag">{escape(f)}</span>' for f in audit.flags)
    parts = [f'<article class="audit" id="audit-{escape(audit.audit_id)}" data-audit-id="{escape(audit.audit_id)}">']
    parts.append(f"<h3>{flags} {escape(audit.model_id)} · {when(audit.created_at)}</h3>")
    parts.append(f'<div class="meta">audit {escape(audit.audit_id)} · request {escape(audit.request_id)} · sampled: '
                 f'{escape(audit.sampling_reason)} · redaction: {escape(audit.redaction)} · overfitting '
                 f'{number(audit.overfitting)} · misattribution {number(audit.misattribution)} · '
                 f'{audit.sparsity if audit.sparsity is not None else "–"} salient interactions · '
                 f'players: {escape(audit.granularity)}</div>')
    if audit.segments:
        parts.append(f'<div class="prompt" data-role="prompt">{_prompt_html(audit)}</div>')
    if audit.note:
        parts.append(f'<p class="note">{escape(audit.note)}</p>')
    if (not audit.segments or audit.granularity not in ("words", "random", "spans")) and audit.players:
        parts.append(f"<p>players: {_chips(audit.players)}</p>")
    if audit.answer is not None:
        parts.append(f"<p><b>answer</b>: <code>{escape(audit.answer)}</code></p>")
    if audit.top_terms:
        peak = max(t.share for t in audit.top_terms) or 1.0
        parts.append('<table class="terms"><tr><th class="num">#</th><th>kind</th><th>players</th>'
                     '<th class="num">value</th><th>share of salient strength</th>'
                     '<th>drawn over the prompt</th></tr>')
        for rank, t in enumerate(audit.top_terms, 1):
            colour = "#1f6fd1" if t.value > 0 else "#c63b2f"
            joiner = " &amp; " if t.kind == "and" else " | "
            words = joiner.join(f"<code>{escape(w)}</code>" for w in t.words)
            drawn = (f'<div class="prompt">{_prompt_html(audit, t)}</div>' if audit.segments
                     else '<span class="note">prompt not kept</span>')
            parts.append(
                f'<tr class="term" data-kind="{t.kind}" data-players="{",".join(map(str, t.players))}">'
                f'<td class="num">{rank}</td><td><span class="badge {t.kind}">{t.kind.upper()}</span></td>'
                f'<td>{words}</td><td class="num">{t.value:+.3f}</td>'
                f'<td><span class="bar" style="width:{70 * t.share / peak:.0f}px;background:{colour}"></span> '
                f'{t.share:.0%}</td><td class="prompt-cell">{drawn}</td></tr>')
        parts.append("</table>")
        if audit.salient_total > len(audit.top_terms):
            parts.append(f'<p class="note">{len(audit.top_terms)} strongest of {audit.salient_total} salient '
                         f'interactions shown.</p>')
    else:
        parts.append('<p class="note">no salient interactions stored</p>')
    if audit.refinement is not None:
        parts.append(_refinement_html(audit))
    parts.append("</article>")
    return "".join(parts)


def _chips(players: Sequence[PlayerView]) -> str:
    """Players as chips: a coarse player by its segment id (its passage may be long), a word by its text."""
    return ", ".join(
        f"p{p.index} " + (f"<b>{escape(p.segment_id)}</b> " if p.segment_id else "")
        + f"<code>{escape(p.text if len(p.text) <= 80 else p.text[:77] + '...')}</code> ({escape(p.label)})"
        for p in players)


def _refinement_html(audit: FlaggedAudit) -> str:
    """The second level of a coarse-to-fine audit: which coarse players were refined, their words,
    the words' strongest terms and misattribution (labels inherited from the coarse players)."""
    fine = audit.refinement
    assert fine is not None
    by_index = {p.index: p for p in audit.players}
    refined = ", ".join(escape(by_index[i].segment_id or f"p{i}") if i in by_index else f"p{i}"
                        for i in fine.refined_players)
    parts = [f'<section class="refinement" data-role="refinement"><h4>Refined into words: {refined}</h4>']
    if fine.note:
        parts.append(f'<p class="note">{escape(fine.note)}</p>')
    if fine.players:
        parts.append(f"<p>players: {_chips(fine.players)} · misattribution {number(fine.misattribution)}</p>")
    if fine.top_terms:
        parts.append('<table class="terms"><tr><th class="num">#</th><th>kind</th><th>words</th>'
                     '<th class="num">value</th><th>share of salient strength</th></tr>')
        for rank, t in enumerate(fine.top_terms, 1):
            joiner = " &amp; " if t.kind == "and" else " | "
            words = joiner.join(f"<code>{escape(w)}</code>" for w in t.words)
            parts.append(f'<tr class="term" data-kind="{t.kind}"><td class="num">{rank}</td>'
                         f'<td><span class="badge {t.kind}">{t.kind.upper()}</span></td><td>{words}</td>'
                         f'<td class="num">{t.value:+.3f}</td><td>{t.share:.0%}</td></tr>')
        parts.append("</table>")
    parts.append("</section>")
    return "".join(parts)


def render_html(report: ReportModel) -> str:
    """A self-contained HTML page (inline CSS and SVG; no scripts, no external assets)."""
    r = report
    c = r.counts
    period = f"{when(r.period.since) if r.period.since else 'first record'} → " \
             f"{when(r.period.until) if r.period.until else 'now'}"
    success = c.by_outcome.get("success", 0)
    chain_badge = ('<span class="badge ok">verified</span>' if r.chain.ok
                   else '<span class="badge bad">FAILED</span>')
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{escape(r.title)} · {escape(period)}</title><style>{_CSS}</style></head><body><main>"]
    out.append(f'<header><h1 id="title">{escape(r.title)}</h1>'
               f'<p class="sub" id="period">Period: <b>{escape(period)}</b>'
               f'{" · model " + escape(r.period.model) if r.period.model else ""} · '
               f'generated {when(r.generated_at)} by interaction-auditor {escape(r.auditor_version)}</p>'
               f'<p class="sub">Store <code>{escape(r.store.url)}</code> ({r.store.records_in_store} records) · '
               f'audits in the period: {when(r.period.first_audit)} to {when(r.period.last_audit)}</p>')
    out.append('<div class="cards">'
               f'<div class="card"><div class="k">audits</div><div class="v" id="total-audits">{c.total}</div></div>'
               f'<div class="card"><div class="k">successful</div><div class="v">{success}</div></div>'
               f'<div class="card"><div class="k">flagged</div><div class="v" id="flagged-count">{c.flagged}</div></div>'
               f'<div class="card"><div class="k">models</div><div class="v">{len(r.models)}</div></div>'
               f'<div class="card"><div class="k">hash chain</div><div class="v">{chain_badge}</div></div>'
               "</div></header>")

    # models
    out.append('<section id="models"><h2>Models</h2><table><tr><th>model</th><th>revision(s)</th>'
               '<th>auditor version(s)</th><th>dtype</th><th class="num">audits</th><th class="num">flagged</th>'
               '<th class="num">mean overfitting</th><th class="num">window overfitting</th>'
               '<th class="num">mean misattribution</th><th class="num">mean sparsity</th><th>first / last audit</th></tr>')
    for m in r.models:
        window = ", ".join(f"{w.score:.3f} (n={w.n}, {w.audits})" for w in m.window_overfitting) or "–"
        out.append(f'<tr class="model"><td><b>{escape(m.model_id)}</b>'
                   f'{"<br><span class=note>label " + escape(", ".join(m.labels)) + "</span>" if m.labels not in ([], [m.model_id]) else ""}</td>'
                   f'<td>{escape(", ".join(m.revisions))}</td><td>{escape(", ".join(m.auditor_versions))}</td>'
                   f'<td>{escape(", ".join(m.dtypes)) or "–"}</td><td class="num">{m.audits}</td>'
                   f'<td class="num">{m.flagged}</td><td class="num">{number(m.mean_overfitting)}</td>'
                   f'<td class="num">{escape(window)}</td><td class="num">{number(m.mean_misattribution)}</td>'
                   f'<td class="num">{number(m.mean_sparsity, 1)}</td>'
                   f'<td>{when(m.first_at)}<br>{when(m.last_at)}</td></tr>')
    if not r.models:
        out.append('<tr><td colspan="11" class="note">no audits in this period</td></tr>')
    out.append("</table></section>")

    # counts
    outcomes = sorted(c.by_outcome, key=lambda o: (o != "success", o))
    out.append('<section id="counts"><h2>Audits by sampling reason and outcome</h2><table><tr><th>sampling reason</th>'
               + "".join(f'<th class="num">{escape(o)}</th>' for o in outcomes) + '<th class="num">total</th></tr>')
    cells = {(row.sampling_reason, row.outcome): row.count for row in c.table}
    for reason, n in c.by_reason.items():
        out.append(f'<tr class="reason" data-reason="{escape(reason)}"><td>{escape(reason)}</td>'
                   + "".join(f'<td class="num">{cells.get((reason, o), 0)}</td>' for o in outcomes)
                   + f'<td class="num"><b>{n}</b></td></tr>')
    out.append('<tr><th>all</th>' + "".join(f'<th class="num">{c.by_outcome[o]}</th>' for o in outcomes)
               + f'<th class="num">{c.total}</th></tr></table>')
    if c.by_flag:
        out.append("<p>Flags: " + ", ".join(f"{escape(k)}: <b>{v}</b>" for k, v in c.by_flag.items())
                   + " (an audit can carry both).</p>")
    out.append("</section>")

    # distributions
    out.append('<section id="distributions"><h2>Score distributions</h2><div class="charts">')
    for d in r.distributions:
        thr = "" if d.threshold is None else f" · {d.at_or_above_threshold} at or above the flag threshold {d.threshold:g}"
        miss = f" · {d.missing} without a value" if d.missing else ""
        dg = 1 if d.metric == "sparsity" else 3
        out.append(f'<div class="chart" id="dist-{d.metric}"><h3>{escape(d.title)}</h3>{svg_histogram(d)}'
                   f'<p>{escape(d.description)}</p><p>{d.count} audits · mean {number(d.mean, dg)} · median '
                   f'{number(d.median, dg)} · p90 {number(d.p90, dg)} · max {number(d.max, dg)}{escape(thr)}{escape(miss)}</p></div>')
    out.append("</div></section>")

    # flagged audits
    shown = len(r.flagged)
    out.append(f'<section id="flagged"><h2>Flagged audits</h2><p>{r.flagged_total} flagged audits in the period'
               f'{f"; the {shown} most recent are shown" if shown < r.flagged_total else ""}. Each row draws one '
               'salient interaction over the prompt as the record keeps it.</p>'
               '<p class="legend"><span><mark class="pos">word</mark> raises the answer\'s confidence</span>'
               '<span><mark class="neg">word</mark> lowers it</span>'
               '<span><mark class="pos or">word</mark> OR interaction (dashed)</span>'
               '<span><span class="pl relevant">relevant</span> / <span class="pl irrelevant">irrelevant</span> / '
               '<span class="pl forbidden">forbidden</span> / <span class="pl">unlabelled</span> player</span></p>')
    for audit in r.flagged:
        out.append(_audit_html(audit))
    if not r.flagged:
        out.append('<p class="note">No flagged audits in this period.</p>')
    out.append("</section>")

    # chain
    ch = r.chain
    out.append(f'<section id="chain"><h2>Hash-chain verification</h2><p data-chain-ok="{str(ch.ok).lower()}">'
               f'{chain_badge} {ch.checked} records checked over {escape(ch.scope)}.'
               + ("" if ch.ok else f" First failing record: <b>{ch.first_bad}</b>; reason: {escape(ch.reason)}.")
               + "</p></section>")

    # settings
    s = r.settings
    out.append(f'<section id="settings"><h2>Settings</h2><p>Report: the {s.top_terms} strongest interactions per '
               f'flagged audit, at most {s.max_flagged} flagged audits, {s.histogram_bins}-bin histograms.</p>')
    if s.audit_settings:
        keys = sorted({k for a in s.audit_settings for k in a.settings})
        out.append("<table><tr><th>setting</th>" + "".join(f'<th class="num">{a.audits} audits</th>'
                                                           for a in s.audit_settings[:6]) + "</tr>")
        for k in keys:
            out.append(f"<tr><td><code>{escape(k)}</code></td>"
                       + "".join(f'<td class="num">{escape(a.settings.get(k, "–"))}</td>' for a in s.audit_settings[:6])
                       + "</tr>")
        out.append("</table>")
        if len(s.audit_settings) > 6:
            out.append(f'<p class="note">{len(s.audit_settings) - 6} further settings combinations are in the JSON '
                       "report.</p>")
    out.append("</section>")

    # methods
    out.append('<section id="methods"><h2>Methods</h2><dl class="methods">')
    for m in r.methods:
        out.append(f"<dt>{escape(m.name)}</dt><dd>{escape(m.definition)}</dd>")
    out.append("</dl></section>")
    out.append(f"<footer>Report schema {r.schema_version} · {escape(r.kind)} · the JSON form of this report "
               "(<code>--format json</code>) holds the same content.</footer></main></body></html>")
    return "\n".join(out)
