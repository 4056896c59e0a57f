"""How faithful, useful and private a synthetic table is, and the report that says so.

- :mod:`.runner`: runs the installed metrics on a real and a synthetic table (a uniform sample
  of stated size for large inputs) and writes ``metrics.json``.
- :mod:`.report`: the report's section contract (``ReportSection``) that plugins implement.
- :mod:`.report_html`: the self-contained ``report.html``, with no script.

Importing this package loads none of its modules; import the one you need.
"""
