"""snowflake.Query (a durable job), snowflake.ExecuteScript and snowflake.InsertRows."""
from __future__ import annotations

import io
import re
from typing import Any

from engine.plugin import ActionError, Job, Node, Pending, inputs_schema, run_sync_cancellable, count, excerpt

from .client import SNOWFLAKE, SnowflakeClient
from .rows import bind, bindable, columns, converter

SQL = {"type": "string", "minLength": 1}
MAX_ROWS = {"type": "integer", "minimum": 0, "default": 10_000,
            "description": "Rows returned at most; `truncated` says whether there were more."}
TEMPLATE_IN_SQL = ("a template inside the SQL text is formatted into the statement (injection, "
                   "quoting bugs, a new query plan per value): write ? (or :name) in the SQL "
                   "and pass the values as `params`, which Snowflake binds")


def _templated(text: Any) -> bool:
    return isinstance(text, str) and ("{{" in text or "{%" in text)


def _fetch(cur: Any, max_rows: int) -> tuple[list[dict], bool]:
    """Up to ``max_rows`` rows as objects, and whether there were more. Rows are converted as
    they arrive (the connector streams result chunks), so only JSON-safe rows are kept."""
    rows: list[dict] = []
    convert = None
    for raw in cur:  # fetching first: after get_results_from_sfqid the description comes with the rows
        if len(rows) >= max_rows:
            return rows, True
        if convert is None:
            convert = converter(cur.description)
        rows.append(convert(raw))
    return rows, False


def _cancel_sql(client: SnowflakeClient, query_id: str) -> None:
    client.conn.cursor().execute("SELECT SYSTEM$CANCEL_QUERY(?)", [query_id])


