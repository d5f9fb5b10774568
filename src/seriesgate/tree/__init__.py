"""tree stage: a base tree with the series applied, one commit per patch."""

from seriesgate.tree.apply import format_table, prepare_tree
from seriesgate.tree.base import tree_lock
from seriesgate.tree.model import AppliedTree, ApplyResult, BaseTree, Role, Verdict

__all__ = [
    "AppliedTree",
    "ApplyResult",
    "BaseTree",
    "Role",
    "Verdict",
    "format_table",
    "prepare_tree",
    "tree_lock",
]
