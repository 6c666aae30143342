"""``newsletter topics``: the taxonomy."""

from __future__ import annotations

import click

from newsletter.cli.base import AppContext, console, esc, plural, print_json


@click.group()
def topics() -> None:
    """The 36 topics subscribers choose from.

    \b
    Example:
        newsletter topics list
    """


@topics.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_(app: AppContext, as_json: bool) -> None:
    """List every topic with its slug and display name.

    Issue files and commands accept the slug, the name or the published spelling. When a
    subscriber store exists, also shows how many active subscribers chose each topic
    (subscribers who take every topic are counted once, in the title, not per topic).

    \b
    Example:
        newsletter topics list
        newsletter topics list --json
    """
    from newsletter.content.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    counts = _subscriber_counts(app)
    rows: list[dict] = [
        {"slug": t.slug, "name": t.name, "published": t.published or t.name} for t in taxonomy
    ]
    if counts is not None:
        for row in rows:
            row["subscribers"] = counts.by_topic.get(row["slug"], 0)
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    title = plural(len(rows), "topic")
    if counts is not None:
        n = counts.all_topics
        title += f"; {plural(n, 'more active subscriber')} take{'s' if n == 1 else ''} every topic"
    table = Table(title=title, title_justify="left")
    # Name and slug one above the other in one column: both fit whole in 80 columns (side
    # by side, one of them would be cut mid-word, and a slug is meant to be copied).
    table.add_column("Topic [dim](slug)[/dim]")
    if counts is not None:
        table.add_column("Subscribers", justify="right", no_wrap=True)
    for row in rows:
        extra = [str(row["subscribers"])] if counts is not None else []
        table.add_row(f"{esc(row['name'])}\n[dim]{esc(row['slug'])}[/dim]", *extra)
    console().print(table)


def _subscriber_counts(app: AppContext):
    """Active subscribers per topic, or None when there is no (usable) store."""
    from newsletter.services import subscribers

    return subscribers.topic_counts(app.app())
