"""The `story` command: every command group registered on one Typer app.

--json on every subcommand prints one JSON document on stdout. Each group lives in its own
module and imports its flows only when a command runs, so `story --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from story.flows.cli_io import setup_logging
from story.flows.concept_cli import concept_app
from story.flows.eval_cli import eval_app
from story.flows.export_cli import editorial_app
from story.flows.library_cli import library_app
from story.flows.provenance_cli import provenance_app
from story.flows.render_cli import render_app
from story.flows.retrieval_eval_cli import eval_retrieval_command, eval_search_command
from story.flows.search_service_cli import search_service_app
from story.flows.studio_cli import studio_app
from story.flows.workers_cli import workers_app

app = typer.Typer(
    name="story",
    help="Storytelling-video pipeline: clip library, structure, synthesis, stories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")
    ] = False,
) -> None:
    """Storytelling-video pipeline."""
    setup_logging(verbose)


app.add_typer(library_app)
app.add_typer(render_app)
app.add_typer(provenance_app)
app.add_typer(concept_app, name="concept")
app.add_typer(workers_app, name="workers")
eval_app.command("retrieval")(eval_retrieval_command)
eval_app.command("search")(eval_search_command)
app.add_typer(eval_app, name="eval")
app.add_typer(editorial_app)
app.add_typer(search_service_app, name="search-service")
app.add_typer(studio_app, name="studio")

if __name__ == "__main__":
    app()
