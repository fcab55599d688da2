"""Rebuild the recall index: ``python tools/memory_reindex.py reindex --config config/memory.yaml``.

The same command as ``memory reindex`` (same options, output and exit codes; the work is done by
``memory.index._reindex_run``): sync the vault into the database, then bring the recall index
in line with the notes and events — incremental (unchanged items are skipped), ``--full`` to
re-embed everything, resumable after a kill. ``--json`` prints a summary for scripts.
"""

from __future__ import annotations

import click

from memory.cli._recall_cmds import reindex


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, help=__doc__)
def tool() -> None:
    pass


tool.add_command(reindex)

if __name__ == "__main__":
    tool(prog_name="memory_reindex.py")
