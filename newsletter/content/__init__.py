"""Content: the Issue and Summary dataclasses, the taxonomy, reading issue files."""

from newsletter.content.model import Issue, Problem, ResearchType, Summary, Topic

__all__ = ["Issue", "Problem", "ResearchType", "Summary", "Topic"]
