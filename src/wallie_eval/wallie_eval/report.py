"""Reports of a spoken QA evaluation: a table, JSON and a plot."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Sequence

from wallie_eval import score


def load_average() -> list[float]:
    """The 1, 5 and 15 min load averages (NaN where /proc cannot be read)."""
    try:
        return [float(x) for x in Path('/proc/loadavg').read_text().split()[:3]]
    except (OSError, ValueError):
        return [float('nan')] * 3


def _pct(v: float | None) -> str:
    return '-' if v is None else f'{100 * v:.1f}%'


def _ms(v: float | None) -> str:
    return '-' if v is None else f'{v:.0f}'


COLUMNS = ('turns', 'accuracy', 'wer', 'e2e p50', 'e2e p95', 'asr p50', 'llm 1st p50',
           'rejected', 'false rej', 'conf. wrong', 'errors')


def row_cells(s: dict[str, Any]) -> list[str]:
    """The table cells of one summary, in COLUMNS order."""
    return [str(s['turns']), f'{_pct(s["accuracy"])} ({s["correct"]}/{s["scored"]})',
            _pct(s['wer']), _ms(s['e2e_p50_ms']), _ms(s['e2e_p95_ms']), _ms(s['asr_p50_ms']),
            _ms(s['llm_first_chunk_p50_ms']), str(s['rejected']),
            _pct(s['false_reject_rate']), _pct(s['confident_wrong_rate']), str(s['errors'])]


def render_table(title: str, groups: dict[str, dict[str, Any]], console: Any = None) -> None:
    """Print a table of summaries, one row per group."""
    from rich.console import Console
    from rich.table import Table
    console = console or Console(width=200)
    table = Table(title=title, title_justify='left')
    table.add_column('group')
    for c in COLUMNS:
        table.add_column(c, justify='right')
    for name, s in groups.items():
        table.add_row(name, *row_cells(s))
    console.print(table)


def render(results: dict[str, Any], console: Any = None) -> None:
    """All tables of a result document (one or several setups)."""
    for name, res in results['setups'].items():
        rep = res['report']
        render_table(f'{name}: overall and per half',
                     {'all': rep['overall'], **rep['split']}, console)
        render_table(f'{name}: per noise condition', rep['condition'], console)
        render_table(f'{name}: per voice', rep['voice'], console)
        render_table(f'{name}: per category', rep['category'], console)
    if len(results['setups']) > 1:
        render_table('setups compared (held-out half)', compare(results, 'heldout'), console)
        render_table('setups compared (tuning half)', compare(results, 'tuning'), console)


def compare(results: dict[str, Any], split: str) -> dict[str, dict[str, Any]]:
    """Each setup's summary of half `split`, by setup name."""
    return {name: res['report']['split'][split] for name, res in results['setups'].items()
            if split in res['report']['split']}


def document(setups: dict[str, tuple[dict[str, Any], Sequence[dict[str, Any]]]],
             mode: str, load_before: list[float], extra: dict | None = None) -> dict[str, Any]:
    """The JSON document: per setup its settings, report and every turn."""
    return {
        'mode': mode, 'host': platform.node(), 'cpus': os.cpu_count(),
        'load_average_start': load_before, 'load_average_end': load_average(),
        **(extra or {}),
        'setups': {name: {'setup': setup, 'report': score.report(rows), 'turns': list(rows)}
                   for name, (setup, rows) in setups.items()},
    }


def write(doc: dict[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """Write eval.json and eval.png into `out_dir`; return their paths (None for the plot
    without matplotlib)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / 'eval.json'
    path.write_text(json.dumps(doc, indent=1, default=str) + '\n')
    return path, plot(doc, out / 'eval.png')


def plot(doc: dict[str, Any], path: Path) -> Path | None:
    """Accuracy vs e2e p50 per setup and half; accuracy per noise condition."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for name, res in doc['setups'].items():
        for split, marker in (('tuning', 'o'), ('heldout', 's')):
            s = res['report']['split'].get(split)
            if not s or s['accuracy'] is None or s['e2e_p50_ms'] is None:
                continue
            ax1.scatter(s['e2e_p50_ms'], 100 * s['accuracy'], marker=marker)
            ax1.annotate(f'{name} ({split})', (s['e2e_p50_ms'], 100 * s['accuracy']),
                         fontsize=7)
    ax1.set_xlabel(f'e2e p50 (ms, {doc["mode"]})')
    ax1.set_ylabel('answers right (%)')
    ax1.set_title('accuracy vs latency')
    ax1.grid(alpha=0.3)
    names = list(doc['setups'])
    conds = sorted({c.split('/', 1)[1] for res in doc['setups'].values()
                    for c in res['report']['condition']})
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        cond = doc['setups'][name]['report']['condition']
        vals = []
        for c in conds:
            group = [v for k, v in cond.items() if k.endswith('/' + c) and k.startswith(
                'heldout')]
            vals.append(100 * group[0]['accuracy'] if group and group[0]['accuracy']
                        is not None else 0.0)
        ax2.bar([j + i * width for j in range(len(conds))], vals, width, label=name)
    ax2.set_xticks([j + 0.4 - width / 2 for j in range(len(conds))])
    ax2.set_xticklabels(conds, rotation=20, fontsize=8)
    ax2.set_ylabel('answers right, held-out (%)')
    ax2.set_title('per noise condition (held-out half)')
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
