{{ config(tags=["leaky"], materialized="table") }}
-- fails: DuckDB's conversion error quotes the value it could not read as a number
select cast('{{ env_var("SHOP_LEAK", "x") }}' as integer) as n
