-- The rows the flow read back from Snowflake, handed over as the `orders` var (a list of
-- {ID, CUSTOMER, AMOUNT}). Numbers go through int/float and text is quoted, so no value can
-- change the SQL.
{%- set orders = var('orders', []) %}
{%- if orders %}
select * from (values
{%- for o in orders %}
    ({{ o['ID'] | int }}, '{{ o['CUSTOMER'] | string | replace("'", "''") }}', {{ o['AMOUNT'] | float }}){{ "," if not loop.last }}
{%- endfor %}
) as t(id, customer, amount)
{%- else %}
select null::integer as id, null::varchar as customer, null::double as amount where false
{%- endif %}