class Query(Job):
    type = "snowflake.Query"
    idempotent = False  # any SQL (an INSERT, a MERGE) may write, and there is no idempotency key:
    # after a crash before its result was recorded it may run again (onInterrupted: fail prevents it)
    title = "Run one SQL statement on Snowflake"
    description = (
        "Submits one statement asynchronously (`execute_async`); the query id is recorded in "
        "the step before the first status check, so a resumed run re-attaches to the same "
        "query and never submits it again. Polls durably (1 s, backing off to 30 s). A "
        "timeout or Terminate aborts the query with `SYSTEM$CANCEL_QUERY`.\n\n"
        "`params` are bound by Snowflake, never formatted into the SQL: a list for `?` "
        "placeholders, or an object for `:name` ones (objects and arrays are bound as JSON "
        "text: read them with `PARSE_JSON(?)`). Rows are objects with JSON-safe values: "
        "numbers, or strings where a number would lose precision (big integers, long "
        "decimals); dates and times in ISO 8601; VARIANT/OBJECT/ARRAY parsed; BINARY as hex. "
        "A result over the store's blob threshold (1 MB) is stored once in the blob store and "
        "the step row holds a reference to it.")
    connection = "snowflake"
    poll_interval, max_poll_interval, backoff = 1.0, 30.0, 1.5
    input_schema = inputs_schema(
        ["sql"],
        sql={**SQL, "description": "One SQL statement, with ? or :name placeholders."},
        params={"type": ["array", "object"], "description": "Values for the placeholders, bound "
                "server-side: a list (?) or an object (:name)."},
        maxRows=MAX_ROWS,
    )
    outputs = {"type": "object", "properties": {
        "queryId": {"type": "string", "description": "Snowflake's query id."},
        "columns": {"type": "array", "description": "Name, Snowflake type, precision, scale, nullable."},
        "rows": {"type": "array", "items": {"type": "object"}, "description": "The rows, one object each."},
        "rowCount": {"type": "integer", "description": "Rows returned (after maxRows)."},
        "truncated": {"type": "boolean", "description": "More rows existed than maxRows."},
    }}
    example = {"type": "snowflake.Query", "connection": "snowflake",
               "inputs": {"sql": "SELECT id, amount, placed_at FROM orders WHERE region = ? AND placed_at >= ?",
                          "params": ["{{ triggerBody().region }}", "2024-01-01"], "maxRows": 1000}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would run SQL on Snowflake: {excerpt(inputs.get('sql'))}"

    @classmethod
    def warnings(cls, action: dict) -> list[tuple[str, str]]:
        sql = (action.get("inputs") or {}).get("sql") if isinstance(action.get("inputs"), dict) else None
        return [("inputs.sql", TEMPLATE_IN_SQL)] if _templated(sql) else []

    async def start(self, inputs: dict, context: Any) -> dict:
        sql, values = bind(inputs["sql"], inputs.get("params"))
        client = await SNOWFLAKE.client(context)

        def submit() -> str:
            cur = client.conn.cursor()
            cur.execute_async(sql, values)
            return cur.sfqid

        return {"queryId": await SNOWFLAKE.call(context, submit),
                "maxRows": inputs.get("maxRows", 10_000)}

    async def poll(self, handle: dict, context: Any) -> Any:
        client = await SNOWFLAKE.client(context)
        query_id = handle["queryId"]

        def check() -> Any:
            conn = client.conn
            status = conn.get_query_status_throw_if_error(query_id)
            if conn.is_still_running(status):
                return Pending(progress=status.name)
            return None

        pending = await SNOWFLAKE.call(context, check)
        if pending is not None:
            return pending
        return await SNOWFLAKE.call(context, self._results, client, query_id, handle.get("maxRows", 10_000))

    @staticmethod
    def _results(client: SnowflakeClient, query_id: str, max_rows: int) -> dict:
        cur = client.conn.cursor()
        cur.get_results_from_sfqid(query_id)
        rows, truncated = _fetch(cur, max_rows)
        return {"queryId": query_id, "columns": columns(cur.description), "rows": rows,
                "rowCount": len(rows), "truncated": truncated}

    async def cancel(self, handle: dict, context: Any) -> None:
        client = await SNOWFLAKE.client(context)
        await SNOWFLAKE.call(context, _cancel_sql, client, handle["queryId"])


def _statements(script: str) -> list[str]:
    """The script's statements as the connector splits them; a piece that is only comments
    and semicolons (``-- done;``, ``/* x */ ;``) is no statement (Snowflake would refuse it as
    an empty SQL statement)."""
    from snowflake.connector.util_text import split_statements

    def blank(sql: str) -> bool:
        return not any(part.strip().rstrip(";").strip()
                       for part, _ in split_statements(io.StringIO(sql), remove_comments=True))

    return [sql for sql, _is_put_get in split_statements(io.StringIO(script), remove_comments=False)
            if not blank(sql)]


class ExecuteScript(Node):
    type = "snowflake.ExecuteScript"
    idempotent = False  # any SQL (an INSERT, a MERGE) may write, and there is no idempotency key:
    # after a crash before its result was recorded it may run again (onInterrupted: fail prevents it)
    title = "Run several SQL statements on Snowflake"
    description = (
        "Splits `sql` into statements (as the connector's `execute_string` does: semicolons "
        "outside literals and comments) and runs them in order, stopping at the first error. "
        "With `transaction: true` they run in one transaction on a session of their own "
        "(BEGIN ... COMMIT; any error rolls everything back). The result of each statement is "
        "in `results`. A timeout or Terminate aborts the running statement "
        "(`SYSTEM$CANCEL_QUERY`). The script takes no parameters: values belong in a "
        "`snowflake.Query` with `params`.")
    connection = "snowflake"
    input_schema = inputs_schema(
        ["sql"],
        sql={**SQL, "description": "Statements separated by semicolons."},
        transaction={"type": "boolean", "default": False,
                     "description": "All statements in one transaction: all or nothing."},
        maxRows={**MAX_ROWS, "default": 1000, "description": "Rows kept per statement."},
    )
    outputs = {"type": "object", "properties": {
        "results": {"type": "array", "description": "Per statement: sql, queryId, rowCount "
                    "(rows affected or returned), rows (up to maxRows), truncated."},
        "statementCount": {"type": "integer"},
    }}
    example = {"type": "snowflake.ExecuteScript", "connection": "snowflake",
               "inputs": {"transaction": True,
                          "sql": "CREATE TABLE IF NOT EXISTS staging.orders LIKE raw.orders;\n"
                                 "DELETE FROM staging.orders;\n"
                                 "INSERT INTO staging.orders SELECT * FROM raw.orders;"}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would run a SQL script on Snowflake: {excerpt(inputs.get('sql'))}"

    @classmethod
    def warnings(cls, action: dict) -> list[tuple[str, str]]:
        inputs = action.get("inputs")
        sql = inputs.get("sql") if isinstance(inputs, dict) else None
        return [("inputs.sql", TEMPLATE_IN_SQL.replace("write ? (or :name) in the SQL and pass the values as "
                 "`params`, which Snowflake binds", "use snowflake.Query with `params` for values"))] \
            if _templated(sql) else []

    async def run(self, inputs: dict, context: Any) -> Any:
        statements = _statements(inputs["sql"])
        if not statements:
            raise ActionError("the script holds no statement", code="InvalidInputs")
        client = await SNOWFLAKE.client(context)
        max_rows = inputs.get("maxRows", 1000)
        transaction = bool(inputs.get("transaction"))
        running: dict[str, Any] = {}
        results: list[dict] = []

        def execute() -> dict:
            conn = client.session() if transaction else client.conn
            try:
                cur = running["cursor"] = conn.cursor()
                if transaction:
                    cur.execute("BEGIN")
                for index, sql in enumerate(statements):
                    try:
                        cur.execute(sql)
                    except Exception as exc:
                        if transaction:
                            _quietly(cur.execute, "ROLLBACK")
                        mapped = SNOWFLAKE.map_error(exc, context.connection.secret_values())
                        if mapped is None:
                            raise
                        mapped.details = {**(mapped.details or {}), "statement": index + 1,
                                          "completed": results, "rolledBack": transaction}
                        mapped.message = f"statement {index + 1}: {mapped.message}"
                        raise mapped from exc
                    rows, truncated = _fetch(cur, max_rows) if cur.description else ([], False)
                    results.append({"sql": sql, "queryId": cur.sfqid, "rowCount": cur.rowcount,
                                    "rows": rows, "truncated": truncated})
                if transaction:
                    cur.execute("COMMIT")
                return {"results": results, "statementCount": len(results)}
            finally:
                if transaction:
                    _quietly(conn.close)

        def cancel() -> None:
            cur = running.get("cursor")
            if cur is not None and cur.sfqid:
                _cancel_sql(client, cur.sfqid)

        def invoke() -> dict:
            with SNOWFLAKE.mapped(context.connection):
                return execute()

        return await run_sync_cancellable(invoke, cancel)


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - cleanup after the error that matters
        pass


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z")
_QUOTED = re.compile(r'"(?:[^"]|"")+"\Z')


def _part(name: str, part: str) -> str:
    """One name part as a quoted identifier: a plain part upper-cased (what Snowflake makes of
    it unquoted, so ``id`` stays ID, and a reserved word such as ``order`` or ``rows`` still
    works), a part already written as "..." kept, anything else quoted with quotes doubled."""
    if not part or "\0" in part:
        raise ActionError(f"{name!r} is not a valid name (an empty part, or a NUL character)",
                          code="InvalidInputs", details={"name": name})
    if _PLAIN.match(part):
        return '"' + part.upper() + '"'
    if _QUOTED.match(part):
        return part
    return '"' + part.replace('"', '""') + '"'


def _split(name: str) -> list[str]:
    """``db.schema.table`` into its parts; dots inside "..." do not split."""
    parts, current, quoted = [], [], False
    for ch in name:
        if ch == '"':
            quoted = not quoted
        if ch == "." and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def identifier(name: str) -> str:
    """A (possibly qualified) table name as SQL: each part quoted (see ``_part``). A name with
    an unbalanced quote is one part, quoted as written; nothing is ever left unquoted."""
    if name.count('"') % 2:
        return _part(name, '"' + name.replace('"', '""') + '"')
    return ".".join(_part(name, part) for part in _split(name))


def column(name: str) -> str:
    """One column name as SQL (never split on dots; a name written "..." is taken as is)."""
    return _part(name, name)


class InsertRows(Node):
    type = "snowflake.InsertRows"
    idempotent = False  # any SQL (an INSERT, a MERGE) may write, and there is no idempotency key:
    # after a crash before its result was recorded it may run again (onInterrupted: fail prevents it)
    title = "Insert rows (objects) into a Snowflake table"
    description = (
        "`INSERT INTO table (columns) VALUES (?, ...)` through `executemany`, `batchSize` rows "
        "per statement, values bound by Snowflake. Columns are `columns`, else every key of "
        "the rows in first-seen order; a key missing from a row inserts NULL; objects and "
        "arrays are bound as JSON text. With `transaction` (the default) every batch commits "
        "together or not at all, on a session of its own, so a retried action never inserts "
        "a batch twice. Table and column names are always quoted: a plain name upper-cased (as Snowflake reads it "
        "unquoted, so reserved words such as `order` work), any other name exactly as written; "
        "`db.schema.table` splits on dots outside double quotes.")
    connection = "snowflake"
    input_schema = inputs_schema(
        ["table", "rows"],
        table={"type": "string", "minLength": 1, "description": "Table, optionally db.schema.table."},
        rows={"type": "array", "items": {"type": "object"}, "description": "The rows, one object each."},
        columns={"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                 "description": "Columns to insert (default: the rows' keys)."},
        batchSize={"type": "integer", "minimum": 1, "maximum": 100_000, "default": 1000},
        transaction={"type": "boolean", "default": True,
                     "description": "All batches in one transaction."},
    )
    outputs = {"type": "object", "properties": {
        "count": {"type": "integer", "description": "Rows inserted."},
        "batches": {"type": "integer"},
        "queryIds": {"type": "array", "items": {"type": "string"}},
    }}
    example = {"type": "snowflake.InsertRows", "connection": "snowflake",
               "inputs": {"table": "raw.orders", "rows": "{{ body('fetch_orders').items }}",
                          "batchSize": 5000}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would insert {count(inputs.get('rows'))} row(s) into Snowflake {inputs.get('table')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        rows = inputs["rows"]
        if not rows:
            return {"count": 0, "batches": 0, "queryIds": []}
        names = inputs.get("columns") or list(dict.fromkeys(k for row in rows for k in row))
        cols = ", ".join(column(c) for c in names)
        sql = f"INSERT INTO {identifier(inputs['table'])} ({cols}) VALUES ({', '.join('?' * len(names))})"
        size = inputs.get("batchSize", 1000)
        transaction = inputs.get("transaction", True)
        client = await SNOWFLAKE.client(context)

        def insert() -> dict:
            conn = client.session() if transaction else client.conn
            try:
                cur = conn.cursor()
                if transaction:
                    cur.execute("BEGIN")
                count, ids = 0, []
                try:
                    for start in range(0, len(rows), size):
                        batch = [tuple(bindable(row.get(c)) for c in names) for row in rows[start:start + size]]
                        cur.executemany(sql, batch)
                        count += cur.rowcount or 0
                        ids.append(cur.sfqid)
                    if transaction:
                        cur.execute("COMMIT")
                except Exception:
                    if transaction:
                        _quietly(cur.execute, "ROLLBACK")
                    raise
                return {"count": count, "batches": len(ids), "queryIds": ids}
            finally:
                if transaction:
                    _quietly(conn.close)

        return await SNOWFLAKE.call(context, insert)
