"""Built-in actions (data shaping, variables, control flow, run control) and triggers.

They use the same plugin contract as vendor nodes (engine.plugin); container actions
(If, Switch, Foreach, Until, Scope) run their nested blocks through ``context.run_block``.
"""
from .control import Foreach, If, Scope, Switch, Until
from .data import Compose, Join, ParseJson, Query, Select, Table
from .run import Response, Terminate, Wait, Workflow
from .triggers import TRIGGERS  # noqa: F401  Request, Recurrence, Manual
from .variables import (AppendToArrayVariable, AppendToStringVariable, DecrementVariable,
                        IncrementVariable, InitializeVariable, SetVariable)

NODES = [Compose, Query, Select, Join, ParseJson, Table,
         InitializeVariable, SetVariable, IncrementVariable, DecrementVariable,
         AppendToArrayVariable, AppendToStringVariable,
         If, Switch, Foreach, Until, Scope,
         Terminate, Wait, Response, Workflow]
CONNECTIONS: list = []
