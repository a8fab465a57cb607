"""The QC page of a plate run: ``write_report(run_dir)`` -> ``run_dir/report.html``.

:mod:`~cellseg_hcs.report.run_folder` reads what the run wrote,
:mod:`~cellseg_hcs.report.thumbnails` draws each well's field with its outlines,
:mod:`~cellseg_hcs.report.figures` makes the charts and :mod:`~cellseg_hcs.report.page`
puts them into one self-contained HTML file.
"""

from .page import REPORT_NAME, write_report

__all__ = ["REPORT_NAME", "write_report"]
